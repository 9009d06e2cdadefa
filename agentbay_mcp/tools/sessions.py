"""Session and label tools: create, inspect, list (by label), relabel and delete sessions."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from agentbay_mcp.services.sessions.models import DeletedSession, SessionInfo, SessionLabels, SessionList
from agentbay_mcp.tools.common import CREATES, READ_ONLY, REPLACES, SessionId, tool, tool_call

#: The session tools are also how sessions are found again, so their session_id names list_sessions too.
ListedSessionId = Annotated[SessionId, Field(description="The session_id returned by create_session or list_sessions.")]
Labels = Annotated[
    dict[str, str],
    Field(
        description='Label map, e.g. {"project": "demo", "purpose": "build"}. Keys and values are '
        "non-empty strings (keys up to 128 characters, values up to 256, at most 32 labels)."
    ),
]


def register(mcp: MCPServer[Any]) -> None:
    """Add the session tools to `mcp`."""

    @tool(mcp, CREATES)
    async def create_session(
        ctx: Context,
        image_id: Annotated[str, Field(description="Image to start: 'linux_latest' or 'code_latest'.")] = (
            "linux_latest"
        ),
        labels: Labels | None = None,
        network: Annotated[
            bool,
            Field(description="Let commands reach the network. Refused unless the operator allows network."),
        ] = False,
    ) -> SessionInfo:
        async with tool_call(ctx) as call:
            return await call.service.create_session(call.conversation, image_id, labels, network)

    @tool(mcp, REPLACES)
    async def delete_session(ctx: Context, session_id: ListedSessionId) -> DeletedSession:
        async with tool_call(ctx) as call:
            return await call.service.delete_session(call.conversation, session_id)

    @tool(mcp, READ_ONLY)
    async def get_session(ctx: Context, session_id: ListedSessionId) -> SessionInfo:
        async with tool_call(ctx) as call:
            return await call.service.get_session(call.conversation, session_id)

    @tool(mcp, READ_ONLY)
    async def list_sessions(
        ctx: Context,
        labels: Annotated[
            dict[str, str] | None,
            Field(description="Only sessions having every one of these key/value pairs. Omit to list all."),
        ] = None,
        max_results: Annotated[int, Field(ge=1, le=100, description="Page size, 1 to 100.")] = 10,
        next_token: Annotated[
            str | None,
            Field(description="The next_token of the previous page, unchanged. Omit for page one."),
        ] = None,
    ) -> SessionList:
        async with tool_call(ctx) as call:
            return await call.service.list_sessions(call.conversation, labels, max_results, next_token)

    @tool(mcp, REPLACES)
    async def set_session_labels(ctx: Context, session_id: ListedSessionId, labels: Labels) -> SessionLabels:
        async with tool_call(ctx) as call:
            return await call.service.set_session_labels(call.conversation, session_id, labels)

    @tool(mcp, READ_ONLY)
    async def get_session_labels(ctx: Context, session_id: ListedSessionId) -> SessionLabels:
        async with tool_call(ctx) as call:
            return await call.service.get_session_labels(call.conversation, session_id)
