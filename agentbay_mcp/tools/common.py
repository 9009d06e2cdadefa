"""What every tool module shares: reaching the service, the caller's conversation, error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from agentbay_mcp.auth.scopes import ToolKind
from agentbay_mcp.errors import AgentBayMCPError
from agentbay_mcp.server.conversation import resolve_caller
from agentbay_mcp.services.commands.service import CommandService
from agentbay_mcp.services.desktop.service import DesktopService
from agentbay_mcp.services.files.service import FileService
from agentbay_mcp.services.sessions.service import SessionService
from agentbay_mcp.settings import Settings


@dataclass(frozen=True)
class AppState:
    """What the server's lifespan yields: the services, the settings, and what each tool is (for scopes)."""

    service: SessionService
    commands: CommandService
    files: FileService
    desktop: DesktopService
    settings: Settings
    tool_kinds: dict[str, ToolKind]


@dataclass(frozen=True)
class Call:
    """One tool call's view of the server: the services and the caller's conversation."""

    service: SessionService
    commands: CommandService
    files: FileService
    desktop: DesktopService
    conversation: str


@asynccontextmanager
async def tool_call(ctx: Context[Any, Any]) -> AsyncIterator[Call]:
    """Resolve the caller and turn agentbay-mcp errors into `ToolError`s (the one place that does)."""
    state = ctx.request_context.lifespan_context
    if not isinstance(state, AppState):
        raise ToolError("The server is not ready yet (no lifespan state); retry in a moment.")
    try:
        caller = resolve_caller(ctx.request_context, state.service.release_conversation)
        state.service.enter(caller.conversation, caller.principal)
        yield Call(state.service, state.commands, state.files, state.desktop, caller.conversation)
    except AgentBayMCPError as exc:
        raise ToolError(str(exc)) from exc


READ_ONLY = ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False)
CREATES = ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False)
DESTROYS = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
REPLACES = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=False)
