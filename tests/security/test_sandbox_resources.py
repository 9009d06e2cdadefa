"""A hostile command's reach over resources: kill -9 -1, a fork bomb, memory hogs, file sizes, and
nothing left behind when a session or a command ends (real bubblewrap sandboxes through the MCP
tools, checked on the host: processes via psutil, the session's cgroups)."""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.local.cgroups import ROOT
from agentbay_mcp.backends.protocols import SandboxBackend
from agentbay_mcp.server.wiring import sandbox_options
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import call
from agentbay_mcp.testing.host import marked, nonce, sandbox_processes
from agentbay_mcp.testing.servers import session_dirs, stdio_params
from agentbay_mcp.testing.waiting import eventually
from tests.security.sandbox_attacks import (
    MIB,
    cgroup_dir,
    kill_marked,
    new_session,
    python,
    run,
    serve,
    start_host_sleeper,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


# 5. kill -9 -1 -------------------------------------------------------------------------------------


async def test_kill_everything_inside_a_session_hurts_nothing_outside_it(state_dir: Path) -> None:
    # A host process of the very uid the sandboxes run as: only the pid namespace protects it.
    host_sleeper = start_host_sleeper()
    mark = nonce()
    try:
        async with serve(state_dir) as client:
            a, b = await new_session(client), await new_session(client)
            neighbour = await call(client, "start_process", session_id=b, command=f"sleep 300.{mark}")
            sandbox_a = {p for p, c in sandbox_processes(state_dir, a).items() if "bwrap" in c or "agent" in c}
            assert len(sandbox_a) >= 2, sandbox_a  # bwrap and the agent

            result = await run(
                client, a, "kill -9 -1; kill -KILL 1; kill -TERM 1; kill -SEGV 1; kill -USR1 1; echo survived"
            )
            assert result["stdout"] == "survived\n", result
            await anyio.sleep(0.3)

            assert host_sleeper.poll() is None, "kill -9 -1 in a sandbox killed a host process of the sandbox uid"
            status = await call(client, "wait_process", session_id=b, process_id=neighbour["process_id"], timeout_ms=0)
            assert status["running"] is True, "kill -9 -1 in session A killed a process of session B"
            assert (await run(client, b, "echo ok"))["stdout"] == "ok\n"
            assert (await run(client, a, "echo still here"))["stdout"] == "still here\n"
            # ... and A's sandbox was not silently restarted: its agent (pid 1) survived.
            assert sandbox_a <= set(sandbox_processes(state_dir, a)), "session A's sandbox was restarted"
    finally:
        host_sleeper.kill()
        host_sleeper.wait(timeout=5)


# 6. Fork bomb ----------------------------------------------------------------------------------------


async def test_fork_bomb_is_contained(state_dir: Path) -> None:
    limit = 64
    async with serve(state_dir, process_limit=limit) as client:
        a, b = await new_session(client), await new_session(client)
        pids_current = cgroup_dir("pids", state_dir, a) / "pids.current"
        assert pids_current.exists(), "this host was promised per-session cgroups"
        peak = 0
        bomb: dict[str, Any] = {}
        answered_in: list[float] = []

        def pids() -> int:
            with contextlib.suppress(OSError, ValueError):
                return int(pids_current.read_text())
            return 0

        async def detonate() -> None:
            bomb.update(await run(client, a, "bash -c ':(){ :|:& };:'; sleep 30", timeout_ms=4000))

        async def sample(stop: anyio.Event) -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, pids())
                await anyio.sleep(0.02)

        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample, stop)
            async with anyio.create_task_group() as bombing:
                bombing.start_soon(detonate)
                assert await eventually(lambda: pids() >= limit // 2, timeout=5), "the bomb never went off"
                started = time.monotonic()
                with anyio.fail_after(5):
                    assert (await run(client, b, "echo ok", timeout_ms=5000))["stdout"] == "ok\n"
                answered_in.append(time.monotonic() - started)
            stop.set()

        assert bomb["timed_out"] is True or bomb["exit_code"] != 0, bomb
        assert answered_in[0] < 5
        assert 0 < peak <= limit, f"session had {peak} processes with process_limit={limit}"
        # What the bomb left is gone: only the agent (and the keeper it keeps ready for the next
        # command) remain in the session, which works again.
        assert await eventually(lambda: pids() <= 2, timeout=5), f"{pids()} processes left after the bomb"
        assert (await run(client, a, "echo recovered"))["stdout"] == "recovered\n"

        await call(client, "delete_session", session_id=a)
        assert await eventually(lambda: not sandbox_processes(state_dir, a), timeout=5), sandbox_processes(state_dir, a)
        assert (await run(client, b, "echo ok"))["stdout"] == "ok\n"


# 7. Memory -------------------------------------------------------------------------------------------


async def test_memory_hogs_fail_without_hurting_the_session_or_the_host(state_dir: Path) -> None:
    limit_mb = 256
    async with serve(state_dir, memory_limit_mb=limit_mb) as client:
        a, b = await new_session(client), await new_session(client)
        background = await call(client, "start_process", session_id=a, command="sleep 300")

        single = await run(client, a, python("b = bytearray(600 * 1024 * 1024)"))
        assert single["exit_code"] != 0, single

        # Three processes each under the per-process limit, together over the session's cgroup limit.
        hog = python("import time; b = b'x' * (200 << 20); time.sleep(6)")  # long enough to overlap under load
        many = await run(
            client,
            a,
            f'for i in 1 2 3; do {hog} & pids="$pids $!"; done; fails=0; '
            "for p in $pids; do wait $p || fails=$((fails + 1)); done; echo fails=$fails; exit $fails",
        )
        assert many["exit_code"] != 0, many
        peak_file = cgroup_dir("memory", state_dir, a) / (
            "memory.peak" if (ROOT / "cgroup.controllers").exists() else "memory.max_usage_in_bytes"
        )
        if peak_file.exists():
            assert int(peak_file.read_text()) <= limit_mb * MIB

        with anyio.fail_after(5):
            assert (await run(client, b, "echo ok"))["stdout"] == "ok\n"
        assert (await run(client, a, "echo ok"))["stdout"] == "ok\n"
        # The agent survived: it still knows the process started before the hogs (a restarted agent
        # would not). The kernel may have picked that process itself as an OOM victim (every command
        # is a candidate, only the agent is spared), so it need not still be running.
        status = await call(client, "wait_process", session_id=a, process_id=background["process_id"], timeout_ms=0)
        killed = status["signal"] == signal.SIGKILL or status["exit_code"] == 128 + signal.SIGKILL  # sleep or its sh
        assert status["running"] is True or killed, status


async def test_filling_ram_backed_tmpfs_does_not_kill_the_session(state_dir: Path) -> None:
    async with serve(state_dir, memory_limit_mb=256) as client:
        session_id = await new_session(client)
        background = await call(client, "start_process", session_id=session_id, command="sleep 300")
        filled = await run(
            client,
            session_id,
            "for i in 1 2 3 4 5 6 7; do dd if=/dev/zero of=/dev/shm/f$i bs=1M count=50 2>/dev/null || exit 1; done",
        )
        assert filled["exit_code"] != 0
        status = await call(
            client, "wait_process", session_id=session_id, process_id=background["process_id"], timeout_ms=0
        )
        assert status["running"] is True


# 8. File size -----------------------------------------------------------------------------------------


async def test_file_size_limit_stops_a_big_write(state_dir: Path) -> None:
    async with serve(state_dir, file_size_limit_mb=50) as client:
        session_id = await new_session(client)
        started = time.monotonic()
        result = await run(client, session_id, "dd if=/dev/zero of=big bs=1M count=200")
        assert result["exit_code"] != 0, result
        assert "File size limit exceeded" in result["stderr"], result
        assert time.monotonic() - started < 10
        big = state_dir / "sessions" / session_id / "home" / "big"
        assert 0 < big.stat().st_size <= 50 * MIB
        # Output bigger than the limit is capped in the spill file, not fatal to the agent.
        flood = await run(client, session_id, "head -c 70000000 /dev/zero")
        assert flood["exit_code"] == 0
        assert flood["stdout_bytes"] == 70_000_000
        with anyio.fail_after(5):
            assert (await run(client, session_id, "echo ok"))["stdout"] == "ok\n"


async def test_full_output_file_cut_by_the_size_limit_is_a_true_prefix(state_dir: Path) -> None:
    async with serve(state_dir, file_size_limit_mb=1) as client:
        session_id = await new_session(client)
        result = await run(client, session_id, "seq 1 400000")
        expected = "".join(f"{i}\n" for i in range(1, 400_001))
        assert result["exit_code"] == 0
        assert result["stdout_bytes"] == len(expected)
        assert result["full_stdout_path"] is not None
        kept = state_dir / "sessions" / session_id / "tmp" / ".agentbay" / Path(result["full_stdout_path"]).name
        content = kept.read_text()
        assert len(content) <= MIB
        assert expected.startswith(content), f"the kept file starts with {content[:40]!r}"


# 10. Nothing left behind ----------------------------------------------------------------------------------


async def test_delete_session_leaves_no_process_behind(state_dir: Path) -> None:
    mark = nonce()
    async with serve(state_dir) as client:
        keep, doomed = await new_session(client), await new_session(client)
        await call(client, "start_process", session_id=doomed, command=f"sleep 300.{mark}")
        await call(client, "start_process", session_id=doomed, command="setsid sleep 301 & sleep 302")
        assert (await run(client, doomed, "echo ok"))["stdout"] == "ok\n"
        assert await eventually(lambda: len(sandbox_processes(state_dir, doomed)) >= 4, timeout=5)
        before = sandbox_processes(state_dir, doomed, (mark,))
        assert any(mark in c for c in before.values()), before
        assert any("bwrap" in c for c in before.values()), before

        await call(client, "delete_session", session_id=doomed)
        assert await eventually(lambda: not sandbox_processes(state_dir, doomed, (mark,)), timeout=5), (
            sandbox_processes(state_dir, doomed, (mark,))
        )
        for controller in ("pids", "memory"):
            assert not cgroup_dir(controller, state_dir, doomed).exists()
        assert session_dirs(state_dir) == [keep]
        assert (await run(client, keep, "echo ok"))["stdout"] == "ok\n"


async def test_disconnect_mid_command_leaves_no_process_behind(state_dir: Path) -> None:
    """A real stdio server whose client goes away while a command runs.

    Not in-process: there, this disconnect sometimes makes asyncio report "Exception in callback
    Future.set_result(None): InvalidStateError" (AgentClient.aclose closes the anyio UNIXSocketStream
    while AgentClient.serve is blocked in receive() and the agent's reply to the 'cancel' request is
    arriving), which anyio's pytest plugin turns into a failure of whatever test is running.
    """
    mark = nonce()
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            async with Client(stdio_params(state_dir, "--log-level", "WARNING"), mode="legacy") as client:
                session_id = await new_session(client)

                async def long_command() -> None:
                    with contextlib.suppress(Exception):  # the connection goes away under it
                        await run(client, session_id, f"sleep 300.{mark}", timeout_ms=600_000)

                tg.start_soon(long_command)
                assert await eventually(lambda: marked(state_dir, mark), timeout=10)
                assert any("bwrap" in c for c in sandbox_processes(state_dir, session_id).values())
            # The client is gone (stdin closed, server stopped) while the command still runs.
            tg.cancel_scope.cancel()
    assert await eventually(lambda: not sandbox_processes(state_dir, markers=(mark,)), timeout=10), sandbox_processes(
        state_dir, markers=(mark,)
    )
    assert session_dirs(state_dir) == []


FAKE_BWRAP = """#!/bin/sh
# bwrap caught between clone() and reporting the child's pid on --info-fd: its sandbox child already
# exists and waits for a go-ahead (bwrap's child_wait_fd) that will never come.
sleep 300.{child} &
exec sleep 300.{parent}
"""


async def test_an_aborted_sandbox_launch_leaves_no_process_behind(state_dir: Path, tmp_path: Path) -> None:
    child, parent = nonce(), nonce()
    fake = tmp_path / "fake-bwrap"
    fake.write_text(FAKE_BWRAP.format(child=child, parent=parent))
    fake.chmod(0o755)

    def backend(settings: Settings) -> SandboxBackend:
        options = dataclasses.replace(sandbox_options(settings), bwrap_path=str(fake))
        return LocalBackend(settings.state_dir, sandbox=options)

    try:
        async with anyio.create_task_group() as tg:
            async with serve(state_dir, backend) as client:

                async def create() -> None:
                    with contextlib.suppress(Exception):
                        await client.call_tool("create_session", {})

                tg.start_soon(create)
                assert await eventually(lambda: marked(state_dir, child), timeout=5)
            tg.cancel_scope.cancel()  # the client disconnected in the middle of create_session
        assert await eventually(lambda: not sandbox_processes(state_dir, markers=(parent,)), timeout=5)
        assert session_dirs(state_dir) == []
        assert await eventually(lambda: not sandbox_processes(state_dir, markers=(child,)), timeout=3), (
            "the sandbox child of an aborted launch is still running"
        )
    finally:
        kill_marked(f"300.{child}", f"300.{parent}")


async def test_process_limit_holds_without_cgroups(state_dir: Path) -> None:
    limit = 64

    def backend(settings: Settings) -> SandboxBackend:
        return LocalBackend(settings.state_dir, sandbox=sandbox_options(settings), use_cgroups=False)

    async with serve(state_dir, backend, process_limit=limit) as c:
        session_id = await new_session(c)
        limits = (await run(c, session_id, "cat /proc/self/limits"))["stdout"]
        line = next(line for line in limits.splitlines() if line.startswith("Max processes"))
        soft = line.split()[2]
        assert soft != "unlimited", line
        assert int(soft) <= limit, line
