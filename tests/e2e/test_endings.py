"""Every way a conversation or a server ends releases everything, and failures on the way are told.

Real servers only: stdio and HTTP subprocesses, bwrap sandboxes with desktops, and a real read-only
state dir (a read-only bind mount, so root only). What is left is counted by `agentbay_mcp.testing.leaks`: session
dirs, sandboxed processes (X servers included), cgroups, mounts and loop devices of the state dir.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from agentbay_mcp.testing.leaks import find_leaks
from agentbay_mcp.testing.load import PipelinedStdio, loaded_http_client
from agentbay_mcp.testing.servers import HttpServer, session_dirs
from agentbay_mcp.testing.sessions_cli import killed_server, list_json, sessions_cli
from agentbay_mcp.testing.stdio import RawStdioServer
from agentbay_mcp.testing.waiting import wait_until

#: docs/conversations.md promises 1.5 s, and bench/bench_sessions.py measures it on a quiet host (about
#: 1.0 s for 100 busy desktops, 1.2 s over HTTP). Here the 100-session tests run one at a time but share
#: 2 cores with the rest of the suite, so they hold a looser bound: seen 2.01 s in CI, then 2.7 s once the
#: tests by level ran beside other heavy tests (1.40 s alone, the same before and after issue 13's
#: refactor). The speed target is the bench's; what these tests must never allow is a hang or a leak.
RELEASE_BUDGET_SECONDS = 5.0
MANY = 100
#: The 100-session tests run one at a time on one xdist worker (scripts/test.sh: --dist loadgroup):
#: two of them at once on 2 cores measure each other, not the server's budgets.
HUNDRED = pytest.mark.xdist_group("hundred_sessions")


def hundred_sessions(test: Callable[..., Any]) -> Callable[..., Any]:
    """The marks of a 100-session test: slow, 300 s at most, and in the one-at-a-time xdist group."""
    return pytest.mark.slow(HUNDRED(pytest.mark.timeout(300)(test)))


def many_session_server(state_dir: Path, *args: str) -> HttpServer:
    """An HTTP server that takes MANY sessions in one conversation."""
    return HttpServer(state_dir, "--max-sessions", str(MANY), *args)


root_only = pytest.mark.skipif(os.geteuid() != 0, reason="bind mounts need root")


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[None]:
    """Make `path` read-only for this host (sandboxes keep their own mounts) until the block ends."""
    subprocess.run(["mount", "--bind", str(path), str(path)], check=True, timeout=10)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(path)], check=True, timeout=10)
        yield
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True, timeout=10)


def assert_nothing_left(state_dir: Path) -> None:
    assert wait_until(lambda: find_leaks(state_dir).total == 0, timeout=5), find_leaks(state_dir)


# A failed delete, a read-only state dir -------------------------------------------------------


@root_only
def test_failed_delete_keeps_the_session_retryable_and_says_why(state_dir: Path) -> None:
    with RawStdioServer(state_dir) as server:
        server.initialize()
        session_id = server.call_tool("create_session", image_id="code_latest")["session_id"]
        server.call_tool("start_process", session_id=session_id, command="sleep 600")
        with read_only(state_dir):
            for _ in range(2):  # the failure is the same each time: the session is never forgotten
                error = server.call_tool_error("delete_session", session_id=session_id)
                assert "Read-only file system" in error, error
                assert "retry delete_session" in error, error
            assert server.call_tool("get_session", session_id=session_id)["session_id"] == session_id
            assert session_dirs(state_dir) == [session_id]
            create = server.call_tool_error("create_session")
            assert "Read-only file system" in create, create
            assert "writable" in create, create
            # The operator can still look.
            assert set(list_json(state_dir)) == {session_id}
            listing = sessions_cli(state_dir, "list")
            assert listing.returncode == 0, listing.stderr
        assert server.call_tool("delete_session", session_id=session_id)["status"] == "DELETED"
        assert "not found" in server.call_tool_error("get_session", session_id=session_id)
        assert_nothing_left(state_dir)
        server.close_stdin()
        assert server.wait_exit(timeout=10) == 0, server.stderr_text
    assert "Traceback" not in server.stderr_text, server.stderr_text


@root_only
def test_server_ending_on_a_read_only_state_dir_exits_cleanly_and_reap_finishes(state_dir: Path) -> None:
    with RawStdioServer(state_dir) as server:
        server.initialize()
        ids = server.create_sessions(3, image_id="code_latest")
        with read_only(state_dir):
            server.close_stdin()
            code = server.wait_exit(timeout=5)
            reap = sessions_cli(state_dir, "reap")  # nothing can be removed yet, and it says so
        assert code == 0, server.stderr_text
        assert "Traceback" not in server.stderr_text, server.stderr_text
        assert "could not delete session" in server.stderr_text
        assert reap.returncode == 0, reap.stderr
        assert "Traceback" not in reap.stderr, reap.stderr
        assert "(Read-only file system); leaving it for the next reap" in reap.stderr, reap.stderr
        left = find_leaks(state_dir)
        assert sorted(left.session_dirs) == sorted(ids)
        assert left.processes == [], "the sandboxes must be gone even though their files stay"
    reap = sessions_cli(state_dir, "reap")
    assert reap.returncode == 0, reap.stderr
    assert sorted(re.findall(r"^reaped (session-\w+)$", reap.stdout, re.MULTILINE)) == sorted(ids)
    assert_nothing_left(state_dir)


@root_only
def test_server_started_on_a_read_only_state_dir_says_so_without_a_traceback(state_dir: Path) -> None:
    killed_server(state_dir, 1, image_id="code_latest")  # the state dir exists, with an orphan in it
    with read_only(state_dir), RawStdioServer(state_dir) as server:
        with contextlib.suppress(EOFError, TimeoutError):
            server.initialize()
        code = server.wait_exit(timeout=10)
        stderr = server.stderr_text
    assert code not in (None, 0), stderr
    assert "Traceback" not in stderr, stderr
    assert "Read-only file system" in stderr, stderr


# SIGKILL: the next start and `sessions reap` remove the same things ---------------------------


@hundred_sessions
@pytest.mark.parametrize("cleanup", ["restart", "reap"])
def test_sigkill_leftovers_are_removed_by_restart_and_by_reap_alike(state_dir: Path, cleanup: str) -> None:
    with PipelinedStdio(state_dir, "--max-sessions", str(MANY)) as server:
        server.load(MANY, "linux_latest")
        time.sleep(0.5)
        server.process.kill()
        server.process.wait(timeout=10)
    left = find_leaks(state_dir)
    assert len(left.session_dirs) == MANY, left
    assert left.cgroups, "the checker must see what a SIGKILL leaves (cgroups, here)"
    if cleanup == "reap":
        done = sessions_cli(state_dir, "reap")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[-1] == f"{MANY} orphaned session(s) reaped from {state_dir}."
    else:
        with RawStdioServer(state_dir) as fresh:
            fresh.initialize()
            assert fresh.call_tool("list_sessions")["total_count"] == 0
            assert_nothing_left(state_dir)
            fresh.close_stdin()
            assert fresh.wait_exit(timeout=10) == 0, fresh.stderr_text
    assert_nothing_left(state_dir)


# Orderly endings at 100 sessions with desktops, processes and commands in flight ---------------


@hundred_sessions
@pytest.mark.parametrize("ending", ["stdin EOF", "SIGTERM", "SIGINT"])
def test_stdio_ending_with_100_busy_desktop_sessions_releases_everything_in_budget(
    state_dir: Path, ending: str
) -> None:
    with PipelinedStdio(state_dir, "--max-sessions", str(MANY)) as server:
        ids = server.load(MANY, "linux_latest")
        time.sleep(0.5)
        loaded = find_leaks(state_dir)
        assert len(loaded.session_dirs) == MANY
        assert len(loaded.x_servers) == MANY, loaded.summary()
        started = time.monotonic()
        if ending == "stdin EOF":
            server.close_stdin()
        else:
            server.process.send_signal(signal.SIGTERM if ending == "SIGTERM" else signal.SIGINT)
        code = server.wait_exit(timeout=10)
        took = time.monotonic() - started
        stderr = server.stderr_text
    assert code == 0, stderr
    assert f"releasing {len(ids)} session(s)" in stderr
    assert "Traceback" not in stderr, stderr
    print(f"{ending} with {MANY} busy desktop sessions: exit after {took:.3f} s")
    assert took < RELEASE_BUDGET_SECONDS, f"{ending} took {took:.2f} s"
    assert_nothing_left(state_dir)


@hundred_sessions
@pytest.mark.anyio
async def test_http_sigterm_with_100_busy_desktop_sessions_releases_everything_in_budget(state_dir: Path) -> None:
    server = many_session_server(state_dir)
    took = -1.0
    try:
        with contextlib.suppress(Exception):  # the client's calls in flight fail as the server goes
            async with loaded_http_client(server, MANY, "linux_latest") as ids:
                assert len(find_leaks(state_dir).x_servers) == len(ids) == MANY
                started = time.monotonic()
                server.process.send_signal(signal.SIGTERM)
                await anyio.to_thread.run_sync(server.process.wait, 10)
                took = time.monotonic() - started
    finally:
        code = server.stop()
    log = server.log.read_text()
    assert code == 0, log
    assert f"releasing {MANY} session(s)" in log, log
    assert "Traceback" not in log, log
    print(f"HTTP SIGTERM with {MANY} busy desktop sessions: exit after {took:.3f} s")
    assert 0 <= took < RELEASE_BUDGET_SECONDS, f"SIGTERM took {took:.2f} s"
    assert_nothing_left(state_dir)


@hundred_sessions
@pytest.mark.anyio
async def test_http_delete_with_100_busy_sessions_releases_everything(state_dir: Path) -> None:
    server = many_session_server(state_dir)
    try:
        # HTTP DELETE: leaving the handshake-era client ends its MCP session.
        async with loaded_http_client(server, MANY, "linux_latest") as ids:
            assert len(find_leaks(state_dir).x_servers) == len(ids) == MANY
        assert await anyio.to_thread.run_sync(lambda: wait_until(lambda: find_leaks(state_dir).total == 0, 10)), (
            find_leaks(state_dir).summary()
        )
    finally:
        assert server.stop() == 0, server.log.read_text()
    log = server.log.read_text()
    assert "Traceback" not in log, log[log.index("Traceback") - 300 :][:3000]


# The endings that wait: the idle lease, and an HTTP client gone without DELETE ------------------

#: A short idle lease; the server checks leases every quarter of it (SessionService.run_lease_expiry).
LEASE = 4.0
LEASE_CHECK = LEASE / 4
#: The disconnect grace for a client that vanished (--http-disconnect-grace).
GRACE = 2.0
#: What releasing 100 busy desktops may take after the lease or the grace ran out: about 1 s on a
#: quiet host, more when another 100-session test shares the 2 cores under xdist.
RELEASE_MARGIN = 10.0
REPO = Path(__file__).resolve().parents[2]


async def release_after(state_dir: Path, since: float, wait: float) -> tuple[bool, float, str]:
    """Whether everything is released within `wait` s (and a margin), the seconds since `since` then,
    and what was left (counted now, before the server's shutdown releases it)."""
    released = await anyio.to_thread.run_sync(released_within, state_dir, wait + RELEASE_MARGIN)
    took = time.monotonic() - since
    return released, took, "" if released else find_leaks(state_dir).summary()


def released_log(server: HttpServer, code: int, released: bool, leaked: str) -> str:
    """The server's log, once the ending released everything and the server stopped cleanly."""
    log = server.log.read_text()
    assert released, f"left after the ending: {leaked}"
    assert code == 0, log
    return log


def released_within(state_dir: Path, timeout: float) -> bool:
    return wait_until(lambda: find_leaks(state_dir).total == 0, timeout)


@hundred_sessions
@pytest.mark.anyio
async def test_idle_lease_with_100_busy_desktop_sessions_releases_everything_after_the_last_call(
    state_dir: Path,
) -> None:
    """The sessionless era's only ending. The lease never expires a session with a call in flight,
    so each session's command starts the moment the session exists: however long the 100 desktops
    take to load, none of them is ever idle, and the lease runs from when those calls end."""
    server = many_session_server(state_dir, "--idle-lease", str(LEASE))
    try:
        async with loaded_http_client(server, MANY, "linux_latest", mode="auto", hold_from_create=True) as ids:
            # Well past a lease since the last load call: the commands in flight hold everything.
            await anyio.sleep(LEASE + 2 * LEASE_CHECK)
            held = await anyio.to_thread.run_sync(find_leaks, state_dir)
            assert len(held.session_dirs) == len(held.x_servers) == len(ids) == MANY, held.summary()
            last_call = time.monotonic()
        # Leaving the block closed the commands' streams: the server cancels them, and their end is
        # each session's last use.
        left = time.monotonic() - last_call
        released, took, leaked = await release_after(state_dir, last_call, LEASE + LEASE_CHECK)
    finally:
        code = server.stop()
    log = released_log(server, code, released, leaked)
    assert "idle lease ran out for" in log, log
    assert "Traceback" not in log, log
    print(f"idle lease {LEASE} s, {MANY} busy desktops: client left in {left:.2f} s, released {took:.2f} s after")
    assert took >= LEASE, f"released {took:.2f} s after the last call, before the lease ran out"


@hundred_sessions
@pytest.mark.anyio
async def test_http_client_gone_with_100_busy_desktop_sessions_releases_everything_after_the_grace(
    state_dir: Path,
) -> None:
    """A handshake-era client (the Python SDK in a subprocess, holding its GET stream) SIGKILLed with
    100 loaded sessions: no DELETE ever comes, the kernel just closes its connections. The calls in
    flight are cancelled, and after the grace the MCP session ends as by DELETE."""
    server = many_session_server(state_dir, "--http-disconnect-grace", str(GRACE))
    client_log = state_dir.parent / "vanishing-client.stderr"
    try:
        with client_log.open("wb") as stderr:
            client = await anyio.open_process(
                [sys.executable, "-m", "agentbay_mcp.testing.load", server.url, str(MANY), "linux_latest"],
                stderr=stderr,
                cwd=REPO,
            )
        try:
            assert client.stdout is not None
            try:
                with anyio.fail_after(240):
                    line = await BufferedByteReceiveStream(client.stdout).receive_until(b"\n", 1 << 20)
            except (anyio.EndOfStream, anyio.IncompleteRead, TimeoutError):
                pytest.fail(f"the client did not load its sessions:\n{client_log.read_text()[-3000:]}")
            ids = json.loads(line)["session_ids"]
            loaded = await anyio.to_thread.run_sync(find_leaks, state_dir)
            assert len(loaded.session_dirs) == len(loaded.x_servers) == len(ids) == MANY, loaded.summary()
            killed_at = time.monotonic()
            client.kill()
        finally:
            if client.returncode is None:
                client.kill()
            with anyio.fail_after(10):
                await client.wait()
        released, took, leaked = await release_after(state_dir, killed_at, GRACE)
    finally:
        code = server.stop()
    log = released_log(server, code, released, leaked)
    assert f"client gone (nothing open for {GRACE:g} s)" in log, log  # the grace ended it, not a DELETE
    assert f"conversation ended: releasing {MANY} session(s)" in log, log
    assert "Traceback" not in log, log
    print(f"HTTP client gone (grace {GRACE} s) with {MANY} busy desktop sessions: released {took:.2f} s after")
    assert took >= GRACE, f"released {took:.2f} s after the client went, before the grace ran out"


# A sandbox that died ------------------------------------------------------------------------


def test_a_dead_sandbox_says_so_until_the_next_call_reports_what_was_lost(state_dir: Path) -> None:
    with RawStdioServer(state_dir) as server:
        server.initialize()
        session_id = server.call_tool("create_session", image_id="code_latest")["session_id"]
        kept = server.call_tool("start_process", session_id=session_id, command="sleep 600")["process_id"]
        done = server.call_tool("start_process", session_id=session_id, command="true")["process_id"]
        server.call_tool("wait_process", session_id=session_id, process_id=done, timeout_ms=10000)
        server.call_tool("write_file", session_id=session_id, path="notes.txt", content="kept")
        assert server.call_tool("get_session", session_id=session_id)["status"] == "RUNNING"

        record = json.loads((state_dir / "sessions" / session_id / "sandbox.json").read_text())
        os.kill(record["child_pid"], signal.SIGKILL)  # the sandbox's pid 1: everything in it dies

        def says_died() -> bool:
            return server.call_tool("get_session", session_id=session_id)["status"] == "SANDBOX_DIED"

        assert wait_until(says_died, timeout=10)
        info = server.call_tool("get_session", session_id=session_id)  # shown until the next call
        assert info["status"] == "SANDBOX_DIED"
        assert f"{kept} (sleep 600)" in info["notice"], info
        assert done not in info["notice"], "a process that had exited was not lost"

        error = server.call_tool_error("list_processes", session_id=session_id)
        assert "died" in error, error
        assert f"its 1 background process(es) were lost: {kept} (sleep 600)" in error, error
        assert "retry" in error, error

        after = server.call_tool("get_session", session_id=session_id)
        assert (after["status"], after.get("notice")) == ("RUNNING", None)
        assert server.call_tool("list_processes", session_id=session_id)["processes"] == []
        assert server.call_tool("read_file", session_id=session_id, path="notes.txt")["content"] == "kept"
        server.close_stdin()
        assert server.wait_exit(timeout=10) == 0, server.stderr_text
    assert_nothing_left(state_dir)
