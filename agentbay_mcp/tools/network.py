"""Network tools: change a session's egress while it runs, and links to the ports it serves."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import Field

from agentbay_mcp.auth.scopes import ToolsetServer
from agentbay_mcp.tools.common import READ_ONLY, REPLACES, SessionId, tool, tool_call
from agentbay_mcp.tools.text.network import LINK, NETWORK

#: create_session's `network` too: what a session may reach.
NetworkArg = Annotated[
    bool | Literal["off", "on"] | list[str],
    Field(description="'off', 'on' (public internet), or allowed domains/CIDRs, e.g. ['pypi.org', '*.github.com']."),
]


def register(mcp: ToolsetServer[Any]) -> None:
    """Add the network tools to `mcp`."""

    @tool(mcp, REPLACES, NETWORK)
    async def set_session_network(ctx: Context, session_id: SessionId, network: NetworkArg) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.network.set_session_network(call.conversation, session_id, network)
        return NETWORK.answer(result)

    @tool(mcp, READ_ONLY, LINK)
    async def get_link(
        ctx: Context,
        session_id: SessionId,
        port: Annotated[int, Field(ge=1, le=65535)],
        protocol: Literal["http", "https", "ws", "wss", "tcp"] = "http",
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.network.get_link(call.conversation, session_id, port, protocol)
        return LINK.answer(result)
