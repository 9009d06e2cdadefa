"""A context is saved however its session ends: deleted, its conversation gone, its lease run out, the
server stopped, or the server SIGKILLed (saved by the next server on the state dir, which reaps it).

Real stdio servers (subprocesses) and real sandboxes; the data is written in one server's session and
read back in a session of a new server, so nothing but the state dir carries it across.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from agentbay_mcp.testing.leaks import find_leaks
from agentbay_mcp.testing.stdio import RawStdioServer
from agentbay_mcp.testing.waiting import wait_until

pytestmark = pytest.mark.timeout(120)

PATH = "/home/user/.cache/kept"
MOUNT = [{"name": "kept", "path": PATH}]


def write_in_a_session(server: RawStdioServer, content: str) -> str:
    server.initialize()
    session_id = server.call_tool("create_session", image_id="code_latest", contexts=MOUNT)["session_id"]
    server.call_tool("write_file", session_id=session_id, path=f"{PATH}/data.txt", content=content)
    # A command's own writes, not only the file tool's: a nested tree and a symlink.
    server.call_tool(
        "execute_command", session_id=session_id, command=f"mkdir -p {PATH}/deep/er && echo x > {PATH}/deep/er/f"
    )
    return session_id


def read_in_a_new_server(state_dir: Path) -> str:
    with RawStdioServer(state_dir, "--pool-size", "0") as fresh:
        fresh.initialize()
        session_id = fresh.call_tool("create_session", image_id="code_latest", contexts=MOUNT)["session_id"]
        found = fresh.call_tool(
            "execute_command", session_id=session_id, command=f"cat {PATH}/data.txt {PATH}/deep/er/f"
        )
        info = fresh.call_tool("get_context", name="kept")
        assert info["notice"] is None, info
        fresh.close_stdin()
        assert fresh.wait_exit(timeout=30) == 0, fresh.stderr_text
        return str(found["stdout"])


@pytest.mark.parametrize("ending", ["delete_session", "stdin EOF", "SIGTERM", "idle lease", "SIGKILL"])
def test_a_context_is_saved_however_the_session_ends(state_dir: Path, ending: str) -> None:
    content = f"written before {ending}"
    # No pool: the only session dir is the one under test.
    args = ("--pool-size", "0", *(("--idle-lease", "2") if ending == "idle lease" else ()))
    with RawStdioServer(state_dir, *args) as server:
        session_id = write_in_a_session(server, content)
        if ending == "delete_session":
            server.call_tool("delete_session", session_id=session_id)
        elif ending == "idle lease":
            assert wait_until(lambda: not find_leaks(state_dir).session_dirs, timeout=30), "the lease ran out"
        elif ending == "stdin EOF":
            server.close_stdin()
        elif ending == "SIGTERM":
            server.send_signal(signal.SIGTERM)
        else:
            time.sleep(0.2)
            server.process.kill()
        if ending in ("stdin EOF", "SIGTERM", "SIGKILL"):
            server.wait_exit(timeout=30)
    if ending == "SIGKILL":
        assert find_leaks(state_dir).session_dirs, "the killed server's session is still there to be reaped"
    assert read_in_a_new_server(state_dir) == f"{content}x\n"  # the file has no newline of its own
