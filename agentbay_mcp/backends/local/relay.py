"""Serving connections that cross into or out of a session (port links, the proxy): accept them,
and copy bytes both ways until both sides are done.

These run in the backend's task group, which is the server's: nothing a session does to its side
of a connection may end that group, so every handler is fenced and an `accept` that fails (no
file descriptors left) waits and tries again instead of raising.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
from anyio.abc import SocketListener, SocketStream

logger = logging.getLogger(__name__)

CHUNK = 256 * 1024
#: A relayed connection with no byte either way for this long is closed (a tunnel to a tarpit holds
#: two descriptors of the server's for as long as it stays open).
IDLE_SECONDS = 600.0
#: Relayed connections at once, every session's proxy and links together: a bound on the server's
#: descriptors whatever many sessions do (each session's own bounds are lower).
MAX_RELAYED = 4096
#: Connections being relayed now (a count, not a semaphore: nothing ever waits for a slot).
_relayed = [0]


async def accept_forever(
    listener: SocketListener,
    handle: Callable[[SocketStream], Awaitable[None]],
    what: str,
    *,
    limit: int = MAX_RELAYED,
) -> None:
    """Accept on `listener` until cancelled, each connection handled in its own fenced task, while the
    server relays fewer than `limit` connections in all (past it, a new one is closed at once)."""

    async def fenced(stream: SocketStream) -> None:
        if _relayed[0] >= limit:
            logger.warning("%s: the server relays %d connections already; refused one", what, limit)
            with contextlib.suppress(Exception):
                await stream.aclose()
            return
        _relayed[0] += 1
        try:
            await handle(stream)
        except Exception:  # a session's connection must never end the server's task group
            logger.exception("%s: a connection failed", what)
            with contextlib.suppress(Exception):
                await stream.aclose()
        finally:
            _relayed[0] -= 1

    async with listener, anyio.create_task_group() as tg:
        while True:
            try:
                stream = await listener.accept()
            except OSError as exc:  # e.g. EMFILE: wait for descriptors rather than stop serving
                logger.warning("%s: accept failed (%s); retrying", what, exc)
                await anyio.sleep(0.2)
                continue
            tg.start_soon(fenced, stream)


async def relay(a: SocketStream, b: SocketStream, *, first: bytes = b"", idle: float = IDLE_SECONDS) -> None:
    """Pipe `a` <-> `b` (after sending `first` to `b`), passing on half-closes; closes both at the end,
    or when no byte has moved either way for `idle` seconds."""
    moved = [time.monotonic()]
    async with a, b:
        if first:
            await b.send(first)
        async with anyio.create_task_group() as outer:

            async def both_ways() -> None:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_pump, a, b, moved)
                    tg.start_soon(_pump, b, a, moved)
                outer.cancel_scope.cancel()  # done: the watchdog goes too

            async def watchdog() -> None:
                # Sleeps until the idle deadline, which moves with every chunk (no event to wait on).
                while (left := moved[0] + idle - time.monotonic()) > 0:  # noqa: ASYNC110
                    await anyio.sleep(left)
                outer.cancel_scope.cancel()

            outer.start_soon(both_ways)
            outer.start_soon(watchdog)


async def _pump(source: SocketStream, sink: SocketStream, moved: list[float]) -> None:
    try:
        async for chunk in _chunks(source):
            moved[0] = time.monotonic()
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
