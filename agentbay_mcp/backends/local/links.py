"""Port links: a loopback port on the host that reaches a port the session serves.

`get_link(session, 8000)` opens a listener on the host's 127.0.0.1 (a free port) and, for every
connection to it, connects to 127.0.0.1:8000 (or [::1]:8000) inside the session's own namespace,
where the dev server listens, then copies bytes both ways. The session needs no outbound network for
this. The link is the session's: it closes, with its connections, when the session ends, and the
next connection after a sandbox restart goes to the new sandbox. Bounded: links per session and
connections per link.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

import anyio
from anyio.abc import SocketListener, SocketStream, TaskGroup

from agentbay_mcp.backends.local import netns
from agentbay_mcp.backends.local.relay import accept_forever, relay
from agentbay_mcp.errors import QuotaExceededError

logger = logging.getLogger(__name__)

MAX_LINKS_PER_SESSION = 16
MAX_CONNECTIONS_PER_LINK = 64


@dataclass
class Link:
    """One open link."""

    port: int
    host_port: int
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)


class SessionLinks:
    """The links of one session."""

    def __init__(self, session_id: str, namespace: Callable[[], int | None]) -> None:
        self.session_id = session_id
        #: The session's current namespace descriptor (None: unconfined, the host's own).
        self._namespace = namespace
        self._links: dict[int, Link] = {}

    async def open(self, port: int, task_group: TaskGroup) -> Link:
        """The link to `port`, opened once and then reused."""
        if (link := self._links.get(port)) is not None:
            return link
        if len(self._links) >= MAX_LINKS_PER_SESSION:
            raise QuotaExceededError(
                f"Session {self.session_id} already has {MAX_LINKS_PER_SESSION} port links (the limit); "
                "reuse one of them."
            )
        listeners = (await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)).listeners
        listener = cast(SocketListener, listeners[0])  # one host, one listener
        host_port = int(listener.extra(anyio.abc.SocketAttribute.local_port))  # noqa: S610 - anyio, not Django
        link = self._links[port] = Link(port, host_port)
        task_group.start_soon(self._serve, link, listener)
        return link

    def close(self) -> None:
        """Close every link and its connections."""
        for link in self._links.values():
            link.scope.cancel()
        self._links.clear()

    async def _serve(self, link: Link, listener: SocketListener) -> None:
        slots = anyio.Semaphore(MAX_CONNECTIONS_PER_LINK)
        with link.scope:
            await accept_forever(
                listener, lambda client: self._forward(client, link.port, slots), f"session {self.session_id}: link"
            )

    async def _forward(self, client: SocketStream, port: int, slots: anyio.Semaphore) -> None:
        if slots.value == 0:
            await client.aclose()
            return
        async with slots:
            try:
                namespace = self._namespace()
                try:
                    sock = await netns.connect_in(namespace, port)
                finally:
                    if namespace is not None:
                        os.close(namespace)
            except Exception as exc:  # nothing listens there (yet): the client sees a close
                logger.debug("session %s: link to port %d: %s", self.session_id, port, exc)
                with contextlib.suppress(Exception):
                    await client.aclose()
                return
            await relay(client, await SocketStream.from_socket(sock))
