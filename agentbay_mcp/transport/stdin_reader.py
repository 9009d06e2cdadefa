"""Read MCP messages from stdin without a worker thread, so SIGTERM can stop the server at once.

The SDK's stdio transport reads stdin in a worker thread, and a thread blocked in `read()` cannot be
cancelled: a client that sends SIGTERM while keeping stdin open would wait for ever. Reading a
non-blocking pipe with `anyio.wait_readable` keeps every wait cancellable.

The SDK's transport also drops a line it cannot read without a word (it hands the serving loop an
exception, which is only logged at debug level); `AnswerUnreadable` answers it as JSON-RPC says.
"""

from __future__ import annotations

import logging
import os
import selectors
import stat
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol, Self

import anyio
from mcp.shared.message import SessionMessage
from mcp_types import INVALID_REQUEST, PARSE_ERROR, ErrorData, JSONRPCError
from pydantic import ValidationError

logger = logging.getLogger(__name__)

#: A single JSON-RPC line larger than this is refused (a client bug, or an attempt to exhaust memory).
MAX_LINE_BYTES = 64 * 1024 * 1024
_CHUNK = 256 * 1024


class StdinLines:
    """Async iterator over the lines of a pipe (or socket) file descriptor; restores blocking mode."""

    def __init__(self, fd: int = 0) -> None:
        self._fd = fd
        self._buffer = bytearray()
        self._was_blocking = os.get_blocking(fd)
        os.set_blocking(fd, False)

    @staticmethod
    def supported(fd: int = 0) -> bool:
        """True when `fd` can be waited on (pipes, sockets, terminals); not regular files or /dev/null."""
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            return False
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            return False
        # Some character devices (/dev/null) cannot be polled: epoll refuses them with EPERM.
        with selectors.DefaultSelector() as selector:
            try:
                selector.register(fd, selectors.EVENT_READ)
            except (OSError, ValueError):
                return False
        return True

    def __aiter__(self) -> StdinLines:
        return self

    async def __anext__(self) -> str:
        while True:
            newline = self._buffer.find(b"\n")
            if newline >= 0:
                line = bytes(self._buffer[: newline + 1])
                del self._buffer[: newline + 1]
                return line.decode("utf-8", errors="replace")
            if len(self._buffer) > MAX_LINE_BYTES:
                raise ValueError(f"a message on stdin exceeded {MAX_LINE_BYTES} bytes")
            await anyio.wait_readable(self._fd)
            try:
                chunk = os.read(self._fd, _CHUNK)
            except BlockingIOError:
                continue
            if not chunk:
                if self._buffer:
                    rest = bytes(self._buffer)
                    self._buffer.clear()
                    return rest.decode("utf-8", errors="replace")
                raise StopAsyncIteration
            self._buffer += chunk

    def close(self) -> None:
        """Put the descriptor back the way it was (it may be a terminal shared with a shell)."""
        os.set_blocking(self._fd, self._was_blocking)


class StdoutWriter:
    """Writes MCP messages to the original stdout without a worker thread per write.

    While it is open, fd 1 points at stderr (so a stray print can never corrupt the protocol stream,
    as the SDK's own transport guarantees) and messages go to a private duplicate of the real stdout.
    The SDK's writer hops to a worker thread for every write and flush; on a 2-core machine that is
    a measurable share of a tool call's round trip.
    """

    def __init__(self) -> None:
        self._fd = os.dup(1)
        os.dup2(2, 1)
        os.set_blocking(self._fd, False)

    async def write(self, text: str) -> int:
        data = memoryview(text.encode())
        total = len(data)
        while data:
            try:
                written = os.write(self._fd, data)
            except BlockingIOError:
                await anyio.wait_writable(self._fd)
                continue
            data = data[written:]
        return total

    async def flush(self) -> None:
        """Writes are unbuffered: nothing to flush."""

    def close(self) -> None:
        """Put the real stdout back on fd 1."""
        os.set_blocking(self._fd, True)
        os.dup2(self._fd, 1)
        os.close(self._fd)


class _Receiving(Protocol):
    async def receive(self) -> SessionMessage | Exception: ...
    async def aclose(self) -> None: ...


class _Sending(Protocol):
    async def send(self, item: SessionMessage, /) -> None: ...


def unreadable_answer(error: Exception) -> JSONRPCError:
    """The JSON-RPC error for a stdin line the SDK could not read (its id is unknown, so null).

    The line itself is never echoed: it may be huge, or carry a secret.
    """
    problems = error.errors(include_input=False) if isinstance(error, ValidationError) else []
    if any(problem["type"] == "json_invalid" for problem in problems):
        data = ErrorData(
            code=PARSE_ERROR,
            message="Parse error: a line on stdin was not valid JSON. Send each JSON-RPC message as "
            "one line of UTF-8 JSON (no newline inside it).",
        )
    else:
        data = ErrorData(
            code=INVALID_REQUEST,
            message="Invalid Request: a line on stdin was JSON but not a JSON-RPC 2.0 request, "
            'notification or response (it needs jsonrpc "2.0" and a method or an id).',
        )
    return JSONRPCError(jsonrpc="2.0", id=None, error=data)


class AnswerUnreadable:
    """The SDK's stdio read stream, minus the lines it could not read: those are answered on `write`.

    Only the failure path does any work, so a message is still parsed once. The answer goes
    through the SDK's own write stream, in order with every other message.
    """

    def __init__(self, read: _Receiving, write: _Sending, on_end: Callable[[], Awaitable[None]] | None = None) -> None:
        self._read = read
        self._write = write
        # Stdin's end is the conversation's end: release its sessions while the transport is still
        # up, so calls in flight end at once (their sandboxes are gone) instead of being cancelled
        # one by one as the SDK tears down (3 s for 100 busy sessions, past the clients' 2 s).
        self._on_end = on_end

    @property
    def last_context(self) -> Any:
        """The sender's context of the last message (the SDK reads it to keep contextvars flowing)."""
        return getattr(self._read, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        while True:
            try:
                item = await self._read.receive()
            except anyio.EndOfStream:
                if self._on_end is not None:
                    on_end, self._on_end = self._on_end, None
                    await on_end()
                raise
            if not isinstance(item, Exception):
                return item
            answer = unreadable_answer(item)
            kinds = sorted({p["type"] for p in item.errors()}) if isinstance(item, ValidationError) else []
            logger.debug("stdin: answered %d to a line that is not a JSON-RPC message (%s)", answer.error.code, kinds)
            await self._write.send(SessionMessage(answer))

    async def aclose(self) -> None:
        await self._read.aclose()

    def __aiter__(self) -> AnswerUnreadable:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except anyio.EndOfStream:
            raise StopAsyncIteration from None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        await self.aclose()
        return None
