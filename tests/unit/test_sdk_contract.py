"""Fails loudly if the mcp SDK changes what agentbay-mcp relies on (see conversation.connection_of)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from mcp import Client
from mcp.server.connection import Connection
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.session import ServerSession

from agentbay_mcp.server.conversation import connection_of
from agentbay_mcp.testing.calls import ERAS

pytestmark = pytest.mark.anyio


def test_server_session_still_keeps_its_connection_privately() -> None:
    source = inspect.getsource(ServerSession.__init__)
    assert "self._connection = connection" in source, (
        "mcp changed ServerSession: agentbay_mcp/conversation.py:connection_of must be updated"
    )


def test_mcpserver_still_exposes_its_lowlevel_server_for_custom_stdio() -> None:
    from mcp.server.lowlevel import Server

    server: MCPServer[Any] = MCPServer("probe")
    lowlevel = server._lowlevel_server
    assert isinstance(lowlevel, Server), "mcp changed MCPServer: agentbay_mcp/serve.py:serve_stdio must be updated"
    assert callable(lowlevel.run)
    assert callable(lowlevel.create_initialization_options)


def test_connection_still_has_state_and_exit_stack() -> None:
    connection = Connection.for_loop(outbound=None, session_id="x")  # type: ignore[arg-type]
    assert isinstance(connection.state, dict)
    assert hasattr(connection.exit_stack, "push_async_callback")


@pytest.mark.parametrize("era", ERAS)
async def test_connection_of_reaches_a_connection_from_a_tool(era: str) -> None:
    seen: list[Connection] = []
    probe: MCPServer[Any] = MCPServer("probe")

    @probe.tool()
    async def whoami(ctx: Context) -> str:
        connection = connection_of(ctx.request_context)
        seen.append(connection)
        return connection.protocol_version

    async with Client(probe, mode=era) as client:
        await client.call_tool("whoami", {})
        await client.call_tool("whoami", {})
    assert len(seen) == 2
    assert all(isinstance(c, Connection) for c in seen)
    # A handshake connection lives for the whole conversation; a 2026-07-28 one is built per request.
    assert (seen[0] is seen[1]) == (era == "legacy")
