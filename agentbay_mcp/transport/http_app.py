"""The streamable HTTP application: MCP at `/mcp` behind the SDK's auth, plus `/healthz` and `/metrics`.

Authentication, `/.well-known/oauth-protected-resource`, the Host/Origin checks and the request
body limit (413) are the SDK's own; this module only configures them and adds the two
operational endpoints, a response-status counter and the watcher that ends what a vanished
client left behind (client_presence.py).
"""

from __future__ import annotations

import logging

import anyio
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentbay_mcp.auth.config import MCP_PATH, build_auth, transport_security
from agentbay_mcp.observability.metrics import CONTENT_TYPE, Metrics
from agentbay_mcp.server.wiring import Running, build_server
from agentbay_mcp.settings import Settings
from agentbay_mcp.transport.client_presence import ClientPresence
from agentbay_mcp.transport.http_links import LINKS_PATH, METHODS, links_endpoint


class _RacedTerminationFilter(logging.Filter):
    """The SDK logs a traceback for a POST whose session was terminated while it was being handled
    (a client's DELETE, or a gone client's, racing its own last calls): one line says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], _RACED):
            record.exc_info = None
            record.msg, record.args = (
                "a request raced the termination of its MCP session (it was answered with an error)",
                (),
            )
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


_RACED = (anyio.ClosedResourceError, anyio.BrokenResourceError)
logger = logging.getLogger(__name__)
logging.getLogger("mcp.server.streamable_http").addFilter(_RacedTerminationFilter())


class AnswerRacedTermination:
    """A request that reaches the SDK as its session is being terminated (a DELETE, or a gone client's,
    racing the client's own last calls) finds the session's streams closed, and the SDK lets that
    escape: as a 500 with a traceback before its answer, or, after a 202 already went out, as an
    error no one can be told of. The first is a request for a terminated session and gets that
    answer, 404; the second is logged in one line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; answer 404 if it raced its session's end."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = completed = False

        async def watching_send(message: Message) -> None:
            nonlocal started, completed
            started = started or message["type"] == "http.response.start"
            completed = completed or (message["type"] == "http.response.body" and not message.get("more_body"))
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        except _RACED:
            if started:
                return  # an answer is out (the SDK's error middleware sends a 500 before re-raising)
            body = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"Session not found"}}'
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": 404, "headers": headers})
            await send({"type": "http.response.body", "body": body})
        except Exception as exc:
            if not completed:
                raise
            logger.info("a request failed after its response was sent: %s: %s", exc.__class__.__name__, exc)


class CountResponses:
    """ASGI wrapper counting HTTP response statuses (401s and 413s included, which never reach MCP)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, noting the status of its response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.observe_http(int(message["status"]))
            await send(message)

        await self.app(scope, receive, counting_send)


def http_app(settings: Settings, running: Running | None = None, start_token: str | None = None) -> ASGIApp:
    """The whole HTTP application for `settings` (raises AuthConfigurationError on a broken token/JWKS file);
    `running` is told the live service (for the stop signal); `start_token`, without other authentication,
    is the one bearer token accepted (start_token.py)."""
    auth = build_auth(settings, start_token)
    metrics = Metrics()
    running = running or Running()
    server = build_server(settings, auth=auth, metrics=metrics, running=running)

    async def healthz(_: Request) -> Response:
        # Public on purpose (load balancers probe it) and so it says nothing but that the server is up.
        return JSONResponse({"status": "ok"})

    async def metrics_page(request: Request) -> Response:
        # The SDK's authentication middleware runs for every route; custom routes must ask for it.
        if (
            auth is not None
            and not settings.public_metrics
            and not isinstance(request.scope.get("user"), AuthenticatedUser)
        ):
            return JSONResponse(
                {"error": "invalid_token", "error_description": "Authentication required"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE)

    # Custom routes sit inside the SDK's authentication middleware (request.user is set) but are not
    # guarded by it: /metrics checks for itself.
    server.custom_route("/healthz", methods=["GET"])(healthz)
    server.custom_route("/metrics", methods=["GET"])(metrics_page)
    # Port links under the public URL: authenticated by their own token (see http_links.py).
    live = running
    server.custom_route(LINKS_PATH, methods=METHODS)(links_endpoint(lambda: live.network))
    app = server.streamable_http_app(
        streamable_http_path=MCP_PATH,
        session_idle_timeout=settings.http_idle_timeout_seconds,
        host=settings.host,
        transport_security=transport_security(settings),
    )
    # Outside the SDK's auth middleware, which sets `scope["user"]` in place before the MCP endpoint
    # runs: the presence watcher reuses it for the cancellations and DELETEs it replays.
    watched = ClientPresence(
        app, server.session_manager, path=MCP_PATH, grace_seconds=settings.http_disconnect_grace_seconds
    )
    return CountResponses(AnswerRacedTermination(watched), metrics)
