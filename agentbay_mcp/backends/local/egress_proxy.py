"""The session's HTTP(S) proxy: the way out that can check names, not only addresses.

It listens on 127.0.0.1:3128 inside the session's own network namespace (the socket is made there by
the server, see netns.py) and every sandbox has `http_proxy`/`https_proxy` pointing at it, so pip,
npm, git, curl and the rest use it without being told. Each request is checked against the
session's current `Egress` (it may change while the session runs): the name first (a domain
allow-list is enforced here), then every address the host's resolver gives for it (so a name that
resolves to loopback, the metadata address or a private range is refused whatever the list says),
and the connection goes to an address that was checked, never to a second lookup. `CONNECT host:port`
(HTTPS and anything else tunnelled) and absolute-form `GET http://...` are served; the answer to a
refusal is an HTTP error whose body says why, which is what a model reads in curl's or pip's output.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import anyio
from anyio.abc import SocketListener, SocketStream

from agentbay_mcp.backends.common.egress import Address, Egress, plain_address
from agentbay_mcp.backends.local.relay import accept_forever, relay

logger = logging.getLogger(__name__)

PROXY_PORT = 3128
MAX_HEAD_BYTES = 16 * 1024
MAX_CONNECTIONS = 64
HEAD_TIMEOUT = 10.0
CONNECT_TIMEOUT = 10.0
RESOLVE_TIMEOUT = 5.0

PROXY_URL = f"http://127.0.0.1:{PROXY_PORT}"
#: What every bwrap sandbox's commands get: the proxy, but never for the session's own loopback.
PROXY_ENV = {
    "http_proxy": PROXY_URL,
    "https_proxy": PROXY_URL,
    "HTTP_PROXY": PROXY_URL,
    "HTTPS_PROXY": PROXY_URL,
    "no_proxy": "localhost,127.0.0.1,::1",
    "NO_PROXY": "localhost,127.0.0.1,::1",
}

Resolver = Callable[[str], Awaitable[list[Address]]]


#: Lookups in flight for all sessions together: the system resolver blocks a thread each, and the
#: server's other work (file I/O, every conversation's) must keep its threads.
RESOLVER_THREADS = 8
_resolver_threads: anyio.CapacityLimiter | None = None


async def resolve_on_host(host: str) -> list[Address]:
    """The host resolver's addresses for `host` (TCP, any family), on at most RESOLVER_THREADS threads."""
    global _resolver_threads  # noqa: PLW0603 - made on first use, inside the event loop
    if _resolver_threads is None:
        _resolver_threads = anyio.CapacityLimiter(RESOLVER_THREADS)
    # Abandoned on timeout: a lookup that never answers must not hold a shared thread slot (the thread
    # ends with the resolver's own timeout; each session has at most 2 lookups at once).
    found = await anyio.to_thread.run_sync(
        lambda: socket.getaddrinfo(host, None, type=socket.SOCK_STREAM),
        limiter=_resolver_threads,
        abandon_on_cancel=True,
    )
    out: list[Address] = []
    for _family, _type, _proto, _name, sockaddr in found:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in out:
            out.append(address)
    return out


