"""Session and label tools: create, inspect, list (by label), relabel and delete sessions."""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import BaseModel, Field

from agentbay_mcp.auth.scopes import ToolsetServer
from agentbay_mcp.tools.common import CREATES, READ_ONLY, REPLACES, SessionId, tool, tool_call
from agentbay_mcp.tools.network import OptionalNetworkArg
from agentbay_mcp.tools.text.sessions import CREATED, DELETED, LABELS, LABELS_SET, SESSION, SESSIONS

#: The session tools are also how sessions are found again, so their session_id names list_sessions too.
ListedSessionId = SessionId


class ContextArg(BaseModel):
    """A context to show in the new session, and where."""

    name: str
    path: str = Field(description="Absolute, below /home/user or /tmp.")


def register(mcp: ToolsetServer[Any]) -> None:
    """Add the session tools to `mcp`."""

    @tool(mcp, CREATES, CREATED)
    async def create_session(
        ctx: Context,
        image_id: str = "linux_latest",
        labels: dict[str, str] | None = None,  # the limits are in the error that enforces them
        network: OptionalNetworkArg = None,
        contexts: list[ContextArg] | None = None,
        workspaces: list[str] | None = None,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            mounts = await call.contexts.mounts(call.conversation, [c.model_dump() for c in contexts or ()])
            result = await call.service.create_session(
                call.conversation, image_id, labels, network, contexts=mounts, workspaces=workspaces
            )
        return CREATED.answer(result)

    @tool(mcp, REPLACES, DELETED)
    async def delete_session(ctx: Context, session_id: ListedSessionId) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.service.delete_session(call.conversation, session_id)
        return DELETED.answer(result)

    @tool(mcp, READ_ONLY, SESSION)
    async def get_session(ctx: Context, session_id: ListedSessionId) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.service.get_session(call.conversation, session_id)
        return SESSION.answer(result)

    @tool(mcp, READ_ONLY, SESSIONS)
    async def list_sessions(
        ctx: Context,
        labels: dict[str, str] | None = None,
        max_results: Annotated[int, Field(ge=1, le=100)] = 10,
        next_token: str | None = None,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.service.list_sessions(call.conversation, labels, max_results, next_token)
        return SESSIONS.answer(result)

    @tool(mcp, REPLACES, LABELS_SET)
    async def set_session_labels(ctx: Context, session_id: ListedSessionId, labels: dict[str, str]) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.service.set_session_labels(call.conversation, session_id, labels)
        return LABELS_SET.answer(result)

    @tool(mcp, READ_ONLY, LABELS)
    async def get_session_labels(ctx: Context, session_id: ListedSessionId) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.service.get_session_labels(call.conversation, session_id)
        return LABELS.answer(result)
