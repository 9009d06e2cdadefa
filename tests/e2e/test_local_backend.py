"""Local-backend specifics: crash litter, damaged records, failures that must leave nothing behind."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from anyio.abc import TaskGroup
from mcp import Client

from agentbay_mcp.backends.common.server_lock import live_servers, server_alive
from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.errors import BackendUnavailableError
from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import call, call_error
from agentbay_mcp.testing.servers import session_dirs

pytestmark = pytest.mark.anyio

HOLD_LOCK = """
import sys, time
from pathlib import Path
from agentbay_mcp.backends.common.server_lock import ServerLock
lock = ServerLock(Path(sys.argv[1]), sys.argv[2]); lock.acquire()
print("locked", flush=True); time.sleep(60)
"""


async def test_litter_of_dead_servers_is_reaped_but_not_of_live_ones(state_dir: Path, task_group: TaskGroup) -> None:
    backend = LocalBackend(state_dir)
    await backend.start(task_group)
    sessions = state_dir / "sessions"
    (sessions / ".trash-session-abc-1234").mkdir()
    (sessions / ".staging-srv-dead-session-0123456789abcdef01234567").mkdir()
    own_staging = sessions / f".staging-{backend.server_id}-session-0123456789abcdef01234567"
    own_staging.mkdir()
    damaged = sessions / ("session-" + "d" * 24)
    damaged.mkdir()
    (damaged / "meta.json").write_text("{not json")
    reaped = await backend.reap_orphans()
    assert reaped == [damaged.name]
    assert sorted(p.name for p in sessions.iterdir()) == [own_staging.name]
    await backend.close()


def test_a_neighbour_holding_its_lock_is_alive(state_dir: Path) -> None:
    servers = state_dir / "servers"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(servers), "srv-neighbour"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        assert server_alive(servers, "srv-neighbour")
        assert "srv-neighbour" in live_servers(servers)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert not server_alive(servers, "srv-neighbour")
    assert not (servers / "srv-neighbour.lock").exists()


async def test_failed_create_leaves_nothing(state_dir: Path, task_group: TaskGroup) -> None:
    backend = LocalBackend(state_dir)
    await backend.start(task_group)
    # A file where the sessions dir should be makes the staging step fail (root ignores permissions).
    sessions = state_dir / "sessions"
    sessions.rename(state_dir / "sessions.real")
    sessions.write_text("not a directory")
    with pytest.raises(BackendUnavailableError, match="state dir is writable"):
        await backend.create_session(image_id="code_latest", labels={}, owner="c")
    sessions.unlink()
    (state_dir / "sessions.real").rename(sessions)
    assert list(sessions.iterdir()) == []
    await backend.close()


async def test_state_dir_is_private(state_dir: Path, task_group: TaskGroup) -> None:
    """Nobody else may list or write the state dir (session ids are capabilities). Root's servers
    leave it traversable (o+x) because their sandboxes run as nobody."""
    backend = LocalBackend(state_dir)
    await backend.start(task_group)
    record = await backend.create_session(image_id="code_latest", labels={}, owner="c")
    for path in (state_dir, state_dir / "sessions", state_dir / "sessions" / record.session_id):
        assert path.stat().st_mode & 0o066 == 0, f"{path} is readable or writable by others"
    assert (state_dir / "sessions" / record.session_id / "meta.json").stat().st_mode & 0o077 == 0
    await backend.close()


async def test_delete_copes_with_read_only_trees(state_dir: Path, task_group: TaskGroup) -> None:
    backend = LocalBackend(state_dir)
    await backend.start(task_group)
    record = await backend.create_session(image_id="code_latest", labels={}, owner="c")
    locked = state_dir / "sessions" / record.session_id / "home" / "locked"
    (locked / "inner").mkdir(parents=True)
    (locked / "inner" / "file").write_text("x")
    (locked / "inner").chmod(0o500)
    locked.chmod(0o500)
    await backend.delete_session(record.session_id)
    assert session_dirs(state_dir) == []
    assert [p.name for p in (state_dir / "sessions").iterdir()] == []
    await backend.close()


@pytest.fixture
def agentless_state_dir(state_dir: Path) -> Path:
    """A state dir where the sandbox agent cannot be installed: a file holds its directory's name."""
    state_dir.mkdir(parents=True)
    (state_dir / "agent").write_text("not a directory")
    return state_dir


async def test_a_failed_background_preparation_is_a_clear_error_not_a_dead_server(agentless_state_dir: Path) -> None:
    """The server installs the sandbox agent after it starts answering; if that fails, every
    create_session says why, and the server stays up."""
    state_dir = agentless_state_dir
    async with Client(build_server(Settings(state_dir=state_dir, pool_size=1))) as client:
        for _ in range(2):  # the same clear answer every time, not a hang after the first
            message = await call_error(client, "create_session", image_id="code_latest")
            assert "is not usable" in message, message
            assert "AGENTBAY_MCP_STATE_DIR" in message, message
        assert (await call(client, "list_sessions"))["total_count"] == 0
    assert session_dirs(state_dir) == [], "nothing was pre-started or left behind"


async def test_without_background_preparation_start_itself_refuses(
    agentless_state_dir: Path, task_group: TaskGroup
) -> None:
    with pytest.raises(BackendUnavailableError, match="is not usable"):
        await LocalBackend(agentless_state_dir).start(task_group)
