"""`agentbay-mcp sessions` as the operator runs it, and a server killed without cleaning up (orphans to reap)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from agentbay_mcp.testing.servers import server_env
from agentbay_mcp.testing.stdio import RawStdioServer


def killed_server(state_dir: Path, count: int, **arguments: Any) -> list[str]:
    """Start a stdio server, create `count` sessions, then SIGKILL it; returns the orphans' ids."""
    with RawStdioServer(state_dir) as server:
        server.initialize()
        ids = server.create_sessions(count, **arguments)
        server.kill()
    return ids


def sessions_cli(
    state_dir: Path, action: str, *flags: str, timeout: float = 30, **env: str
) -> subprocess.CompletedProcess[str]:
    """`agentbay-mcp sessions --state-dir <state_dir> <action> [flags]` as a subprocess, `env` added to
    its environment.

    The environment points AGENTBAY_MCP_STATE_DIR at a decoy, so the flag must be what counts.
    `--state-dir` goes before the action: see `test_state_dir_flag_after_the_action`.
    """
    return subprocess.run(
        [sys.executable, "-m", "agentbay_mcp", "sessions", "--state-dir", str(state_dir), action, *flags],
        env=server_env(state_dir.parent / "decoy-state", **env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def list_json(state_dir: Path) -> dict[str, dict[str, Any]]:
    """`sessions list --json`, as session id -> row."""
    done = sessions_cli(state_dir, "list", "--json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["state_dir"] == str(state_dir)
    return {row["session_id"]: row for row in document["sessions"]}
