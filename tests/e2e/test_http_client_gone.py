"""An HTTP client that goes away ends what it left behind; one that is only thinking keeps it.

Real servers (`agentbay-mcp --transport http` subprocesses) and real clients: the TypeScript MCP
SDK (tests/js, installed by `bash scripts/setup.sh --dev`), the Python SDK, and raw HTTP. The
rules are in docs/conversations.md ("When an HTTP client goes away") and client_presence.py.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from agentbay_mcp.testing.calls import call
from agentbay_mcp.testing.host import marked_processes, sleeper
from agentbay_mcp.testing.http_clients import (
    LEGACY_VERSION,
    RawLegacySession,
    gone,
    legacy,
    legacy_headers,
    raw_legacy_session,
    sessionless,
)
from agentbay_mcp.testing.servers import HttpServer, session_dirs
from agentbay_mcp.testing.waiting import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

GRACE = 2.0
#: Generous on a shared 2-core machine; the grace itself is the point, not this margin.
MARGIN = 4.0
JS_DIR = Path(__file__).parent.parent / "js"


@pytest.fixture
def server(state_dir: Path) -> Any:
    http = HttpServer(state_dir, "--http-disconnect-grace", str(GRACE), start_token=True)
    yield http
    http.stop()


def running(marker: str) -> bool:
    return bool(marked_processes(marker))


def stopped(marker: str) -> bool:
    return not marked_processes(marker)


# 1. The TypeScript SDK client closes (or exits) without DELETE ----------------------------------


@asynccontextmanager
async def node_client(server: HttpServer, command: str, how: str) -> AsyncIterator[tuple[Process, Any]]:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the TypeScript SDK client cannot run (CI has node)")
    if not (JS_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        pytest.fail("tests/js/node_modules is missing: run `bash scripts/setup.sh --dev` (it runs npm ci)")
    # The token in the environment, not the command line, where every local user could read it.
    env = {**os.environ, "MCP_BEARER_TOKEN": server.token or ""}
    process = await anyio.open_process(
        [node, str(JS_DIR / "close_without_delete.mjs"), server.url, command, how], env=env
    )
    assert process.stdout is not None
    buffered = BufferedByteReceiveStream(process.stdout)

    async def next_line() -> dict[str, Any]:
        with anyio.fail_after(30):
            return dict(json.loads(await buffered.receive_until(b"\n", 1 << 20)))

    try:
        yield process, next_line
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.fail_after(10):
            await process.wait()


@pytest.mark.parametrize("how", ["close", "exit"])
async def test_typescript_client_gone_without_delete_releases_its_sessions(
    server: HttpServer, state_dir: Path, how: str
) -> None:
    marker = f"m{secrets.token_hex(4)}"
    async with legacy(server) as control:  # connected (the SDK holds its GET stream) but idle throughout
        kept = (await call(control, "create_session", image_id="code_latest"))["session_id"]
        async with node_client(server, sleeper(marker), how) as (process, next_line):
            leaving = (await next_line())["session_id"]
            assert (await next_line()) == {"started": True}
            assert await eventually(lambda: running(marker), timeout=15), "the long command never started"
            assert process.stdin is not None
            await process.stdin.send(b"go\n")
            left = time.monotonic()
            with anyio.fail_after(10):
                await process.wait()
            # The call in flight is cancelled at once: its command is killed, not left to run on unseen.
            assert await eventually(lambda: stopped(marker), timeout=1.5), "the abandoned command is still running"
            killed_after = time.monotonic() - left
        # No DELETE ever came: the grace ends the MCP session, and its sandbox with it.
        assert await eventually(lambda: gone(state_dir, leaving), timeout=GRACE + MARGIN), session_dirs(state_dir)
        released_after = time.monotonic() - left
        assert released_after >= GRACE * 0.9, f"released after {released_after:.2f} s, before the grace"
        # The idle but connected conversation was never touched.
        assert session_dirs(state_dir) == [kept]
        assert (await call(control, "get_session", session_id=kept))["status"] == "RUNNING"
    print(f"{how}: command killed {killed_after * 1000:.0f} ms, session released {released_after:.2f} s after")


# 2. A call whose connection closes is cancelled, in both eras -----------------------------------


async def test_legacy_call_is_cancelled_when_its_connection_closes(server: HttpServer, state_dir: Path) -> None:
    """Raw HTTP, so nothing but the closed connection can be what cancels the call."""
    marker = f"m{secrets.token_hex(4)}"
    async with raw_legacy_session(server.url, server.headers) as raw:
        session_id = (await raw.call_tool("create_session", image_id="code_latest"))["session_id"]
        body = {
            "jsonrpc": "2.0",
            "id": 99,
            "method": "tools/call",
            "params": {"name": "execute_command", "arguments": {"session_id": session_id, "command": sleeper(marker)}},
        }
        async with raw._http.stream(
            "POST", server.url, content=json.dumps(body), headers=legacy_headers(raw.session_id)
        ) as response:
            assert response.status_code == 200
            assert await eventually(lambda: running(marker), timeout=15), "the long command never started"
        left = time.monotonic()  # leaving the block closed the half-read response's connection
        assert await eventually(lambda: stopped(marker), timeout=1.5), "the abandoned command is still running"
        print(f"legacy: command killed {(time.monotonic() - left) * 1000:.0f} ms after the connection closed")
        # The MCP session itself lives on: the client may still be there, with another connection.
        assert (await raw.call_tool("get_session", session_id=session_id))["status"] == "RUNNING"
    assert session_dirs(state_dir) == [session_id]


async def test_sessionless_call_is_cancelled_when_its_connection_closes(server: HttpServer) -> None:
    """The 2026-07-28 era has no cancel notification at all: closing the stream is how a client cancels."""
    marker = f"m{secrets.token_hex(4)}"
    async with sessionless(server) as client:
        session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]

        async def long_call() -> None:
            await client.call_tool("execute_command", {"session_id": session_id, "command": sleeper(marker)})

        async with anyio.create_task_group() as tg:
            tg.start_soon(long_call)
            assert await eventually(lambda: running(marker), timeout=15), "the long command never started"
            tg.cancel_scope.cancel()
        left = time.monotonic()
        assert await eventually(lambda: stopped(marker), timeout=1.5), "the abandoned command is still running"
        print(f"sessionless: command killed {(time.monotonic() - left) * 1000:.0f} ms after the stream closed")
        await call(client, "delete_session", session_id=session_id)


# 3. Thinking is not leaving -------------------------------------------------------------------


async def open_and_close_get_stream(raw: RawLegacySession, url: str) -> None:
    """Hold the GET stream a moment, as SDK clients do, then drop it."""
    headers = {"Accept": "text/event-stream", "Mcp-Session-Id": str(raw.session_id)}
    headers["mcp-protocol-version"] = LEGACY_VERSION
    async with raw._http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200


async def test_a_client_calling_within_the_grace_keeps_its_sessions(server: HttpServer, state_dir: Path) -> None:
    async with raw_legacy_session(server.url, server.headers) as raw:
        session_id = (await raw.call_tool("create_session", image_id="code_latest"))["session_id"]
        await open_and_close_get_stream(raw, server.url)
        # No stream open from here on; calls come every GRACE / 2 for three graces.
        deadline = time.monotonic() + 3 * GRACE
        while time.monotonic() < deadline:
            await anyio.sleep(GRACE / 2)
            assert (await raw.call_tool("get_session", session_id=session_id))["status"] == "RUNNING"
        assert session_dirs(state_dir) == [session_id]
    # Then it stops calling with nothing open: that is gone.
    assert await eventually(lambda: gone(state_dir, session_id), timeout=GRACE + MARGIN), session_dirs(state_dir)


async def test_a_client_that_never_held_a_stream_is_not_judged_gone(server: HttpServer, state_dir: Path) -> None:
    """No stream ever opened: thinking and leaving look the same, so only the idle timeout applies."""
    async with raw_legacy_session(server.url, server.headers) as raw:
        session_id = (await raw.call_tool("create_session", image_id="code_latest"))["session_id"]
        await anyio.sleep(GRACE + 1.5)
        assert (await raw.call_tool("get_session", session_id=session_id))["status"] == "RUNNING"
        assert session_dirs(state_dir) == [session_id]


# 4. With authentication: the replayed cancel and DELETE carry the client's own identity ----------


async def test_with_authentication_a_gone_client_is_still_cancelled_and_released(state_dir: Path) -> None:
    """The SDK refuses a request for an MCP session from anyone but its creator (404): the
    cancellation and the DELETE must act as that same principal, or they would do nothing."""
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from agentbay_mcp.testing.http_team import start_team

    team = start_team(state_dir, "--http-disconnect-grace", str(GRACE))
    marker = f"m{secrets.token_hex(4)}"
    seen: list[str] = []

    async def remember(response: httpx2.Response) -> None:
        if "mcp-session-id" in response.headers and not seen:
            seen.append(response.headers["mcp-session-id"])

    try:
        hooks = {"response": [remember]}
        async with httpx2.AsyncClient(headers=team.headers("alice"), timeout=30, event_hooks=hooks) as http:
            transport = streamable_http_client(team.server.url, http_client=http, terminate_on_close=False)
            async with Client(transport, mode="legacy", cache=None) as client:
                session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]
                body = {
                    "jsonrpc": "2.0",
                    "id": 77,
                    "method": "tools/call",
                    "params": {
                        "name": "execute_command",
                        "arguments": {"session_id": session_id, "command": sleeper(marker)},
                    },
                }
                headers = {
                    "Accept": "application/json, text/event-stream",
                    "Content-Type": "application/json",
                    "Mcp-Session-Id": seen[0],
                    "mcp-protocol-version": LEGACY_VERSION,
                }
                async with http.stream("POST", team.server.url, content=json.dumps(body), headers=headers) as response:
                    assert response.status_code == 200
                    assert await eventually(lambda: running(marker), timeout=15), "the long command never started"
                assert await eventually(lambda: stopped(marker), timeout=1.5), "the abandoned command is still running"
                assert session_dirs(state_dir) == [session_id]
        # The client left without DELETE (its GET stream closed): released after the grace.
        assert await eventually(lambda: gone(state_dir, session_id), timeout=GRACE + MARGIN), session_dirs(state_dir)
    finally:
        team.server.stop()
