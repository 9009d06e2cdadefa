"""Context tools: named storage that outlives sessions, shared by every conversation of one principal."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult

from agentbay_mcp.auth.scopes import ToolsetServer
from agentbay_mcp.tools.common import READ_ONLY, REPLACES, SETS, SessionId, tool, tool_call
from agentbay_mcp.tools.text.contexts import CONTEXT, CONTEXTS, DELETED, INFO, SYNCED


def register(mcp: ToolsetServer[Any]) -> None:
    """Add the context tools to `mcp`."""

    @tool(mcp, SETS, CONTEXT)
    async def create_context(ctx: Context, name: str) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.contexts.create_context(call.conversation, name)
        return CONTEXT.answer(result)

    @tool(mcp, READ_ONLY, CONTEXTS)
    async def list_contexts(ctx: Context) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.contexts.list_contexts(call.conversation)
        return CONTEXTS.answer(result)

    @tool(mcp, READ_ONLY, INFO)
    async def get_context(ctx: Context, name: str) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.contexts.get_context(call.conversation, name)
        return INFO.answer(result)

    @tool(mcp, REPLACES, DELETED)
    async def delete_context(ctx: Context, name: str) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.contexts.delete_context(call.conversation, name)
        return DELETED.answer(result)

    @tool(mcp, REPLACES, SYNCED)
    async def sync_context(ctx: Context, session_id: SessionId, name: str | None = None) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.contexts.sync_context(call.conversation, session_id, name)
        return SYNCED.answer(result)
