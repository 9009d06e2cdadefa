"""Polling with a deadline: tests wait for effects (a process gone, a file written) without sleeping blind."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from functools import partial

import anyio


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


async def eventually(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    """`wait_until` off the event loop, so in-process servers and clients keep running meanwhile."""
    return bool(await anyio.to_thread.run_sync(partial(wait_until, predicate, timeout)))


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> bool:
    """Poll an async check (one that asks a session or a backend) until it holds or `timeout` seconds pass."""
    with anyio.move_on_after(timeout):
        while not await check():  # noqa: ASYNC110 - polls state outside this process
            await anyio.sleep(0.05)
        return True
    return False
