"""Notice when a handshake-era (2025-11-25) HTTP client goes away, and end what it left behind.

Streamable HTTP has no "disconnected" event: the client holds HTTP requests open (its GET stream,
the POSTs of calls in flight) and may simply stop. Clients that just close (the TypeScript SDK's
`client.close()`, the MCP Inspector CLI) never send DELETE. Without this module their calls run
on unseen and their MCP sessions live until the SDK's idle timeout (`--http-idle-timeout`, 30 min).
The rules (docs/conversations.md, "When an HTTP client goes away"):

* **A call's connection closes before its result was sent**: the call is cancelled at once, as
  if the client had sent `notifications/cancelled`. The spec lets a client resume a dropped stream
  from an event store; this server keeps none, so such a result could never be delivered.
* **A watched MCP session with nothing open for the grace** (`--http-disconnect-grace`, 60 s) is
  ended exactly as a DELETE ends it, and its sandboxes are released. A session is *watched* once
  its client has held the GET stream (every SDK client opens it after initialize and keeps it
  open) or dropped a call. A client that never opens one cannot be told apart from one that is
  thinking between calls, so only the idle timeout ends its MCP session.

Everything goes through the SDK's public surfaces: this is an ASGI wrapper around the app, and
the cancellation and the DELETE are requests handed to `StreamableHTTPSessionManager.handle_request`
(after authentication, carrying the original request's authenticated user), so the SDK's own
ownership check, transport and session bookkeeping do the work exactly as for a client's request.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import anyio
from anyio.abc import TaskGroup
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

_SESSION_HEADER = b"mcp-session-id"
#: The SDK refuses bodies over 4 MiB (413); a larger one is never a call worth cancelling.
_MAX_RECORDED_BODY = 4 * 1024 * 1024
_DROPPED_HEADERS = frozenset({b"content-length", b"content-type", b"last-event-id", b"transfer-encoding"})


@dataclass
class _Presence:
    """What is known of one MCP session's client."""

    open_requests: int = 0
    watched: bool = False
    #: The latest finished request (authenticated: the SDK's auth middleware set its `user`).
    scope: Scope | None = None
    timer: anyio.CancelScope | None = None


@dataclass
class _Exchange:
    """One request/response passing through: its body, whether it was answered, whether the client left."""

    receive_inner: Receive
    send_inner: Send
    body: bytearray = field(default_factory=bytearray)
    body_complete: bool = False
    status: int | None = None
    answered: bool = False
    disconnected: bool = False

    async def receive(self) -> Message:
        message = await self.receive_inner()
        if message["type"] == "http.request":
            if len(self.body) <= _MAX_RECORDED_BODY:
                self.body += message.get("body", b"")
            self.body_complete = not message.get("more_body", False)
        elif message["type"] == "http.disconnect":
            self.disconnected = True
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
        elif message["type"] == "http.response.body" and not message.get("more_body", False):
            self.answered = True
        await self.send_inner(message)

    @property
    def abandoned(self) -> bool:
        """The client closed the connection before the whole response was sent."""
        return self.disconnected and not self.answered

    def request_id(self) -> str | int | None:
        """The JSON-RPC id of the request this POST carried (None for notifications and anything else)."""
        if not self.body_complete or len(self.body) > _MAX_RECORDED_BODY:
            return None
        try:
            message = json.loads(self.body)
        except ValueError:
            return None
        if not isinstance(message, dict) or not isinstance(message.get("method"), str):
            return None
        request_id = message.get("id")
        return request_id if isinstance(request_id, str | int) and not isinstance(request_id, bool) else None


def _session_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _SESSION_HEADER:
            return bytes(value).decode("latin-1")
    return None


