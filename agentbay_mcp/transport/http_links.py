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

import httpx2
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from agentbay_mcp.services.network.service import NetworkService

LINKS_PATH = "/links/{token}/{rest:path}"
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
#: Not forwarded either way (RFC 9110 hop-by-hop), nor this server's own credentials.
_HOP = {
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection", "te",
    "trailer", "transfer-encoding", "upgrade", "host", "authorization",
}  # fmt: skip
TIMEOUT = httpx2.Timeout(10.0, read=300.0)


def links_endpoint(network: Callable[[], NetworkService | None]) -> Callable[[Request], object]:
    """The route's handler; `network` gives the live network service (None between lifespans)."""

    async def forward(request: Request) -> Response:
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
        client = httpx2.AsyncClient(timeout=TIMEOUT)
        try:
            upstream = await client.send(
                client.build_request(request.method, url, headers=headers, content=_body(request)), stream=True
            )
        except (httpx2.HTTPError, httpx2.InvalidURL) as exc:
            await client.aclose()
            return PlainTextResponse(
                f"Nothing answers on port {link.port} of {link.session_id} ({type(exc).__name__}).\n", status_code=502
            )

        async def close() -> None:
            with contextlib.suppress(Exception):
                await upstream.aclose()
            await client.aclose()

        kept = {k: v for k, v in upstream.headers.multi_items() if k.lower() not in _HOP}
        return StreamingResponse(
            upstream.aiter_raw(), status_code=upstream.status_code, headers=kept, background=BackgroundTask(close)
        )

    return forward


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk
