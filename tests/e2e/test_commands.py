"""Command tools through the MCP protocol: results, bad input, timeouts, cancellation, processes."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup
from mcp import Client

from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.local.agent_client import SandboxDiedError
from agentbay_mcp.backends.local.sandbox import SandboxOptions
from agentbay_mcp.backends.records import ShellCommand
from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import call, call_error
from agentbay_mcp.testing.host import marked_processes, sleeper
from agentbay_mcp.testing.servers import stdio_params
from agentbay_mcp.testing.waiting import eventually

pytestmark = pytest.mark.anyio


async def new_session(client: Client, **arguments: Any) -> str:
    return str((await call(client, "create_session", image_id="code_latest", **arguments))["session_id"])


async def test_exit_code_and_separate_streams(client: Client) -> None:
    session_id = await new_session(client)
    result = await call(client, "execute_command", session_id=session_id, command="echo out; echo err >&2; exit 3")
    assert result["exit_code"] == 3
    assert result["stdout"] == "out\n"
    assert result["stderr"] == "err\n"
    assert result["timed_out"] is False
    assert result["stdout_truncated"] is False
    assert result["stdout_bytes"] == 4
    assert result["duration_ms"] >= 0
    assert "code 3" in result["message"]


async def test_runs_in_home_with_cwd_and_env(client: Client) -> None:
    session_id = await new_session(client)
    result = await call(client, "execute_command", session_id=session_id, command="pwd; echo $HOME; id -un")
    assert result["stdout"].split() == ["/home/user", "/home/user", "user"]
    await call(client, "execute_command", session_id=session_id, command="mkdir -p work/sub")
    result = await call(
        client, "execute_command", session_id=session_id, command="pwd; echo $GREETING", cwd="work/sub",
        envs={"GREETING": "hello world"},
    )  # fmt: skip
    assert result["stdout"].split("\n")[:2] == ["/home/user/work/sub", "hello world"]
    result = await call(client, "execute_command", session_id=session_id, command="pwd", cwd="/tmp")
    assert result["stdout"] == "/tmp\n"


async def test_files_persist_between_commands(client: Client, state_dir: Path) -> None:
    session_id = await new_session(client)
    await call(client, "execute_command", session_id=session_id, command="echo kept > note.txt")
    result = await call(client, "execute_command", session_id=session_id, command="cat note.txt")
    assert result["stdout"] == "kept\n"
    assert (state_dir / "sessions" / session_id / "home" / "note.txt").read_text() == "kept\n"


async def test_stdin_is_closed(client: Client) -> None:
    session_id = await new_session(client)
    result = await call(client, "execute_command", session_id=session_id, command="cat; echo done", timeout_ms=5000)
    assert result["stdout"] == "done\n"
    assert result["timed_out"] is False


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"command": ""}, "command is empty"),
        ({"command": "   "}, "command is empty"),
        ({"command": "echo a\x00b"}, "NUL"),
        ({"command": "true", "timeout_ms": 0}, "timeout_ms"),
        ({"command": "true", "timeout_ms": 10**12}, "timeout_ms"),
        ({"command": "true", "cwd": "/no/such/dir"}, "does not exist"),
        ({"command": "true", "cwd": "/etc/passwd"}, "not a directory"),
        ({"command": "true", "envs": {"BAD NAME": "x"}}, "not valid"),
        ({"command": "true", "envs": {"N": 5}}, "envs"),
    ],
)
async def test_bad_input_is_a_clear_error(client: Client, arguments: dict[str, Any], expected: str) -> None:
    session_id = await new_session(client)
    message = await call_error(client, "execute_command", session_id=session_id, **arguments)
    assert expected in message
    # The session is still fine afterwards.
    assert (await call(client, "execute_command", session_id=session_id, command="echo ok"))["stdout"] == "ok\n"


async def test_unknown_session_and_process(client: Client) -> None:
    message = await call_error(client, "execute_command", session_id="session-" + "0" * 24, command="true")
    assert "not found" in message
    session_id = await new_session(client)
    for tool, extra in (
        ("read_process_output", {}),
        ("wait_process", {}),
        ("kill_process", {}),
        ("write_process_input", {"data": "x"}),
    ):
        message = await call_error(client, tool, session_id=session_id, process_id="p999", **extra)
        assert "Process 'p999' not found" in message
        assert "list_processes" in message


async def test_timeout_kills_a_tree_that_ignores_sigterm(client: Client) -> None:
    session_id = await new_session(client)
    marker = f"m{secrets.token_hex(4)}"
    command = f"trap '' TERM; echo started; {sleeper(marker, ignore_term=True)} & {sleeper(marker, ignore_term=True)}"
    result = await call(client, "execute_command", session_id=session_id, command=command, timeout_ms=700)
    assert result["timed_out"] is True
    assert result["exit_code"] == 128 + signal.SIGKILL
    assert result["stdout"] == "started\n"
    assert "Timed out after 700 ms" in result["message"]
    assert await eventually(lambda: not marked_processes(marker), timeout=5)


async def test_background_process_round_trip(client: Client) -> None:
    session_id = await new_session(client)
    started = await call(client, "start_process", session_id=session_id, command="cat")
    process_id = started["process_id"]
    assert started["running"] is True
    assert started["stdin_open"] is True
    written = await call(client, "write_process_input", session_id=session_id, process_id=process_id, data="hello\n")
    assert written["bytes_written"] == 6
    chunk = await call(client, "read_process_output", session_id=session_id, process_id=process_id, wait_ms=5000)
    assert chunk["stdout"] == "hello\n"
    cursor = chunk["cursor"]
    await call(client, "write_process_input", session_id=session_id, process_id=process_id, data="again\n")
    chunk = await call(
        client, "read_process_output", session_id=session_id, process_id=process_id, cursor=cursor, wait_ms=5000
    )
    assert chunk["stdout"] == "again\n"
    listed = await call(client, "list_processes", session_id=session_id)
    assert [p["process_id"] for p in listed["processes"]] == [process_id]
    killed = await call(client, "kill_process", session_id=session_id, process_id=process_id)
    assert killed["running"] is False
    assert killed["signal"] == signal.SIGTERM


async def test_read_waits_server_side_until_output(client: Client) -> None:
    session_id = await new_session(client)
    process_id = (await call(client, "start_process", session_id=session_id, command="sleep 0.5; echo late"))[
        "process_id"
    ]
    empty = await call(client, "read_process_output", session_id=session_id, process_id=process_id)
    assert empty["stdout"] == ""
    with anyio.fail_after(5):
        chunk = await call(client, "read_process_output", session_id=session_id, process_id=process_id, wait_ms=5000)
    assert chunk["stdout"] == "late\n"
    status = await call(client, "wait_process", session_id=session_id, process_id=process_id, timeout_ms=5000)
    assert status["running"] is False
    assert status["exit_code"] == 0


async def test_eof_closes_stdin(client: Client) -> None:
    session_id = await new_session(client)
    process_id = (await call(client, "start_process", session_id=session_id, command="wc -l"))["process_id"]
    await call(client, "write_process_input", session_id=session_id, process_id=process_id, data="a\nb\n", eof=True)
    status = await call(client, "wait_process", session_id=session_id, process_id=process_id, timeout_ms=5000)
    assert status["exit_code"] == 0
    chunk = await call(client, "read_process_output", session_id=session_id, process_id=process_id)
    assert chunk["stdout"].strip() == "2"


async def test_progress_is_reported_for_long_commands(state_dir: Path) -> None:
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    async with Client(build_server(Settings(state_dir=state_dir)), mode="legacy") as client:
        session_id = await new_session(client)
        result = await client.call_tool(
            "execute_command",
            {
                "session_id": session_id,
                "command": "for i in 1 2 3; do echo line$i; sleep 0.6; done",
                "timeout_ms": 10000,
            },
            progress_callback=on_progress,
        )
        assert not result.is_error
    assert len(updates) >= 1
    progress, total, message = updates[-1]
    assert total == 10.0
    assert progress > 0.5
    assert message is not None
    assert "line" in message


async def test_cancelling_a_call_kills_the_command(state_dir: Path) -> None:
    marker = f"m{secrets.token_hex(4)}"
    async with Client(build_server(Settings(state_dir=state_dir)), mode="legacy") as client:
        session_id = await new_session(client)
        with anyio.move_on_after(1.0):
            await client.call_tool("execute_command", {"session_id": session_id, "command": sleeper(marker)})
        assert await eventually(lambda: not marked_processes(marker), timeout=5), "cancelled command still running"
        # The session keeps working.
        assert (await call(client, "execute_command", session_id=session_id, command="echo ok"))["stdout"] == "ok\n"


async def test_disconnect_mid_command_leaves_no_process(state_dir: Path) -> None:
    marker = f"m{secrets.token_hex(4)}"
    params = stdio_params(state_dir, "--log-level", "WARNING")
    with anyio.move_on_after(3):
        async with Client(params, mode="legacy") as client:
            session_id = await new_session(client)
            await client.call_tool("execute_command", {"session_id": session_id, "command": sleeper(marker)})
    assert await eventually(lambda: not marked_processes(marker), timeout=10)
    assert await eventually(lambda: not list((state_dir / "sessions").glob("session-*")), timeout=10)


async def test_missing_bwrap_is_a_clear_error(state_dir: Path) -> None:
    def no_bwrap(settings: Settings) -> LocalBackend:
        return LocalBackend(settings.state_dir, sandbox=SandboxOptions(isolation="bwrap", bwrap_path=""))

    async with Client(build_server(Settings(state_dir=state_dir), backend_factory=no_bwrap)) as client:
        session_id = await new_session(client)
        message = await call_error(client, "execute_command", session_id=session_id, command="true")
        assert "bubblewrap" in message
        assert "apt-get install bubblewrap" in message
        assert "--isolation none" in message


async def test_isolation_none_runs_unconfined(state_dir: Path) -> None:
    async with Client(build_server(Settings(state_dir=state_dir, isolation="none"))) as client:
        session_id = await new_session(client)
        result = await call(client, "execute_command", session_id=session_id, command="pwd; echo hi > f; cat f")
        home = state_dir / "sessions" / session_id / "home"
        assert result["stdout"] == f"{home}\nhi\n"


async def test_a_killed_sandbox_is_restarted_with_its_files(state_dir: Path, task_group: TaskGroup) -> None:
    backend = LocalBackend(state_dir)
    await backend.start(task_group)
    record = await backend.create_session(image_id="code_latest", labels={}, owner="c")
    outcome = await backend.processes.run_process(
        record.session_id, ShellCommand(command="echo kept > f"), wait_ms=5000, cap=65536
    )
    assert outcome.info.exit_code == 0
    sandbox_pid = backend._sandboxes[record.session_id].child_pid
    os.kill(sandbox_pid, signal.SIGKILL)
    # A call racing the death may fail with "the sandbox is gone ... retry"; the next one restarts it.
    with contextlib.suppress(SandboxDiedError):
        await anyio.sleep(0.2)
        await backend.processes.run_process(record.session_id, ShellCommand(command="true"), wait_ms=5000, cap=65536)
    outcome = await backend.processes.run_process(
        record.session_id, ShellCommand(command="cat f"), wait_ms=5000, cap=65536
    )
    assert outcome.summary is not None
    assert outcome.summary["stdout"].head == b"kept\n"
    await backend.delete_session(record.session_id)
    await backend.close()


async def test_a_busy_session_does_not_expire_mid_command(state_dir: Path) -> None:
    async with Client(build_server(Settings(state_dir=state_dir, idle_lease_seconds=0.5))) as client:
        session_id = await new_session(client)
        result = await call(client, "execute_command", session_id=session_id, command="sleep 1.5; echo survived")
        assert result["stdout"] == "survived\n"
        await anyio.sleep(1.2)
        assert "not found" in await call_error(client, "get_session", session_id=session_id)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_commands_through_a_real_stdio_server(state_dir: Path, mode: str) -> None:
    async with Client(stdio_params(state_dir), mode=mode) as client:  # type: ignore[arg-type]
        session_id = await new_session(client)
        result = await call(client, "execute_command", session_id=session_id, command="echo via stdio; uname -n")
        assert result["stdout"] == "via stdio\nsandbox\n"
        process_id = (await call(client, "start_process", session_id=session_id, command="cat"))["process_id"]
        await call(client, "write_process_input", session_id=session_id, process_id=process_id, data="ping\n")
        chunk = await call(client, "read_process_output", session_id=session_id, process_id=process_id, wait_ms=5000)
        assert chunk["stdout"] == "ping\n"
    assert not list((state_dir / "sessions").glob("session-*"))
