"""`agentbay-mcp sessions list|reap`: the operator's view of a state dir, safe while servers run."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import anyio
from pydantic import BaseModel

from agentbay_mcp.backends.common.server_lock import live_servers
from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.local.layout import StateDir
from agentbay_mcp.settings import Settings


def _age(since: datetime | None, now: datetime) -> str:
    if since is None:
        return "-"
    seconds = max(0, int((now - since).total_seconds()))
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"


class SessionRow(BaseModel):
    """One line of `sessions list`."""

    session_id: str
    owner: str
    server_id: str
    server_pid: int | None
    server_alive: bool
    image_id: str
    labels: dict[str, str]
    created_at: datetime
    last_used_at: datetime | None
    age_seconds: float
    idle_seconds: float | None


def collect_rows(settings: Settings) -> list[SessionRow]:
    """Every session in the state dir, oldest first, with whether its server is alive."""
    backend, state = LocalBackend(settings.state_dir), StateDir(settings.state_dir)
    records = anyio.run(backend.list_all)
    servers = live_servers(backend.state_dir / "servers")
    now = datetime.now(UTC)
    rows: list[SessionRow] = []
    for record in sorted(records, key=lambda r: r.created_at):
        info = servers.get(record.server_id)
        last_used = state.last_used(record.session_id)
        rows.append(
            SessionRow(
                session_id=record.session_id,
                owner=record.owner,
                server_id=record.server_id,
                server_pid=info.pid if info else None,
                server_alive=record.server_id in servers,
                image_id=record.image_id,
                labels=record.labels,
                created_at=record.created_at,
                last_used_at=last_used,
                age_seconds=round((now - record.created_at).total_seconds(), 1),
                idle_seconds=round((now - last_used).total_seconds(), 1) if last_used else None,
            )
        )
    return rows


def list_sessions(settings: Settings, *, as_json: bool) -> int:
    """Print every session in the state dir with its owner, server, image, labels, age and idle time."""
    rows = collect_rows(settings)
    if as_json:
        document = {
            "state_dir": str(settings.state_dir),
            "sessions": [row.model_dump(mode="json") for row in rows],
        }
        print(json.dumps(document, indent=1))
        return 0
    if not rows:
        print(f"No sessions in {settings.state_dir}.")
        return 0
    now = datetime.now(UTC)
    print(f"{'SESSION':32} {'OWNER':22} {'SERVER PID':>10} {'IMAGE':12} {'AGE':>7} {'IDLE':>7}  LABELS")
    for row in rows:
        pid = str(row.server_pid) if row.server_alive else "gone"
        labels = ",".join(f"{k}={v}" for k, v in row.labels.items()) or "-"
        print(
            f"{row.session_id:32} {row.owner[:22]:22} {pid:>10} {row.image_id:12} "
            f"{_age(row.created_at, now):>7} {_age(row.last_used_at, now):>7}  {labels}"
        )
    orphans = sum(1 for row in rows if not row.server_alive)
    print(f"{len(rows)} session(s); {orphans} orphaned (run 'agentbay-mcp sessions reap' to delete those).")
    return 0


def reap_sessions(settings: Settings) -> int:
    """Delete sessions whose server is gone; live servers' sessions are never touched."""
    # The owner's byte quota bounds the orphans' saves as it bounds the server's: a sparse file or many hard
    # links cost a session no disk, yet a save writes every byte they show.
    quota = settings.context_quota_mb * 1024 * 1024 or None
    backend = LocalBackend(settings.state_dir, context_quota_bytes=quota)
    reaped = anyio.run(backend.reap_orphans)
    for session_id in reaped:
        print(f"reaped {session_id}")
    print(f"{len(reaped)} orphaned session(s) reaped from {settings.state_dir}.")
    return 0
