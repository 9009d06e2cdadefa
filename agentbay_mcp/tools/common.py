"""What every tool module shares: reaching the service, the caller's conversation, error mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

from agentbay_mcp.auth.scopes import ToolKind, ToolsetServer
from agentbay_mcp.errors import AgentBayMCPError
from agentbay_mcp.server.conversation import resolve_caller
from agentbay_mcp.services.commands.service import CommandService
from agentbay_mcp.services.contexts.service import ContextService
from agentbay_mcp.services.desktop.service import DesktopService
from agentbay_mcp.services.files.service import FileService
from agentbay_mcp.services.network.service import NetworkService
from agentbay_mcp.services.sessions.service import SessionService
from agentbay_mcp.services.workspaces.service import WorkspaceService
from agentbay_mcp.settings import Settings
from agentbay_mcp.tools.descriptions import DESCRIPTIONS
from agentbay_mcp.tools.schemas import lean
from agentbay_mcp.tools.shape import Shape


@dataclass(frozen=True)
class AppState:
    """What the server's lifespan yields: the services, the settings, and what each tool is (for scopes)."""

    service: SessionService
    commands: CommandService
    files: FileService
    desktop: DesktopService
    network: NetworkService
    contexts: ContextService
    workspaces: WorkspaceService
    settings: Settings
    tool_kinds: dict[str, ToolKind]


@dataclass(frozen=True)
class Call:
    """One tool call's view of the server: the services and the caller's conversation."""

    service: SessionService
    commands: CommandService
    files: FileService
    desktop: DesktopService
    network: NetworkService
    contexts: ContextService
    workspaces: WorkspaceService
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
        yield Call(
            state.service,
            state.commands,
            state.files,
            state.desktop,
            state.network,
            state.contexts,
            state.workspaces,
            caller.conversation,
        )
    except AgentBayMCPError as exc:
        raise ToolError(str(exc)) from exc


_Tool = TypeVar("_Tool", bound=Callable[..., Any])


def tool(mcp: ToolsetServer[Any], annotations: ToolAnnotations, shape: Shape[Any]) -> Callable[[_Tool], _Tool]:
    """Register a tool: its description from tools/descriptions.py (by the function's name), lean schemas.

    The SDK names the tool after the function and builds its input schema from the signature; that
    schema is trimmed (tools/schemas.py) and the output schema is `shape`'s, since the tool answers
    with `shape.answer(...)`. A tool without a description fails at start-up (KeyError).
    """

    def register(fn: _Tool) -> _Tool:
        mcp.add_tool(fn, annotations=annotations, description=DESCRIPTIONS[fn.__name__])
        mcp.publish_schemas(fn.__name__, lean, shape.schema)
        return fn

    return register


#: The one spelling of a session_id parameter (the session tools add list_sessions, see tools/sessions.py).
SessionId = str


def _hints(
    *, destructive: bool, idempotent: bool, read_only: bool = False, open_world: bool = False
) -> ToolAnnotations:
    """The hints, each sent only where it differs from the spec's default (readOnly false, destructive
    true, idempotent false, openWorld true): a client reads an absent hint as its default, and the
    tool list is read by the model on every conversation. The other two mean nothing for a read-only tool."""
    # Tools act inside their own session only (closed world), but for the commands, which reach the
    # internet in a session with network.
    if read_only:
        return ToolAnnotations(read_only_hint=True, open_world_hint=False)
    return ToolAnnotations(
        destructive_hint=None if destructive else False,
        idempotent_hint=True if idempotent else None,
        open_world_hint=None if open_world else False,
    )


def hint(annotations: ToolAnnotations | None, name: str) -> bool:
    """A hint's value as a client reads it: the sent value, else the spec's default."""
    defaults = {"read_only_hint": False, "destructive_hint": True, "idempotent_hint": False, "open_world_hint": True}
    value = getattr(annotations, name, None) if annotations is not None else None
    return defaults[name] if value is None else bool(value)


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
#: Commands: CHANGES and CREATES, and open-world (a session with network reaches the internet).
RUNS = _hints(destructive=True, idempotent=False, open_world=True)
STARTS = _hints(destructive=False, idempotent=False, open_world=True)
