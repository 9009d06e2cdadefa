"""accept_forever: a connection whose handler fails, or an accept that fails, never stops the serving."""

from __future__ import annotations

import errno
from functools import partial

import anyio
import pytest
from anyio.abc import SocketListener, SocketStream

from agentbay_mcp.backends.local.relay import accept_forever, relay

pytestmark = pytest.mark.anyio


async def loopback() -> tuple[SocketListener, int]:
    """A listener on 127.0.0.1 and its port."""
    listener = (await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)).listeners[0]
    assert isinstance(listener, SocketListener)
    return listener, int(listener.extra(anyio.abc.SocketAttribute.local_port))


class FlakyListener(SocketListener):
    """A real loopback listener whose first accept fails as with no file descriptors left."""

    def __init__(self, inner: SocketListener) -> None:
        self.inner = inner
        self.failed = False

    async def accept(self) -> SocketStream:
        if not self.failed:
            self.failed = True
            raise OSError(errno.EMFILE, "Too many open files")
        return await self.inner.accept()

    async def aclose(self) -> None:
        await self.inner.aclose()

    @property
    def _raw_socket(self):  # type: ignore[no-untyped-def]
        return self.inner._raw_socket


async def test_a_failing_handler_or_accept_does_not_stop_the_listener() -> None:
    inner, port = await loopback()
    served: list[bytes] = []

    async def handle(stream: SocketStream) -> None:
        data = await stream.receive()
        if data == b"boom":
            raise RuntimeError("a hostile peer's connection broke the handler")
        served.append(data)
        await stream.aclose()

    async with anyio.create_task_group() as tg:
        tg.start_soon(accept_forever, FlakyListener(inner), handle, "test")
        for payload in (b"boom", b"after"):
            with anyio.fail_after(5):
                async with await anyio.connect_tcp("127.0.0.1", port) as client:
                    await client.send(payload)
                    with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, OSError)):
                        await client.receive()
        tg.cancel_scope.cancel()
    assert served == [b"after"]


async def test_relay_passes_bytes_and_half_closes_both_ways() -> None:
    listener, port = await loopback()
    echoed: list[bytes] = []

    async def echo(stream: SocketStream) -> None:
        async with stream:
            chunks = [chunk async for chunk in stream]
            await stream.send(b"".join(chunks).upper())

    async def middle(client: SocketStream) -> None:
        await relay(client, await anyio.connect_tcp("127.0.0.1", port), first=b"first:")

    front, front_port = await loopback()
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, echo)
        tg.start_soon(front.serve, middle)
        with anyio.fail_after(5):
            async with await anyio.connect_tcp("127.0.0.1", front_port) as client:
                await client.send(b"x" * 300_000)
                await client.send_eof()
                echoed = [chunk async for chunk in client]
        tg.cancel_scope.cancel()
    assert b"".join(echoed) == b"FIRST:" + b"X" * 300_000


async def test_a_relay_with_nothing_moving_is_closed_after_its_idle_time() -> None:
    listener, port = await loopback()
    finished: list[float] = []

    async def silent(stream: SocketStream) -> None:  # a tarpit: accepts, never answers
        async with stream:
            await anyio.sleep_forever()

    async def middle(client: SocketStream) -> None:
        started = anyio.current_time()
        await relay(client, await anyio.connect_tcp("127.0.0.1", port), idle=0.3)
        finished.append(anyio.current_time() - started)

    front, front_port = await loopback()
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, silent)
        tg.start_soon(front.serve, middle)
        with anyio.fail_after(5):
            async with await anyio.connect_tcp("127.0.0.1", front_port) as client:
                await client.send(b"hello")  # moves once, then nothing either way
                with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                    await client.receive()  # closed by the relay's idle deadline, not by the peers
        tg.cancel_scope.cancel()
    assert len(finished) == 1
    assert 0.25 < finished[0] < 2.0, finished


async def test_the_server_wide_relay_budget_refuses_connections_past_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from agentbay_mcp.backends.local import relay as relay_module

    monkeypatch.setattr(relay_module, "MAX_RELAYED", relay_module._relayed[0] + 1)
    inner, port = await loopback()
    release = anyio.Event()

    async def hold(stream: SocketStream) -> None:
        async with stream:
            await stream.send(b"served")
            await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(accept_forever, inner, hold, "test", limit=1))
        with anyio.fail_after(5):
            async with await anyio.connect_tcp("127.0.0.1", port) as first:
                assert await first.receive() == b"served"
                async with await anyio.connect_tcp("127.0.0.1", port) as second:
                    with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                        await second.receive()  # over the budget: closed at once
                release.set()
        tg.cancel_scope.cancel()
