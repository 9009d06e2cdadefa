"""Network tools: change a session's egress while it runs, and links to the ports it serves."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import BeforeValidator, Field

from agentbay_mcp.auth.scopes import ToolsetServer
from agentbay_mcp.tools.common import READ_ONLY, REPLACES, SessionId, tool, tool_call
from agentbay_mcp.tools.text.network import LINK, NETWORK


def _flag(value: object) -> object:
    """`true`/`false`, as clients sent before policies, mean 'on'/'off' (the schema shows the words only)."""
    return ("on" if value else "off") if isinstance(value, bool) else value


#: What a session may reach: 'off', 'on' or an allow-list (the tool's description says how; the service checks).
NetworkArg = Annotated[str | list[str], BeforeValidator(_flag)]
#: create_session's: None is the operator's default.
OptionalNetworkArg = Annotated[str | list[str] | None, BeforeValidator(_flag)]


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