class ClientPresence:
    """ASGI wrapper around the whole app (see the module docstring); `path` is the MCP endpoint."""

    def __init__(self, app: ASGIApp, manager: StreamableHTTPSessionManager, *, path: str, grace_seconds: float) -> None:
        self.app = app
        self.manager = manager
        self.path = path
        self.grace_seconds = grace_seconds
        self._sessions: dict[str, _Presence] = {}
        self._tasks: TaskGroup | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Watch requests to the MCP endpoint that carry an Mcp-Session-Id; pass everything else on."""
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        session_id = _session_id(scope) if scope["type"] == "http" and scope["path"] == self.path else None
        if session_id is None:  # not MCP, an initialize, or the sessionless era (its SDK path cancels itself)
            await self.app(scope, receive, send)
            return
        presence = self._sessions.setdefault(session_id, _Presence())
        presence.open_requests += 1
        if presence.timer is not None:
            presence.timer.cancel()
            presence.timer = None
        exchange = _Exchange(receive, send)
        try:
            await self.app(scope, exchange.receive, exchange.send)
        finally:
            presence.open_requests -= 1
        await self._after(session_id, presence, scope, exchange)

    async def _after(self, session_id: str, presence: _Presence, scope: Scope, exchange: _Exchange) -> None:
        method = scope["method"]
        if exchange.status == 404 or (method == "DELETE" and exchange.status is not None and exchange.status < 300):
            self._sessions.pop(session_id, None)  # the MCP session is over (or never was): nothing to watch
            return
        presence.scope = scope
        if method == "GET" and exchange.status == 200:
            presence.watched = True  # the client held the GET stream: its closing is now a signal
        elif method == "POST" and exchange.abandoned:
            presence.watched = True
            request_id = exchange.request_id()
            if request_id is not None:
                await self._cancel(session_id, scope, request_id)
        if presence.open_requests:
            return
        if not presence.watched:
            self._sessions.pop(session_id, None)  # nothing to remember until it opens a stream
        elif self._tasks is not None:
            presence.timer = anyio.CancelScope()
            self._tasks.start_soon(self._end_if_still_gone, session_id, presence, presence.timer)

    async def _cancel(self, session_id: str, scope: Scope, request_id: str | int) -> None:
        """Cancel an abandoned call the way the client would have: `notifications/cancelled`."""
        reason = "the client's HTTP connection closed before the result was sent"
        note = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request_id, "reason": reason},
        }
        status = await self._replay(scope, "POST", json.dumps(note).encode())
        logger.info("MCP session %s: call %r cancelled: %s (status %s)", session_id[:16], request_id, reason, status)

    async def _end_if_still_gone(self, session_id: str, presence: _Presence, timer: anyio.CancelScope) -> None:
        with timer:
            await anyio.sleep(self.grace_seconds)
        if timer.cancel_called or presence.open_requests or self._sessions.get(session_id) is not presence:
            return
        self._sessions.pop(session_id, None)
        if presence.scope is None:
            return
        status = await self._replay(presence.scope, "DELETE", b"")
        logger.info(
            "MCP session %s: client gone (nothing open for %g s): ended as a DELETE would (status %s)",
            session_id[:16],
            self.grace_seconds,
            status,
        )

    async def _replay(self, scope: Scope, method: str, body: bytes) -> int | None:
        """Hand the SDK a request like `scope` (same session, same authenticated user) with `method` and `body`."""
        headers: list[tuple[bytes, bytes]] = [(k, v) for k, v in scope["headers"] if k not in _DROPPED_HEADERS]
        headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        request: dict[str, Any] = {**scope, "method": method, "headers": headers}
        delivered = False
        status: int | None = None

        async def receive() -> Message:
            nonlocal delivered
            if delivered:
                return {"type": "http.disconnect"}
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])

        try:
            with anyio.fail_after(10):
                await self.manager.handle_request(request, receive, send)
        except Exception:  # the server is shutting down, or the session ended meanwhile: nothing left to do
            logger.debug("replayed %s for an MCP session failed", method, exc_info=True)
        return status

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Own the task group the grace timers run in for the app's whole life."""
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            try:
                await self.app(scope, receive, send)
            finally:
                self._tasks = None
                tasks.cancel_scope.cancel()
