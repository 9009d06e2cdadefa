"""Any mix of tools, many calls in flight on one session: no errors, no sandbox restart.

Assistants call tools in parallel. These tests keep 16 calls in flight on a `linux_latest`
session for a while (commands, background processes, every file tool, desktop calls), then check
that none failed, that the session's agent is the same process (its sandbox never restarted), and
that the background process started before the storm still runs, and that the session's context (saved
during the storm) was never left with a failed save. The second test does the same on 8 sessions at once.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from agentbay_mcp.server.wiring import build_server, default_backend
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.answers import unpack
from agentbay_mcp.testing.calls import call, unwrapped

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.xdist_group("hundred_sessions"),  # heavy: one at a time on one worker (scripts/test.sh)
]

#: Seconds of load per test (the issue's bar is 20; AGENTBAY_MCP_TEST_STORM_SECONDS shortens it locally).
STORM_SECONDS = float(os.environ.get("AGENTBAY_MCP_TEST_STORM_SECONDS", "20"))
IN_FLIGHT = 16

Call = Callable[[Client, str, int], Awaitable[Any]]


async def tool(client: Client, name: str, /, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(name, arguments)
    if result.is_error:
        text = " ".join(getattr(block, "text", "") for block in result.content)
        raise AssertionError(f"{name} failed: {text}")
    return unpack(name, result)


async def command(client: Client, session_id: str, n: int) -> None:
    ran = await tool(client, "execute_command", session_id=session_id, command=f"echo hi{n}")
    assert ran["stdout"] == f"hi{n}\n", ran


async def background(client: Client, session_id: str, n: int) -> None:
    started = await tool(client, "start_process", session_id=session_id, command=f"echo bg{n}; cat")
    process_id = started["process_id"]
    await tool(client, "write_process_input", session_id=session_id, process_id=process_id, data="x\n", eof=True)
    await tool(client, "wait_process", session_id=session_id, process_id=process_id, timeout_ms=10_000)
    out = await tool(client, "read_process_output", session_id=session_id, process_id=process_id)
    assert f"bg{n}" in out["stdout"], out


async def files(client: Client, session_id: str, n: int) -> None:
    path = f"/home/user/storm/{n % 50}.txt"
    await tool(client, "create_directory", session_id=session_id, path="/home/user/storm")
    await tool(client, "write_file", session_id=session_id, path=path, content=f"line {n}\n")
    read = await tool(client, "read_file", session_id=session_id, path=path)
    assert read["content"].startswith("line "), read
    await tool(client, "get_file_info", session_id=session_id, path=path)
    await tool(client, "list_directory", session_id=session_id, path="/home/user/storm")
    await tool(client, "search_files", session_id=session_id, path="/home/user", pattern="*.txt")
    moved = f"/home/user/storm/m{n}.txt"
    await tool(client, "write_file", session_id=session_id, path=moved + ".src", content="a b\n")
    edits = [{"old_text": "a", "new_text": "c"}]
    await tool(client, "edit_file", session_id=session_id, path=moved + ".src", edits=edits)
    await tool(client, "move_file", session_id=session_id, source=moved + ".src", destination=moved)
    await tool(client, "execute_command", session_id=session_id, command=f"rm -f {moved}")


async def desktop(client: Client, session_id: str, n: int) -> None:
    await tool(client, "list_windows", session_id=session_id)
    await tool(client, "get_active_window", session_id=session_id)
    await tool(client, "input_action", session_id=session_id, action="move", x=10 + n % 100, y=10)
    if n % 8 == 0:
        await tool(client, "take_screenshot", session_id=session_id, format="jpeg", max_width=320)


async def contexts(client: Client, session_id: str, n: int) -> None:
    """Save the session's context (which `files` writes into) while everything else runs; on the 8-session
    test every session shares the one context, so saves race each other too."""
    synced = await tool(client, "sync_context", session_id=session_id)
    assert [item["name"] for item in synced["synced"]] == ["storm"], synced
    if n % 4 == 0:
        await tool(client, "get_context", name="storm")
        await tool(client, "list_contexts")


MIX: tuple[Call, ...] = (command, command, background, files, desktop, contexts)


async def agent_pid(client: Client, session_id: str) -> str:
    """The agent's start time: it changes if the sandbox was restarted."""
    ran = await tool(client, "execute_command", session_id=session_id, command="cut -d' ' -f22 /proc/1/stat")
    return str(ran["stdout"])


async def storm(client: Client, session_id: str, seconds: float, errors: list[str]) -> int:
    """Keep IN_FLIGHT calls going on `session_id` for `seconds`; returns how many completed."""
    counter = itertools.count()
    done = 0
    deadline = time.monotonic() + seconds

    async def worker(offset: int) -> None:
        nonlocal done
        while time.monotonic() < deadline:
            n = next(counter)
            call_one = MIX[(n + offset) % len(MIX)]
            try:
                with anyio.fail_after(30):
                    await call_one(client, session_id, n)
                done += 1
            except (AssertionError, TimeoutError) as exc:
                errors.append(f"{call_one.__name__}: {exc}"[:300])

    async with anyio.create_task_group() as tg:
        for offset in range(IN_FLIGHT):
            tg.start_soon(worker, offset)
    return done


async def prepare(client: Client) -> tuple[str, str, str]:
    mounts = [{"name": "storm", "path": "/home/user/storm"}]
    session_id = (await call(client, "create_session", image_id="linux_latest", contexts=mounts))["session_id"]
    await tool(client, "list_windows", session_id=session_id)  # the desktop is up
    keeper = await tool(client, "start_process", session_id=session_id, command="sleep 600")
    return session_id, keeper["process_id"], await agent_pid(client, session_id)


async def check_after(client: Client, session_id: str, sleeper: str, pid: str) -> None:
    assert await agent_pid(client, session_id) == pid, "the session's sandbox was restarted during the storm"
    status = await tool(client, "wait_process", session_id=session_id, process_id=sleeper, timeout_ms=0)
    assert status["running"] is True, "the background process started before the storm was lost"
    assert (await tool(client, "get_context", name="storm"))["notice"] is None


async def test_sixteen_calls_in_flight_on_one_session(state_dir: Path) -> None:
    with unwrapped():
        async with Client(build_server(Settings(state_dir=state_dir), default_backend), mode="legacy") as client:
            session_id, sleeper, pid = await prepare(client)
            errors: list[str] = []
            done = await storm(client, session_id, STORM_SECONDS, errors)
            assert errors == [], f"{len(errors)} of {done + len(errors)} calls failed: {errors[:5]}"
            assert done > IN_FLIGHT
            await check_after(client, session_id, sleeper, pid)


async def test_sixteen_calls_in_flight_on_each_of_eight_sessions(state_dir: Path) -> None:
    with unwrapped():
        async with Client(build_server(Settings(state_dir=state_dir), default_backend), mode="legacy") as client:
            prepared = [await prepare(client) for _ in range(8)]
            errors: list[str] = []
            totals: list[int] = []

            async def one(session_id: str) -> None:
                totals.append(await storm(client, session_id, STORM_SECONDS, errors))

            async with anyio.create_task_group() as tg:
                for session_id, _, _ in prepared:
                    tg.start_soon(one, session_id)
            assert errors == [], f"{len(errors)} of {sum(totals) + len(errors)} calls failed: {errors[:5]}"
            for session_id, sleeper, pid in prepared:
                await check_after(client, session_id, sleeper, pid)
