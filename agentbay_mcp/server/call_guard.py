"""Every tool call and resource read passes here first: scopes are enforced, then the call is audited and counted.

It is an SDK `ServerMiddleware` (the SDK's hook around every inbound message), so no tool module
needs to know about scopes, the audit log or metrics, and tools added later (the `desktop`
toolset) are covered the moment they are registered.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_REQUEST, CallToolResult, TextContent

from agentbay_mcp.auth.scopes import UNCLASSIFIED, ToolKind, allows, needed_for
from agentbay_mcp.errors import AccessDeniedError
from agentbay_mcp.observability.audit import AuditLog, safe_arguments
from agentbay_mcp.observability.metrics import Metrics
from agentbay_mcp.server import error_text, resources
from agentbay_mcp.server.conversation import Caller, resolve_caller
from agentbay_mcp.tools.common import AppState

logger = logging.getLogger(__name__)

#: Resources show the caller's sessions: reading them needs what `get_session` needs.
RESOURCE_KIND = ToolKind("sessions", read_only=True)


def denial(caller: Caller, tool: str, kind: ToolKind) -> str:
    """The message a model gets for a tool its principal's scopes do not allow."""
    what = "read-only" if kind.read_only else "changing"
    held = ", ".join(caller.scopes or ()) or "none"
    alternatives = f"'read', {kind.toolset!r} or 'all'" if kind.read_only else "'all'"
    return (
        f"Access denied: principal {caller.principal!r} may not call {tool} (a {what} tool of the "
        f"{kind.toolset!r} toolset). Its scopes: {held}. Calling it needs scope {needed_for(kind)!r} "
        f"(or {alternatives}): ask the operator for a token with it, or use another tool."
    )


def _is_error(result: HandlerResult) -> bool:
    # The SDK's chain hands middleware the wire form (a camelCase dict); a model only if one short-circuits.
    if isinstance(result, CallToolResult):
        return result.is_error
    return isinstance(result, dict) and result.get("isError") is True


def _session_of(arguments: dict[str, Any], result: HandlerResult) -> str | None:
    """The session a call was about: its argument, or the one create_session made."""
    session = arguments.get("session_id")
    if session is None and isinstance(result, dict):
        structured = result.get("structuredContent")
        session = structured.get("session_id") if isinstance(structured, dict) else None
    return session[:128] if isinstance(session, str) else None


class CallGuard:
    """The middleware: scopes, audit log and metrics for tools/call; scopes for resources/read."""

    def __init__(self, audit: AuditLog, metrics: Metrics) -> None:
        self.audit = audit
        self.metrics = metrics

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        """Guard one inbound message (anything but a tool call or resource read passes straight through)."""
        state = ctx.lifespan_context
        if ctx.method not in ("tools/call", "resources/read", "resources/list") or not isinstance(state, AppState):
            return await call_next(ctx)
        if ctx.method == "tools/call":
            return await self._call_tool(ctx, call_next, state)
        return await self._resources(ctx, call_next, state)

    async def _resources(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext, state: AppState
    ) -> HandlerResult:
        try:
            caller = resolve_caller(ctx, state.service.release_conversation)
            state.service.enter(caller.conversation, caller.principal)
        except AccessDeniedError as exc:
            raise MCPError(code=INVALID_REQUEST, message=str(exc)) from None
        allowed = allows(caller.scopes, RESOURCE_KIND)
        if ctx.method == "resources/read" and not allowed:
            raise MCPError(code=INVALID_REQUEST, message=denial(caller, "resources/read", RESOURCE_KIND))
        with resources.serving(caller, state):
            result = await call_next(ctx)
        if ctx.method == "resources/list" and allowed:
            result = resources.with_live_sessions(result, state.service.owned_sessions(caller.conversation))
        return result

    async def _call_tool(
        self, ctx: ServerRequestContext[Any, Any], call_next: CallNext, state: AppState
    ) -> HandlerResult:
        params = ctx.params or {}
        name, arguments = params.get("name"), params.get("arguments")
        arguments = arguments if isinstance(arguments, dict) else {}
        found = state.tool_kinds.get(name) if isinstance(name, str) else None
        known = found is not None
        kind = found or ToolKind(UNCLASSIFIED, read_only=False)
        started = time.perf_counter()
        outcome, caller, result = "failed", None, None
        try:
            caller = resolve_caller(ctx, state.service.release_conversation)
            state.service.enter(caller.conversation, caller.principal)
            if not allows(caller.scopes, kind):
                outcome = "denied"
                return CallToolResult(
                    content=[TextContent(type="text", text=denial(caller, str(name), kind))], is_error=True
                )
            result = await call_next(ctx)
            outcome = "error" if _is_error(result) else "ok"
            return error_text.compacted(str(name), result) if outcome == "error" else result
        except AccessDeniedError as exc:
            outcome = "denied"
            return CallToolResult(content=[TextContent(type="text", text=str(exc))], is_error=True)
        finally:
            seconds = time.perf_counter() - started
            # Unknown tool names come from the client: never let them mint new metric series.
            self.metrics.observe_call(str(name) if known else "unknown", outcome, seconds)
            if self.audit.enabled:  # no record is built when there is no audit log (the default)
                self.audit.write(
                    principal=caller.principal if caller else None,
                    conversation=caller.conversation if caller else None,
                    tool=str(name)[:128],
                    session=_session_of(arguments, result),
                    outcome=outcome,
                    duration_ms=round(seconds * 1000, 3),
                    arguments=safe_arguments(arguments),
                )
