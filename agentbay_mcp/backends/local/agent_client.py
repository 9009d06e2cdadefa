"""The host side of the agent protocol: framed JSON over a socketpair, many calls in flight.

The agent runs inside the sandbox, where a command could kill or replace it, so everything it sends
is untrusted: frame sizes are bounded, replies must be JSON objects answering a call we made, and
every call has a timeout. If the agent goes away every pending and future call fails with
`SandboxDiedError`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import struct
from typing import Any

import anyio
from anyio.abc import SocketStream

from agentbay_mcp.errors import BackendError

logger = logging.getLogger(__name__)

HEADER = struct.Struct(">I")
MAX_REPLY_BYTES = 32 * 1024 * 1024
MAX_REQUEST_BYTES = 16 * 1024 * 1024


class SandboxDiedError(BackendError):
    """The session's sandbox (its agent) is gone: killed, crashed or replaced."""


class AgentCallError(BackendError):
    """The agent answered a call with an error; `kind` says which (not_found, bad_request, ...)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class _Pending:
    def __init__(self) -> None:
        self.done = anyio.Event()
        self.reply: dict[str, Any] | None = None


class AgentClient:
    """Calls into one session's agent. Run `serve()` in a task; it returns when the agent is gone."""

    def __init__(self, stream: SocketStream, label: str) -> None:
        self._stream = stream
        self._label = label
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._send_lock = anyio.Lock()
        self._dead_reason: str | None = None
        self._served = anyio.Event()
        self.ready = anyio.Event()

    @property
    def alive(self) -> bool:
        """False once the agent's side of the socket closed or sent garbage."""
        return self._dead_reason is None

    async def call(self, op: str, *, timeout: float = 10.0, **arguments: Any) -> dict[str, Any]:
        """Send one request and wait for its reply (raises `SandboxDiedError`, `AgentCallError`)."""
        if self._dead_reason is not None:
            raise SandboxDiedError(self._dead_reason)
        request_id = next(self._ids)
        payload = json.dumps({"id": request_id, "op": op, **arguments}, separators=(",", ":")).encode()
        if len(payload) > MAX_REQUEST_BYTES:
            raise BackendError(f"request too large for the sandbox ({len(payload)} bytes)")
        pending = self._pending[request_id] = _Pending()
        sent = False
        try:
            with anyio.fail_after(timeout):
                async with self._send_lock:
                    await self._stream.send(HEADER.pack(len(payload)) + payload)
                sent = True
                await pending.done.wait()
        except TimeoutError as exc:
            await self._cancel(request_id)
            raise BackendError(f"the session sandbox did not answer {op!r} within {timeout:.0f} s") from exc
        except anyio.get_cancelled_exc_class():
            if sent and pending.reply is None:
                await self._cancel(request_id)  # e.g. the MCP client cancelled: stop the command too
            raise
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            self._die(f"lost the connection to the session sandbox ({exc.__class__.__name__})")
            raise SandboxDiedError(self._dead_reason or "sandbox gone") from exc
        finally:
            self._pending.pop(request_id, None)
        reply = pending.reply
        if reply is None:
            raise SandboxDiedError(self._dead_reason or "the session sandbox went away")
        if reply.get("ok") is True and isinstance(reply.get("result"), dict):
            return dict(reply["result"])
        error = reply.get("error")
        if isinstance(error, dict):
            raise AgentCallError(str(error.get("kind", "error"))[:40], str(error.get("message", ""))[:2000])
        raise BackendError("the session sandbox sent a malformed reply")

    async def _cancel(self, request_id: int) -> None:
        """Tell the agent we gave up on `request_id` (it kills a command being run). Best effort."""
        if self._dead_reason is not None:
            return
        payload = json.dumps({"id": next(self._ids), "op": "cancel", "target": request_id}).encode()
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            try:
                async with self._send_lock:
                    await self._stream.send(HEADER.pack(len(payload)) + payload)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass

    async def serve(self) -> None:
        """Read replies until the agent is gone; then fail everything pending."""
        buffer = bytearray()
        try:
            while True:
                try:
                    chunk = await self._stream.receive(1 << 20)
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    self._die("the session sandbox exited")
                    return
                buffer += chunk
                while len(buffer) >= HEADER.size:
                    (length,) = HEADER.unpack_from(buffer)
                    if length > MAX_REPLY_BYTES:
                        self._die(f"the session sandbox sent an oversized message ({length} bytes)")
                        return
                    if len(buffer) < HEADER.size + length:
                        break
                    frame = bytes(buffer[HEADER.size : HEADER.size + length])
                    del buffer[: HEADER.size + length]
                    if not self._deliver(frame):
                        return
        finally:
            if self._dead_reason is None:
                self._die("the connection to the session sandbox closed")
            self._served.set()
            await self._stream.aclose()

    def _deliver(self, frame: bytes) -> bool:
        try:
            reply = json.loads(frame)
        except ValueError:
            self._die("the session sandbox sent a message that is not JSON")
            return False
        if not isinstance(reply, dict) or not isinstance(reply.get("id"), int):
            self._die("the session sandbox sent a malformed message")
            return False
        if reply["id"] == 0:  # the agent's hello
            self.ready.set()
            return True
        pending = self._pending.get(reply["id"])
        if pending is not None:  # replies to calls that timed out are dropped
            pending.reply = reply
            pending.done.set()
        return True

    def _die(self, reason: str) -> None:
        if self._dead_reason is None:
            self._dead_reason = (
                f"The session's sandbox is gone ({reason}). Its files are kept; delete_session and "
                "create a new session, or retry: the sandbox is restarted on the next call."
            )
            level = logging.DEBUG if reason == "closed by the server" else logging.INFO
            logger.log(level, "%s: %s", self._label, reason)
        self.ready.set()
        for pending in self._pending.values():
            pending.done.set()

    def closing(self) -> None:
        """The server is about to take the sandbox down: from now on its exit is expected (and not logged)."""
        self._die("closed by the server")

    async def aclose(self) -> None:
        """Shut down our side: the agent sees EOF and takes the whole sandbox down with it.

        Only the sending half is shut here; `serve()` closes the stream when the agent's side closes
        (closing it under a pending receive races the event loop).
        """
        self._die("closed by the server")
        with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            await self._stream.send_eof()
        with anyio.move_on_after(2):
            await self._served.wait()
        await self._stream.aclose()