class RefusedError(Exception):
    """A request the proxy answers with an error status instead of serving."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


class EgressProxy:
    """Serves one session's proxy listener until cancelled."""

    def __init__(self, session_id: str, policy: Callable[[], Egress], resolver: Resolver = resolve_on_host) -> None:
        self.session_id = session_id
        self._policy = policy
        self._resolve = resolver
        self._slots = anyio.Semaphore(MAX_CONNECTIONS)
        #: Lookups of this session at once: one session cannot take every resolver thread.
        self._lookups = anyio.Semaphore(2)

    async def serve(self, listener: SocketListener) -> None:
        """Accept connections until cancelled (each handled in its own task)."""
        await accept_forever(listener, self._handle, f"session {self.session_id}: egress proxy")

    async def _handle(self, client: SocketStream) -> None:
        if self._slots.value == 0:  # a session opening connections without end gets errors, not our fds
            with contextlib.suppress(Exception):
                await _answer(client, RefusedError("503 Service Unavailable", f"more than {MAX_CONNECTIONS} at once"))
            return
        async with self._slots:
            try:
                with anyio.fail_after(HEAD_TIMEOUT):
                    head, rest = await _read_head(client)
                method, host, port, forward = _parse(head)
                upstream = await self._open(host, port)
            except RefusedError as refusal:
                logger.debug("session %s: proxy refused: %s", self.session_id, refusal.reason)
                with contextlib.suppress(Exception):
                    await _answer(client, refusal)
                return
            except (TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                await client.aclose()
                return
            if method == "CONNECT":
                try:
                    await client.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
                except (anyio.BrokenResourceError, OSError):
                    await upstream.aclose()
                    await client.aclose()
                    return
                await relay(client, upstream, first=rest)
            else:
                await relay(client, upstream, first=forward + rest)

    async def _open(self, host: str, port: int) -> SocketStream:
        """Check `host` against the policy and connect to one of its checked addresses."""
        policy = self._policy()
        if policy.mode == "off":
            raise RefusedError(
                "403 Forbidden",
                "this session has no network access; ask for it with set_session_network (or create the "
                "session with network)",
            )
        addresses = await self._checked(policy, host)
        last: Exception | None = None
        for address in addresses:
            try:
                with anyio.fail_after(CONNECT_TIMEOUT):
                    return await anyio.connect_tcp(str(plain_address(address)), port)
            except (OSError, TimeoutError) as exc:
                last = exc
        raise RefusedError("502 Bad Gateway", f"could not connect to {host}:{port} ({last})")

    async def _checked(self, policy: Egress, host: str) -> list[Address]:
        denied = f"{host} is not allowed by this session's network policy ({policy.describe()})"
        try:
            literal: Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            if not policy.allows_address(literal):
                raise RefusedError("403 Forbidden", denied)
            return [literal]
        named = policy.allows_name(host)
        if policy.denied.names(host) or not (named or policy.session.networks):
            # Refused by name alone: not even looked up (no DNS query leaves for it).
            raise RefusedError("403 Forbidden", denied)
        try:
            with anyio.fail_after(RESOLVE_TIMEOUT):
                async with self._lookups:
                    addresses = await self._resolve(host)
        except (OSError, TimeoutError) as exc:
            raise RefusedError("502 Bad Gateway", f"could not resolve {host} ({exc})") from exc
        except ValueError as exc:  # UnicodeError too: a label too long or empty
            raise RefusedError("400 Bad Request", f"bad host name {host[:80]!r}") from exc
        if not addresses:
            raise RefusedError("502 Bad Gateway", f"{host} has no address")
        for address in addresses:
            # Every address must be fine: the name may not lead anywhere its list could not name.
            if not (policy.reachable(address) if named else policy.allows_address(address)):
                raise RefusedError("403 Forbidden", f"{denied}: it resolves to {address}")
        return addresses


async def _read_head(client: SocketStream) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEAD_BYTES:
            raise RefusedError("431 Request Header Fields Too Large", f"request head over {MAX_HEAD_BYTES} bytes")
        data += await client.receive(MAX_HEAD_BYTES)
    head, _, rest = data.partition(b"\r\n\r\n")
    if len(head) > MAX_HEAD_BYTES:
        raise RefusedError("431 Request Header Fields Too Large", f"request head over {MAX_HEAD_BYTES} bytes")
    return head, rest


def _parse(head: bytes) -> tuple[str, str, int, bytes]:
    """Method, host, port, and (for plain HTTP) the request head to send upstream."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise RefusedError("400 Bad Request", "not an HTTP/1.x proxy request")
    method, target, version = parts
    if method == "CONNECT":
        host, _, port_text = target.rpartition(":")
        return method, _host(host), _port(port_text), b""
    try:
        url = urlsplit(target)
        hostname = url.hostname
    except ValueError as exc:
        raise RefusedError("400 Bad Request", "bad URL") from exc
    if url.scheme != "http" or not hostname:
        raise RefusedError(
            "400 Bad Request",
            "send an absolute http:// URL or CONNECT host:port (this is the session's egress proxy)",
        )
    try:
        port = url.port or 80
    except ValueError as exc:
        raise RefusedError("400 Bad Request", "bad port") from exc
    path = url.path or "/"
    if url.query:
        path += "?" + url.query
    dropped = ("proxy-authorization", "proxy-connection", "connection", "host")
    kept = [line for line in lines[1:] if line.split(":", 1)[0].strip().lower() not in dropped]
    # Host is the URL's, always: the name that was checked is the name the server is asked for.
    host_line = f"Host: {url.netloc.rpartition('@')[2].lower()}"
    request = "\r\n".join([f"{method} {path} {version}", host_line, *kept, "Connection: close"]) + "\r\n\r\n"
    return method, _host(hostname), port, request.encode("latin-1")


def _host(host: str) -> str:
    host = host.strip("[]").rstrip(".").lower()
    if not host or len(host) > 253 or "%" in host:  # no IPv6 zone: checks compare addresses without one
        raise RefusedError("400 Bad Request", "bad host")
    return host


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise RefusedError("400 Bad Request", f"bad port {text[:10]!r}")
    return int(text)


async def _answer(client: SocketStream, refusal: RefusedError) -> None:
    body = f"agentbay-mcp egress proxy: {refusal.reason}\n".encode()
    head = (
        f"HTTP/1.1 {refusal.status}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    async with client:
        await client.send(head.encode() + body)
