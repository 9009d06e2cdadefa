"""Workspace tools: what a session changed in a host directory the operator offers, and applying it."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult

from agentbay_mcp.auth.scopes import ToolsetServer
from agentbay_mcp.tools.common import READ_ONLY, REPLACES, SessionId, tool, tool_call
from agentbay_mcp.tools.text.workspaces import APPLIED, DIFF


def register(mcp: ToolsetServer[Any]) -> None:
    """Add the workspace tools to `mcp`."""

    @tool(mcp, READ_ONLY, DIFF)
    async def workspace_diff(ctx: Context, session_id: SessionId, name: str) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.workspaces.workspace_diff(call.conversation, session_id, name)
        return DIFF.answer(result)

    @tool(mcp, REPLACES, APPLIED)
    async def workspace_apply(
        ctx: Context, session_id: SessionId, name: str, paths: list[str] | None = None, overwrite: bool = False
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.workspaces.workspace_apply(call.conversation, session_id, name, paths, overwrite)
        return APPLIED.answer(result)
