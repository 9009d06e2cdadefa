"""A hostile agent, end to end: a real HTTP MCP server whose sandboxes run tests/security/hostile_agent.py
(injected through SandboxOptions.agent_dir, isolation none). Whatever one session's agent sends, the
server keeps serving every other conversation, and that session works again on the next call."""

from __future__ import annotations

import contextlib
import shutil
import statistics
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
import uvicorn
from anyio.abc import TaskGroup
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.local.restarts import RESTARTS_AFTER_VIOLATION
from agentbay_mcp.backends.local.sandbox import SandboxOptions
from agentbay_mcp.backends.protocols import SandboxBackend
from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import call, call_error
from agentbay_mcp.testing.servers import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

HOSTILE_AGENT = Path(__file__).with_name("hostile_agent.py")
ATTACKS = ("deep", "deep-id", "flood", "shape", "unsolicited")


class _QuietServer(uvicorn.Server):
    """uvicorn in the test's own event loop, leaving pytest's signal handlers alone."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def hostile_server(state_dir: Path, tmp_path: Path) -> AsyncIterator[str]:
    """A real streamable-HTTP MCP server on 127.0.0.1 whose every session runs the hostile agent."""
    agent_dir = tmp_path / "hostile-agent"
    agent_dir.mkdir()
    shutil.copy(HOSTILE_AGENT, agent_dir / "sandbox_agent.py")
    settings = Settings(state_dir=state_dir)

    def backend(s: Settings) -> SandboxBackend:
        return LocalBackend(
            s.state_dir, sandbox=SandboxOptions(isolation="none", agent_dir=agent_dir), use_cgroups=False
        )

    app = build_server(settings, backend_factory=backend).streamable_http_app(streamable_http_path="/mcp")
    port = free_port()
    server = _QuietServer(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    async with anyio.create_task_group() as group:
        group.start_soon(server.serve)
        with anyio.fail_after(10):
            while not server.started:  # noqa: ASYNC110 - uvicorn offers no event to wait on
                await anyio.sleep(0.01)
        try:
            yield f"http://127.0.0.1:{port}/mcp"
        finally:
            server.should_exit = True


@contextlib.asynccontextmanager
async def conversation(url: str) -> AsyncIterator[Client]:
    async with (
        httpx2.AsyncClient(timeout=30) as http,
        Client(streamable_http_client(url, http_client=http), mode="legacy", cache=None) as client,
    ):
        yield client


async def run(client: Client, session_id: str, command: str) -> str:
    result = await call(client, "execute_command", session_id=session_id, command=command)
    return str(result["stdout"])


async def test_a_hostile_agent_ends_only_its_own_session_and_that_one_recovers(state_dir: Path, tmp_path: Path) -> None:
    async with hostile_server(state_dir, tmp_path) as url, conversation(url) as victim, conversation(url) as other:
        bystander = (await call(other, "create_session"))["session_id"]
        for attack in ATTACKS:
            # A session of its own per attack: one session gets only a few restarts a minute.
            attacked = (await call(victim, "create_session", image_id="linux_latest"))["session_id"]
            with anyio.fail_after(20):
                message = await call_error(victim, "execute_command", session_id=attacked, command=attack)
            assert "broke the protocol" in message, message
            assert "restarted on the next call" in message, message
            # Another conversation is served as before, and so is the attacked session, by a fresh sandbox.
            assert await run(other, bystander, f"after {attack}") == f"after {attack}"
            assert await run(victim, attacked, "again") == "again"
        message = await call_error(victim, "take_screenshot", session_id=attacked)
        assert "desktop_screenshot" in message, message
        assert await run(other, bystander, "still here") == "still here"


async def test_a_session_that_keeps_breaking_the_protocol_is_not_restarted_for_every_call(
    state_dir: Path, tmp_path: Path
) -> None:
    # Each restart is a process launch on the cores every conversation shares: a taken-over session
    # gets at most RESTARTS_AFTER_VIOLATION of them a minute, then its calls fail at once.
    async with hostile_server(state_dir, tmp_path) as url, conversation(url) as victim, conversation(url) as other:
        attacked = (await call(victim, "create_session"))["session_id"]
        bystander = (await call(other, "create_session"))["session_id"]
        messages = []
        for _ in range(RESTARTS_AFTER_VIOLATION + 3):
            with anyio.fail_after(20):
                messages.append(await call_error(victim, "execute_command", session_id=attacked, command="flood"))
        restarted = [m for m in messages if "restarted on the next call" in m]
        refused = [m for m in messages if "can be restarted in" in m]
        assert len(restarted) == RESTARTS_AFTER_VIOLATION + 1, messages  # the first sandbox, then 8 restarts
        assert len(refused) == 2, messages
        started = time.perf_counter()
        refusal = await call_error(victim, "execute_command", session_id=attacked, command="ping")
        assert "can be restarted in" in refusal
        assert time.perf_counter() - started < 1.0, "a refused restart must fail at once"
        assert await run(other, bystander, "unaffected") == "unaffected"


def p(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(client: Client, session_id: str, rounds: int) -> list[float]:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await run(client, session_id, "ping")
        samples.append(time.perf_counter() - started)
    return samples


async def flood(client: Client, session_id: str, stop: anyio.Event, sent: list[int]) -> None:
    while not stop.is_set():
        await call_error(client, "execute_command", session_id=session_id, command="flood")
        sent[0] += 1
        await anyio.sleep(0.05)  # each round also restarts the session's sandbox (a process start)


async def flooded_latency(url: str, rounds: int) -> tuple[list[float], list[float], int]:
    """Quiet, then under a flood of 30 MB frames from three sessions: one conversation's latencies."""
    async with contextlib.AsyncExitStack() as stack:
        measured = await stack.enter_async_context(conversation(url))
        session_id = (await call(measured, "create_session"))["session_id"]
        floods = []
        for _ in range(3):
            client = await stack.enter_async_context(conversation(url))
            floods.append((client, (await call(client, "create_session"))["session_id"]))
        await measure(measured, session_id, 20)  # warm up
        quiet = await measure(measured, session_id, rounds)
        stop, sent = anyio.Event(), [0]
        group: TaskGroup
        async with anyio.create_task_group() as group:
            for client, flooded in floods:
                group.start_soon(flood, client, flooded, stop, sent)
            await anyio.sleep(0.3)
            loud = await measure(measured, session_id, rounds)
            stop.set()
    return quiet, loud, sent[0]


async def test_a_flood_of_huge_frames_does_not_slow_other_conversations(state_dir: Path, tmp_path: Path) -> None:
    async with hostile_server(state_dir, tmp_path) as url:
        quiet, loud, frames = await flooded_latency(url, 150)
    quiet_p99, loud_p99 = p(quiet, 0.99), p(loud, 0.99)
    summary = (
        f"quiet p50 {statistics.median(quiet) * 1000:.1f} ms p99 {quiet_p99 * 1000:.1f} ms; flooded p50 "
        f"{statistics.median(loud) * 1000:.1f} ms p99 {loud_p99 * 1000:.1f} ms; {frames} flood rounds"
    )
    assert frames >= 10, summary
    # Within 2x plus 100 ms on a shared, loaded 2-core machine: every flood round also restarts a
    # sandbox (a process start competing for the same cores). Unfixed, parsing the frames took 1-2.5 s.
    assert loud_p99 <= 2 * quiet_p99 + 0.100, summary
