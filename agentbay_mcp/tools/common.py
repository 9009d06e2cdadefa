"""What every tool module shares: reaching the service, the caller's conversation, error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from pydantic import Field

from agentbay_mcp.auth.scopes import ToolKind
from agentbay_mcp.errors import AgentBayMCPError
from agentbay_mcp.server.conversation import resolve_caller
from agentbay_mcp.services.commands.service import CommandService
from agentbay_mcp.services.desktop.service import DesktopService
from agentbay_mcp.services.files.service import FileService
from agentbay_mcp.services.sessions.service import SessionService
from agentbay_mcp.settings import Settings
from agentbay_mcp.tools.descriptions import DESCRIPTIONS


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


_Tool = TypeVar("_Tool", bound=Callable[..., Any])


def tool(mcp: MCPServer[Any], annotations: ToolAnnotations) -> Callable[[_Tool], _Tool]:
    """`mcp.tool` with the description from tools/descriptions.py, found by the function's name.

    The SDK names the tool after the function and builds its schema from the signature, so only the
    description and the hints are passed; a tool without a description fails at start-up (KeyError).
    """

    def register(fn: _Tool) -> _Tool:
        return mcp.tool(annotations=annotations, description=DESCRIPTIONS[fn.__name__])(fn)

    return register


#: The one spelling of a session_id parameter (the session tools add list_sessions, see tools/sessions.py).
SessionId = Annotated[str, Field(description="The session_id returned by create_session.")]


def _hints(*, destructive: bool, idempotent: bool, read_only: bool = False) -> ToolAnnotations:
    # Every tool acts inside its own session only: never open-world.
    return ToolAnnotations(
        read_only_hint=read_only, destructive_hint=destructive, idempotent_hint=idempotent, open_world_hint=False
    )


# The five kinds of tool, by what calling one again does (the hints clients show and act on).
#: Only looks: lists, gets, reads, waits.
READ_ONLY = _hints(read_only=True, destructive=False, idempotent=True)
#: Makes something new on each call: a session, a process, an application.
CREATES = _hints(destructive=False, idempotent=False)
#: Brings something to a state, destroying nothing; again is harmless: a directory, the focus mode.
SETS = _hints(destructive=False, idempotent=True)
#: Deletes, overwrites or stops; again changes nothing more: delete_session, write_file, kill_process.
REPLACES = _hints(destructive=True, idempotent=True)
#: Changes the session, and again changes it again: a command, an edit, a move, input on the desktop.
CHANGES = _hints(destructive=True, idempotent=False)
