"""The session pool (backends/local/pool.py): pre-started sessions handed out once each, fresh, released.

Real servers and real bwrap sandboxes. Every other test runs without a pool (testing/servers.py says
why); these ask for one with --pool-size. A pooled session is a session directory whose record's
owner is POOL_OWNER until create_session hands it out.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from pydantic import ValidationError

from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.local.pool import POOL_OWNER
from agentbay_mcp.cli import build_parser, settings_from_args
from agentbay_mcp.server.wiring import default_backend
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import call
from agentbay_mcp.testing.http_clients import legacy
from agentbay_mcp.testing.leaks import cgroup_scope, find_leaks
from agentbay_mcp.testing.servers import HttpServer, session_dirs
from agentbay_mcp.testing.sessions_cli import list_json
from agentbay_mcp.testing.stdio import RawStdioServer
from agentbay_mcp.testing.waiting import wait_until

#: What a session can see of earlier ones: its home, its /tmp, and the command lines of its processes.
LOOK_AROUND = "ls -A /home/user /tmp; cat /proc/[0-9]*/cmdline | tr '\\0' ' '"
MARKERS = ("pool-marker-home", "pool-marker-tmp", "sleep 4321")
LEAVE_TRACES = "echo x > /home/user/pool-marker-home && echo y > /tmp/pool-marker-tmp"


def owners(state_dir: Path) -> dict[str, str]:
    """session id -> the owner its record names."""
    found = {}
    for session_id in session_dirs(state_dir):
        try:
            record = json.loads((state_dir / "sessions" / session_id / "meta.json").read_text())
        except (OSError, ValueError):
            continue  # being created or deleted right now
        found[session_id] = str(record["owner"])
    return found


def pooled(state_dir: Path) -> list[str]:
    return sorted(sid for sid, owner in owners(state_dir).items() if owner == POOL_OWNER)


def wait_for_pool(state_dir: Path, size: int, log: Callable[[], str], started: int) -> list[str]:
    """Wait until the server has started `started` pooled sessions in all (its debug log tells when each
    answers), and returns the `size` waiting in the pool."""
    assert wait_until(lambda: log().count(" is ready (") >= started, timeout=20), log()
    assert wait_until(lambda: len(pooled(state_dir)) == size, timeout=5), owners(state_dir)
    return pooled(state_dir)


def seen(result: dict[str, Any]) -> str:
    """Everything a tool result says, whatever its rendering (text and structured output)."""
    return json.dumps(result)


def pool_server(state_dir: Path, size: int, *args: str) -> RawStdioServer:
    server = RawStdioServer(state_dir, "--pool-size", str(size), "--log-level", "DEBUG", *args)
    server.initialize()
    return server


def test_a_handed_out_session_is_fresh_and_the_pool_refills(state_dir: Path) -> None:
    with pool_server(state_dir, 2) as server:
        log = lambda: server.stderr_text  # noqa: E731
        first_pool = wait_for_pool(state_dir, 2, log, started=2)
        first = server.call_tool("create_session", image_id="code_latest", labels={"who": "first"})
        assert first["session_id"] in first_pool, "create_session did not take a pooled session"
        # Create options are applied at hand-out: the record, the tool result and the operator's view.
        assert (first["image_id"], first["labels"]) == ("code_latest", {"who": "first"})
        assert owners(state_dir)[first["session_id"]].startswith("conn:")
        assert server.call_tool("get_session_labels", session_id=first["session_id"])["labels"] == {"who": "first"}

        server.call_tool("execute_command", session_id=first["session_id"], command=LEAVE_TRACES)
        server.call_tool("start_process", session_id=first["session_id"], command="sleep 4321")
        control = seen(server.call_tool_result("execute_command", session_id=first["session_id"], command=LOOK_AROUND))
        assert all(marker in control for marker in MARKERS), control  # the look-around does see traces

        # The other pre-started one, then one the pool started after the traces were left: both fresh.
        second = server.call_tool("create_session")
        refilled = wait_for_pool(state_dir, 2, log, started=4)
        assert first["session_id"] not in refilled
        assert second["session_id"] not in refilled
        server.call_tool("delete_session", session_id=first["session_id"])
        third = server.call_tool("create_session", image_id="code_latest")
        ids = [first["session_id"], second["session_id"], third["session_id"]]
        assert len(set(ids)) == 3
        assert second["session_id"] in first_pool
        assert third["session_id"] in refilled
        for later in (second, third):
            view = seen(server.call_tool_result("execute_command", session_id=later["session_id"], command=LOOK_AROUND))
            assert not any(marker in view for marker in MARKERS), view
            assert later["labels"] == {}
        server.close_stdin()
        assert server.wait_exit(timeout=10) == 0, server.stderr_text
    assert wait_until(lambda: find_leaks(state_dir).total == 0, timeout=5), find_leaks(state_dir)


@pytest.mark.anyio
async def test_two_conversations_never_get_the_same_sandbox(state_dir: Path) -> None:
    server = HttpServer(state_dir, "--pool-size", "2", "--log-level", "DEBUG")
    try:
        wait_for_pool(state_dir, 2, server.log.read_text, started=2)
        ids: dict[int, list[str]] = {}

        async def conversation(number: int) -> None:
            async with legacy(server) as client:
                mine = []
                for _ in range(2):  # all at once: more creations than the pool holds
                    created = await call(client, "create_session", image_id="code_latest")
                    mine.append(created["session_id"])
                for session_id in mine:
                    await call(client, "execute_command", session_id=session_id, command=f"touch /tmp/c{number}")
                for session_id in mine:
                    listing = await call(client, "execute_command", session_id=session_id, command="ls /tmp")
                    names = [f"c{other}" for other in range(4)]
                    assert [name for name in names if name in seen(listing)] == [f"c{number}"]
                ids[number] = mine

        async with anyio.create_task_group() as tg:
            for number in range(4):
                tg.start_soon(conversation, number)
        every = [session_id for mine in ids.values() for session_id in mine]
        assert len(every) == len(set(every)) == 8
    finally:
        assert server.stop() == 0, server.log.read_text()
    assert wait_until(lambda: find_leaks(state_dir).total == 0, timeout=5), find_leaks(state_dir)


@pytest.mark.parametrize("how", ["eof", "sigterm"])
def test_pooled_sessions_are_released_at_shutdown(state_dir: Path, how: str) -> None:
    with pool_server(state_dir, 2) as server:
        wait_for_pool(state_dir, 2, lambda: server.stderr_text, started=2)
        server.call_tool("create_session")
        wait_for_pool(state_dir, 2, lambda: server.stderr_text, started=3)
        assert len(session_dirs(state_dir)) == 3
        assert find_leaks(state_dir).processes, "no sandbox runs: this test would prove nothing"
        if how == "eof":
            server.close_stdin()
        else:
            server.send_signal(signal.SIGTERM)
        assert server.wait_exit(timeout=10) == 0, server.stderr_text
    assert wait_until(lambda: find_leaks(state_dir).total == 0, timeout=5), find_leaks(state_dir)


def test_pooled_sessions_of_a_sigkilled_server_are_reaped_at_the_next_start(state_dir: Path) -> None:
    with pool_server(state_dir, 2) as server:
        wait_for_pool(state_dir, 2, lambda: server.stderr_text, started=2)
        handed_out = server.call_tool("create_session")["session_id"]
        # Killed once all three sandboxes answer: a server killed while a sandbox is still being started
        # is a different race, that of any create_session (see leftovers.py).
        waiting = wait_for_pool(state_dir, 2, lambda: server.stderr_text, started=3)
        server.kill()
    assert session_dirs(state_dir) == sorted([handed_out, *waiting])
    with pool_server(state_dir, 0) as next_server:  # its start-up reaps before it answers initialize
        assert session_dirs(state_dir) == []
        assert "reaped 3 orphaned session(s)" in next_server.stderr_text
        next_server.close_stdin()
        assert next_server.wait_exit(timeout=10) == 0, next_server.stderr_text
    assert wait_until(lambda: find_leaks(state_dir).total == 0, timeout=5), find_leaks(state_dir)


def test_pool_size_zero_starts_nothing_ahead(state_dir: Path) -> None:
    with pool_server(state_dir, 0) as server:
        assert not wait_until(lambda: session_dirs(state_dir), timeout=0.5), "a session appeared unasked"
        assert find_leaks(state_dir).processes == []
        created = server.call_tool("create_session", labels={"k": "v"})
        assert session_dirs(state_dir) == [created["session_id"]]
        assert owners(state_dir)[created["session_id"]].startswith("conn:")
        server.call_tool("delete_session", session_id=created["session_id"])
        assert not wait_until(lambda: session_dirs(state_dir), timeout=0.3), "a session appeared unasked"
        server.close_stdin()
        assert server.wait_exit(timeout=10) == 0, server.stderr_text


def test_pooled_sessions_count_like_sessions(state_dir: Path) -> None:
    """Each pooled session has the per-session limits (cgroup, disk), shows in the operator's listing,
    and a conversation's quota counts what it was handed, not what waits in the pool."""
    args = ("--max-sessions", "1", "--memory-limit-mb", "300", "--process-limit", "77")
    with pool_server(state_dir, 2, *args) as server:
        waiting = wait_for_pool(state_dir, 2, lambda: server.stderr_text, started=2)
        rows = list_json(state_dir)
        assert {sid: rows[sid]["owner"] for sid in waiting} == dict.fromkeys(waiting, POOL_OWNER)
        memory = Path("/sys/fs/cgroup/memory/agentbay-mcp")
        if memory.is_dir() and any(memory.iterdir()):  # cgroups v1 as on this suite's hosts
            prefix = cgroup_scope(state_dir)
            for session_id in waiting:
                limit = (memory / f"{prefix}-{session_id}" / "memory.limit_in_bytes").read_text()
                assert int(limit) == 300 * 2**20
                pids = Path("/sys/fs/cgroup/pids/agentbay-mcp") / f"{prefix}-{session_id}" / "pids.max"
                assert pids.read_text().strip() == "77"
        if os.geteuid() == 0:  # the disk quota is the session's own file system, mounted when it is made
            assert len(find_leaks(state_dir).mounts) >= 2, find_leaks(state_dir)

        server.call_tool("create_session")
        wait_for_pool(state_dir, 2, lambda: server.stderr_text, started=3)
        refused = server.call_tool_error("create_session")
        assert "limit" in refused.lower(), refused
        assert len(pooled(state_dir)) == 2, "a refused creation used up a pooled session"
        assert len(session_dirs(state_dir)) == 3
        server.close_stdin()
        assert server.wait_exit(timeout=10) == 0, server.stderr_text
    assert wait_until(lambda: find_leaks(state_dir).total == 0, timeout=5), find_leaks(state_dir)


def test_pool_size_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENTBAY_MCP_POOL_SIZE")  # the suite's own default (conftest.py) is 0
    assert Settings().pool_size == 1
    monkeypatch.setenv("AGENTBAY_MCP_POOL_SIZE", "3")
    assert Settings().pool_size == 3
    assert settings_from_args(build_parser().parse_args(["serve", "--pool-size", "0"])).pool_size == 0
    for bad in (-1, 17):
        with pytest.raises(ValidationError):
            Settings(pool_size=bad)
    # The backend the server builds gets it (pooled sandboxes have no network; a session's policy is
    # applied when it is handed out, whatever the operator's default).
    backend = default_backend(Settings(pool_size=2, network="on"))
    assert isinstance(backend, LocalBackend)
    assert backend.pool.size == 2
