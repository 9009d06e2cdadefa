"""HTTP clients of a real server in both eras: SDK clients, a raw handshake-era session, visibility checks."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agentbay_mcp.testing.answers import unpack
from agentbay_mcp.testing.calls import call, call_error
from agentbay_mcp.testing.servers import HttpServer, session_dirs

LEGACY_VERSION = "2025-11-25"


#: Tools that take a session id and must answer "not found" for a session the caller does not own.
ID_TOOLS: dict[str, dict[str, Any]] = {
    "get_session": {},
    "get_session_labels": {},
    "set_session_labels": {"labels": {"stolen": "yes"}},
    "delete_session": {},
}


def fake_session_id() -> str:
    """A well-formed session id nobody owns."""
    return "session-" + secrets.token_hex(12)


def gone(state_dir: Path, *session_ids: str) -> bool:
    present = set(session_dirs(state_dir))
    return not any(sid in present for sid in session_ids)


async def listed_ids(client: Client) -> list[str]:
    return [s["session_id"] for s in (await call(client, "list_sessions", max_results=100))["sessions"]]


async def assert_not_visible(client: Client, session_id: str) -> None:
    """Every id-taking tool answers for `session_id` exactly as for an id that never existed."""
    assert session_id not in await listed_ids(client)
    made_up = fake_session_id()
    for tool, extra in ID_TOOLS.items():
        foreign = await call_error(client, tool, session_id=session_id, **extra)
        unknown = await call_error(client, tool, session_id=made_up, **extra)
        assert "not found" in foreign, (tool, foreign)
        assert foreign.replace(session_id, "<id>") == unknown.replace(made_up, "<id>"), tool


@asynccontextmanager
async def connected(server: HttpServer, mode: str = "auto") -> AsyncIterator[Client]:
    """An SDK client of `server` sending its token if it has one; the timeouts are the SDK's own defaults."""
    async with (
        httpx2.AsyncClient(headers=server.headers, timeout=httpx2.Timeout(30.0, read=300.0)) as http,
        Client(streamable_http_client(server.url, http_client=http), mode=mode) as client,
    ):
        yield client


def legacy(server: HttpServer) -> AbstractAsyncContextManager[Client]:
    """A handshake-era (2025-11-25) client: initialize, then every request carries its Mcp-Session-Id."""
    return connected(server, "legacy")


def sessionless(server: HttpServer) -> AbstractAsyncContextManager[Client]:
    """A default (`mode="auto"`) client: it discovers the server and speaks the sessionless era."""
    return connected(server)


def legacy_headers(mcp_session_id: str | None) -> dict[str, str]:
    """Headers of a raw handshake-era POST, on an MCP session once it has an id."""
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if mcp_session_id is not None:
        headers |= {"Mcp-Session-Id": mcp_session_id, "mcp-protocol-version": LEGACY_VERSION}
    return headers


async def post_tools_list(http: httpx2.AsyncClient, url: str, mcp_session_id: str) -> httpx2.Response:
    """A raw tools/list on an MCP session id (404 once that MCP session is over)."""
    message = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    return await http.post(url, content=json.dumps(message), headers=legacy_headers(mcp_session_id))


class RawLegacySession:
    """A handshake-era MCP session driven with plain POSTs: no GET stream, and never a DELETE."""

    def __init__(self, http: httpx2.AsyncClient, url: str) -> None:
        self._http = http
        self._url = url
        self._next_id = 0
        self.session_id: str | None = None

    async def post(self, message: dict[str, Any]) -> httpx2.Response:
        return await self._http.post(self._url, content=json.dumps(message), headers=legacy_headers(self.session_id))

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send a JSON-RPC request; returns its `result` (fails the test on an error or bad status)."""
        self._next_id += 1
        response = await self.post({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})
        assert response.status_code == 200, (response.status_code, response.text)
        if response.headers.get("content-type", "").startswith("text/event-stream"):
            messages = [
                json.loads(line.removeprefix("data:").strip())
                for line in response.text.splitlines()
                if line.startswith("data:") and line.removeprefix("data:").strip()
            ]
        else:
            messages = [response.json()]
        (reply,) = [m for m in messages if m.get("id") == self._next_id]
        assert "error" not in reply, reply
        return dict(reply["result"])

    async def initialize(self) -> None:
        result = await self.request(
            "initialize",
            {
                "protocolVersion": LEGACY_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "raw-http-test", "version": "0"},
            },
        )
        assert result["protocolVersion"] == LEGACY_VERSION
        # The session id arrives with the initialize response; the POST helper cannot see headers.
        assert self.session_id is not None
        response = await self.post({"jsonrpc": "2.0", "method": "notifications/initialized"})
        assert response.status_code == 202, (response.status_code, response.text)

    async def call_tool(self, name: str, **arguments: Any) -> dict[str, Any]:
        return unpack(name, await self.request("tools/call", {"name": name, "arguments": arguments}))


@asynccontextmanager
async def raw_legacy_session(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[RawLegacySession]:
    """Open a raw handshake-era session (every request with `headers`, e.g. the bearer token); leaving the
    block only closes the TCP connections."""

    async def remember_session_id(response: httpx2.Response) -> None:
        if session.session_id is None and "mcp-session-id" in response.headers:
            session.session_id = response.headers["mcp-session-id"]

    hooks = {"response": [remember_session_id]}
    async with httpx2.AsyncClient(timeout=10, headers=headers, event_hooks=hooks) as http:
        session = RawLegacySession(http, url)
        await session.initialize()
        yield session
