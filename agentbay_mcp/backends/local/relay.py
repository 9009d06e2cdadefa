"""Copy bytes both ways between two connections until both sides are done (port links, the proxy)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
from anyio.abc import SocketStream

CHUNK = 256 * 1024


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
