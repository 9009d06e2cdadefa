"""`/links/<token>/...`: a port link published under the server's public URL, forwarded to the session.

The token was minted by get_link for the session's owner (services/network/public_links.py); each
request is checked against it (unknown or ended session: 404) and forwarded, streaming both ways,
to the session's loopback link on this host. Hop-by-hop headers and the caller's Authorization (this
server's bearer token, if a client sent one) are not passed on. HTTP only: a WebSocket upgrade is
not forwarded.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import anyio
import httpx2
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from agentbay_mcp.services.network.service import NetworkService

LINKS_PATH = "/links/{token}/{rest:path}"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
#: Not forwarded either way (RFC 9110 hop-by-hop), nor credentials of this server's origin: a page a
#: session serves runs on the server's own origin, so it gets none of its cookies and sets none.
_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "authorization", "cookie", "set-cookie",
}  # fmt: skip
#: ...and it runs sandboxed (an opaque origin: no access to the server's storage, /mcp is cross-origin).
SANDBOX_CSP = "sandbox allow-scripts allow-forms allow-popups allow-modals allow-downloads"
TIMEOUT = httpx2.Timeout(10.0, read=300.0)
#: Requests forwarded at once, all links together (each holds about four descriptors).
MAX_FORWARDED = 256


def links_endpoint(network: Callable[[], NetworkService | None]) -> Callable[[Request], object]:
    """The route's handler; `network` gives the live network service (None between lifespans)."""

    # One client for the app, made on first use (making one costs an SSL context, ~20 ms on the event
    # loop): the targets are plain HTTP on loopback, so no TLS and no proxy settings from the environment.
    shared: list[httpx2.AsyncClient] = []
    slots = anyio.Semaphore(MAX_FORWARDED)

    async def forward(request: Request) -> Response:
        if slots.value == 0:
            return PlainTextResponse("Too many link requests at once; retry.\n", status_code=503)
        service = network()
        link = service.public.resolve(request.path_params["token"]) if service and service.public else None
        if link is None:
            return PlainTextResponse("Unknown or expired link: ask get_link for a new one.\n", status_code=404)
        # The path as the client sent it, still percent-encoded (a decoded one could carry a '?', '#' or
        # a line break into the forwarded URL); only the part after /links/<token>/.
        raw = request.scope.get("raw_path") or request.url.path.encode()
        rest = raw.decode("latin-1").split("/", 3)[3] if raw.count(b"/") >= 3 else ""
        url = f"{link.target}/{rest}"
        if request.url.query:
            url += f"?{request.url.query}"
        headers = [(k, v) for k, v in request.headers.items() if k.lower() not in _HOP]
        if not shared:
            shared.append(httpx2.AsyncClient(timeout=TIMEOUT, verify=False, trust_env=False))
        client = shared[0]
        await slots.acquire()
        try:
            upstream = await client.send(
                client.build_request(request.method, url, headers=headers, content=_body(request)), stream=True
            )
        except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
            slots.release()
            return PlainTextResponse(
                f"Nothing answers on port {link.port} of {link.session_id} ({type(exc).__name__}).\n", status_code=502
            )

        async def close() -> None:
            try:
                with contextlib.suppress(Exception):
                    await upstream.aclose()
            finally:
                slots.release()

        kept = [(k, v) for k, v in upstream.headers.multi_items() if k.lower() not in _HOP]
        kept.append(("content-security-policy", SANDBOX_CSP))
        response = StreamingResponse(
            upstream.aiter_raw(), status_code=upstream.status_code, background=BackgroundTask(close)
        )
        response.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in kept]
        return response

    return forward


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk
