"""Serving connections that cross into or out of a session (port links, the proxy): accept them,
and copy bytes both ways until both sides are done.

These run in the backend's task group, which is the server's: nothing a session does to its side
of a connection may end that group, so every handler is fenced and an `accept` that fails (no
file descriptors left) waits and tries again instead of raising.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from anyio.abc import SocketListener, SocketStream

logger = logging.getLogger(__name__)

CHUNK = 256 * 1024


async def accept_forever(
    listener: SocketListener, handle: Callable[[SocketStream], Awaitable[None]], what: str
) -> None:
    """Accept on `listener` until cancelled, each connection handled in its own fenced task."""

    async def fenced(stream: SocketStream) -> None:
        try:
            await handle(stream)
        except Exception:  # a session's connection must never end the server's task group
            logger.exception("%s: a connection failed", what)
            with contextlib.suppress(Exception):
                await stream.aclose()

    async with listener, anyio.create_task_group() as tg:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # e.g. EMFILE: wait for descriptors rather than stop serving
                logger.warning("%s: accept failed (%s); retrying", what, exc)
                await anyio.sleep(0.2)
                continue
            tg.start_soon(fenced, stream)


async def relay(a: SocketStream, b: SocketStream, *, first: bytes = b"") -> None:
    """Pipe `a` <-> `b` (after sending `first` to `b`), passing on half-closes; closes both at the end."""
    async with a, b:
        if first:
            await b.send(first)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_pump, a, b)
            tg.start_soon(_pump, b, a)


async def _pump(source: SocketStream, sink: SocketStream) -> None:
    try:
        async for chunk in _chunks(source):
            await sink.send(chunk)
    except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        # One side reset: nothing more can flow either way.
        with contextlib.suppress(Exception):
            await source.aclose()
        with contextlib.suppress(Exception):
            await sink.aclose()
        return
    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        await sink.send_eof()


async def _chunks(source: SocketStream) -> AsyncIterator[bytes]:
    while True:
        try:
            yield await source.receive(CHUNK)
        except anyio.EndOfStream:
            return
