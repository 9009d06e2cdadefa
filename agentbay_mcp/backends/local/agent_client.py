"""The host side of the agent protocol: framed JSON over a socketpair, many calls in flight.

The agent runs inside the sandbox, where a command could kill or replace it, so everything it sends
is hostile until checked, and every check happens before the work it guards:

- size: each call carries a reply budget derived from the server's own limits (read and output
  caps, screen size; see `budget` helpers and the callers). A frame header announcing more than any
  pending call of the session may receive is a violation before a byte of it is buffered;
- nesting: a cheap bracket count (strings stripped) before `json.loads`, which also runs with
  RecursionError/MemoryError caught; large frames are decoded in a worker thread, off the loop;
- raw bytes: a frame with BLOB_FLAG carries bytes after its JSON (a file's content, see
  agent/framing.py); only the JSON part is parsed and nesting-checked, the bytes are copied once
  into the result (under `BLOB`), and the whole frame is held to the same budget first;
- addressing: a reply must answer a call we made (pending, or one we gave up on recently); an
  unsolicited id is a violation; the envelope (`ok`, `result`/`error`) must have its shape.

A violation ends this session's sandbox only (`_die`): every pending call fails with an error
naming the call, and the backend starts a fresh sandbox on the next call. If the agent goes away
every pending and future call fails with `SandboxDiedError`.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import logging
import re
import struct
from typing import Any

import anyio
from anyio.abc import SocketStream

from agentbay_mcp.backends.local.agent.framing import BLOB, BLOB_FLAG
from agentbay_mcp.errors import AgentCallError, BackendError, SandboxDiedError

logger = logging.getLogger(__name__)

HEADER = struct.Struct(">I")
#: Ceiling of any reply budget: no call may receive more, whatever its derived budget says.
MAX_REPLY_BYTES = 32 * 1024 * 1024
MAX_REQUEST_BYTES = 16 * 1024 * 1024
#: Budget of a reply of fixed shape (process info with a 128 KiB command escaped, a window, a file's
#: metadata, an error): the default for every call that names no budget of its own.
SMALL_REPLY_BYTES = 1024 * 1024
#: JSON text the agent may spend on one character of a string it got from the session (ensure_ascii:
#: an astral character is two \uXXXX escapes), and on one byte of UTF-8 or of a control character.
ESCAPED_PER_CHAR = 12
ESCAPED_PER_BYTE = 6
#: Peeling passes of the nesting check; each pass removes one to two levels of `[]` and `{}`, so a
#: frame nested up to this deep always passes and one over twice as deep never does (json.loads
#: itself recurses about 1000 levels deep). Real replies nest about 6 deep.
MAX_NESTING_PASSES = 32
#: Frames larger than this are decoded in a worker thread so the event loop keeps serving others.
OFF_LOOP_BYTES = 256 * 1024
#: Calls we gave up on (timeout, cancel) and cancel requests whose late replies are still expected.
MAX_LATE_IDS = 1024

_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def base64_bytes(raw: int) -> int:
    """Length of `raw` bytes in base64."""
    return (raw + 2) // 3 * 4


def capped(budget: int) -> int:
    """A derived budget, never under the small-reply floor nor over the ceiling."""
    return max(SMALL_REPLY_BYTES, min(budget, MAX_REPLY_BYTES))


class FrameError(ValueError):
    """A frame from the agent broke the protocol; the message says how (for the caller's error)."""


def nesting_ok(frame: bytes, max_passes: int = MAX_NESTING_PASSES) -> bool:
    """Whether `frame` nests `[]`/`{}` shallowly enough for `json.loads`, checked without recursion.

    Strings are removed first (brackets inside them do not nest), then innermost pairs are peeled a
    bounded number of times. Most frames skip all of it: too few brackets to nest deep at all.
    """
    if frame.count(b"[") + frame.count(b"{") <= max_passes:
        return True
    brackets = _STRING.sub(b"", frame).translate(None, _NOT_BRACKETS)
    for _ in range(max_passes):
        if not brackets:
            return True
        peeled = brackets.replace(b"[]", b"").replace(b"{}", b"")
        if len(peeled) == len(brackets):
            return False  # unbalanced: not JSON either
        brackets = peeled
    return not brackets


def decode_frame(frame: bytes) -> dict[str, Any]:
    """One frame as a JSON object, or FrameError; bounded in depth before any recursion happens."""
    if not nesting_ok(frame):
        raise FrameError("nested too deeply")
    try:
        message = json.loads(frame)
    except RecursionError as exc:
        raise FrameError("nested too deeply") from exc
    except MemoryError as exc:
        raise FrameError("too large to decode") from exc
    except ValueError as exc:  # UnicodeDecodeError and over-long integers included
        raise FrameError("not JSON") from exc
    if not isinstance(message, dict):
        raise FrameError("not a JSON object")
    return message


def split_frame(buffer: bytearray, length: int, *, blob: bool) -> tuple[bytes, bytes | None]:
    """The frame at the start of `buffer` (its header says `length`): its JSON and, for a frame with
    raw bytes, those bytes; each copied once out of the buffer. FrameError if the JSON length lies."""
    with memoryview(buffer) as view, view[HEADER.size : HEADER.size + length] as body:
        if not blob:
            return bytes(body), None
        if length < HEADER.size:
            raise FrameError("a frame with raw bytes but no JSON length")
        (json_length,) = HEADER.unpack_from(body)
        if json_length > length - HEADER.size:
            raise FrameError(f"a frame whose JSON ({json_length:,} bytes) is longer than the frame ({length:,})")
        end = HEADER.size + json_length
        return bytes(body[HEADER.size : end]), bytes(body[end:])


class _Pending:
    def __init__(self, op: str, budget: int) -> None:
        self.op = op
        self.budget = budget
        self.done = anyio.Event()
        self.reply: dict[str, Any] | None = None


class AgentClient:
    """Calls into one session's agent. Run `serve()` in a task; it returns when the agent is gone."""

    def __init__(self, stream: SocketStream, label: str) -> None:
        self._stream = stream
        self._label = label
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        # Ids whose replies may still come but that nobody waits for: id -> (op, budget).
        self._late: collections.OrderedDict[int, tuple[str, int]] = collections.OrderedDict()
        self._send_lock = anyio.Lock()
        self._dead_reason: str | None = None
        self._served = anyio.Event()
        #: Whether it was stopped for breaking the protocol (the backend slows down its restarts).
        self.violated = False
        self.ready = anyio.Event()
        #: The largest reply frame seen per operation (bench/bench_hostile_frames.py prints them).
        self.largest_replies: dict[str, int] = {}

    @property
    def alive(self) -> bool:
        """False once the agent's side of the socket closed or sent garbage."""
        return self._dead_reason is None

    async def call(
        self, op: str, *, timeout: float = 10.0, reply_budget: int = SMALL_REPLY_BYTES, **arguments: Any
    ) -> dict[str, Any]:
        """Send one request and wait for its reply (raises `SandboxDiedError`, `AgentCallError`).

        `reply_budget` is the most this call may receive, in bytes of frame: derive it from what the
        server asks for (caps, screen size), never from anything the sandbox says.
        """
        if self._dead_reason is not None:
            raise SandboxDiedError(self._dead_reason)
        request_id = next(self._ids)
        payload = json.dumps({"id": request_id, "op": op, **arguments}, separators=(",", ":")).encode()
        if len(payload) > MAX_REQUEST_BYTES:
            raise BackendError(f"request too large for the sandbox ({len(payload)} bytes)")
        pending = self._pending[request_id] = _Pending(op, capped(reply_budget))
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
        if reply["ok"]:
            return dict(reply["result"])
        error = reply["error"]
        raise AgentCallError(error["kind"][:40], error["message"][:2000])

    def violation(self, op: str, detail: str) -> SandboxDiedError:
        """The sandbox broke the protocol answering `op`: end it; returns the error for the caller."""
        self._die(f"it sent an invalid reply to {op} ({detail})", violation=True)
        return SandboxDiedError(self._dead_reason or detail)

    async def _cancel(self, request_id: int) -> None:
        """Tell the agent we gave up on `request_id` (it kills a command being run). Best effort."""
        if self._dead_reason is not None:
            return
        given_up = self._pending.get(request_id)
        if given_up is not None:  # its reply may still be on the way: that is no violation
            self._expect_late(request_id, given_up.op, given_up.budget)
        cancel_id = next(self._ids)
        self._expect_late(cancel_id, "cancel", SMALL_REPLY_BYTES)
        payload = json.dumps({"id": cancel_id, "op": "cancel", "target": request_id}).encode()
        with anyio.CancelScope(shield=True), anyio.move_on_after(1):
            try:
                async with self._send_lock:
                    await self._stream.send(HEADER.pack(len(payload)) + payload)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass

    def _expect_late(self, request_id: int, op: str, budget: int) -> None:
        self._late[request_id] = (op, budget)
        while len(self._late) > MAX_LATE_IDS:
            self._late.popitem(last=False)

    def _frame_budget(self) -> int:
        """The largest frame the agent may send now: what its largest expected reply may take."""
        budgets = [p.budget for p in self._pending.values()]
        budgets += [budget for _, budget in self._late.values()]
        if not self.ready.is_set():
            budgets.append(SMALL_REPLY_BYTES)  # the hello
        return max(budgets, default=0)

    def _expected_op(self) -> str:
        ops = sorted({p.op for p in self._pending.values()})
        return " or ".join(ops) if ops else "nothing (no call was waiting)"

    async def serve(self) -> None:
        """Read replies until the agent is gone or breaks the protocol; then fail everything pending."""
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
                    (word,) = HEADER.unpack_from(buffer)
                    length = word & ~BLOB_FLAG
                    budget = self._frame_budget()
                    if length > budget:  # before buffering it: a header costs the sandbox nothing
                        detail = (
                            f"a message of {length:,} bytes while it owed replies of at most {budget:,}"
                            if budget
                            else f"an unsolicited message of {length:,} bytes"
                        )
                        self._die(f"it sent an oversized message to {self._expected_op()} ({detail})", violation=True)
                        return
                    if len(buffer) < HEADER.size + length:
                        break
                    try:
                        frame, blob = split_frame(buffer, length, blob=bool(word & BLOB_FLAG))
                        del buffer[: HEADER.size + length]
                        if len(frame) > OFF_LOOP_BYTES:
                            message = await anyio.to_thread.run_sync(decode_frame, frame)
                        else:
                            message = decode_frame(frame)
                    except FrameError as exc:
                        self._die(f"it sent a message to {self._expected_op()} that is {exc}", violation=True)
                        return
                    if not self._deliver(message, length, blob):
                        return
        finally:
            if self._dead_reason is None:
                self._die("the connection to the session sandbox closed")
            self._served.set()
            await self._stream.aclose()

    def _deliver(self, reply: dict[str, Any], length: int, blob: bytes | None = None) -> bool:
        """Hand a decoded frame (and its raw bytes, if any) to the call it answers; False (and the
        sandbox ends) if it answers none."""
        request_id = reply.get("id")
        if type(request_id) is not int:
            self._die(f"it sent a malformed message to {self._expected_op()} (no request id)", violation=True)
            return False
        if request_id == 0 and not self.ready.is_set():  # the agent's hello
            self.ready.set()
            return True
        pending = self._pending.get(request_id)
        if pending is not None and pending.done.is_set():
            pending = None  # a second reply to one call
        late = self._late.pop(request_id, None)
        op = pending.op if pending is not None else late[0] if late is not None else None
        if op is None:
            self._die(f"it sent an unsolicited message (id {request_id}, which no call is waiting for)", violation=True)
            return False
        budget = pending.budget if pending is not None else late[1] if late is not None else 0
        problem = _envelope_problem(reply)
        if blob is not None and problem is None:
            if reply["ok"] is not True:
                problem = "malformed reply: raw bytes on an error"
            else:
                reply["result"][BLOB] = blob
        if length > budget:
            problem = f"{length:,} bytes, over the {budget:,} this call may receive"
        if problem is not None:
            self._die(f"it sent an invalid reply to {op} ({problem})", violation=True)
            return False
        self.largest_replies[op] = max(length, self.largest_replies.get(op, 0))
        if pending is not None:  # replies to calls that timed out or were cancelled are dropped
            pending.reply = reply
            pending.done.set()
        return True

    def _die(self, reason: str, *, violation: bool = False) -> None:
        if self._dead_reason is None:
            self.violated = violation
            if violation:
                self._dead_reason = (
                    f"The session's sandbox broke the protocol: {reason}; it was stopped and is restarted on "
                    "the next call (its files are kept). Retry the call; if it happens again, something in the "
                    "session is tampering with its agent: delete_session and create a new session."
                )
                logger.warning("%s: sandbox stopped: %s", self._label, reason)
            else:
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


def _envelope_problem(reply: dict[str, Any]) -> str | None:
    """What is wrong with a reply's envelope (`ok` plus `result` or `error`), or None."""
    ok = reply.get("ok")
    if ok is True:
        return None if isinstance(reply.get("result"), dict) else "malformed reply: its result is not an object"
    if ok is not False:
        return "malformed reply: no ok flag"
    error = reply.get("error")
    if (
        not isinstance(error, dict)
        or not isinstance(error.get("kind"), str)
        or not isinstance(error.get("message"), str)
    ):
        return "malformed reply: an error without kind and message"
    return None
