"""MCP resources: `agentbay://sessions` (the caller's sessions) and `agentbay://sessions/{session_id}`.

Clients that browse resources see what is live: `resources/list` names the caller's sessions one
by one too (the call guard adds them). A resource shows exactly what `list_sessions` and
`get_session` would show the same caller, no more.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from mcp.server.context import HandlerResult
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ResourceError
from mcp_types import Resource

from agentbay_mcp.errors import AgentBayMCPError
from agentbay_mcp.server.conversation import Caller
from agentbay_mcp.services.sessions.models import SessionInfo
from agentbay_mcp.tools.common import AppState

SESSIONS_URI = "agentbay://sessions"
MIME = "application/json"

_current: ContextVar[tuple[Caller, AppState] | None] = ContextVar("agentbay_mcp.resource_caller", default=None)


@contextmanager
def serving(caller: Caller, state: AppState) -> Iterator[None]:
    """Let resource functions run for `caller` (the SDK passes static resources no request context)."""
    reset = _current.set((caller, state))
    try:
        yield
    finally:
        _current.reset(reset)


def _caller() -> tuple[Caller, AppState]:
    current = _current.get()
    if current is None:
        raise ResourceError("The server is not ready yet (no caller for this read); retry in a moment.")
    return current


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, default=str)


def with_live_sessions(result: HandlerResult, sessions: list[SessionInfo]) -> HandlerResult:
    """A `resources/list` result (the wire dict the SDK's chain returns) plus one entry per live session."""
    if not isinstance(result, dict) or not isinstance(result.get("resources"), list):
        return result
    extra = [
        Resource(
            uri=f"{SESSIONS_URI}/{info.session_id}",
            name=info.session_id,
            title=f"{info.image_id} session" + (f" {info.labels}" if info.labels else ""),
            description="A live sandbox session of yours: details and labels.",
            mime_type=MIME,
        ).model_dump(mode="json", by_alias=True, exclude_none=True)
        for info in sessions
    ]
    return {**result, "resources": [*result["resources"], *extra]}


def register(mcp: MCPServer[Any]) -> None:
    """Add the session resources to `mcp`."""

    @mcp.resource(
        SESSIONS_URI,
        name="sessions",
        title="Your sessions",
        description="Your live sandbox sessions (JSON): id, image, status, labels, creation and idle expiry.",
        mime_type=MIME,
    )
    async def sessions() -> str:
        caller, state = _caller()
        infos = state.service.owned_sessions(caller.conversation)
        return _json({"sessions": [info.model_dump(mode="json") for info in infos], "total_count": len(infos)})

    @mcp.resource(
        SESSIONS_URI + "/{session_id}",
        name="session",
        title="One of your sessions",
        description="One live session's details and labels (JSON).",
        mime_type=MIME,
    )
    async def session(session_id: str) -> str:
        caller, state = _caller()
        try:
            info = await state.service.get_session(caller.conversation, session_id)
        except AgentBayMCPError as exc:
            raise ResourceError(str(exc)) from exc
        return _json(info.model_dump(mode="json"))
