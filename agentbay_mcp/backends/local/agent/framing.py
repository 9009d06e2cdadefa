"""The agent's side of the wire: frames of a 4-byte big-endian length and a UTF-8 JSON object.

Standard library only (see sandbox_agent.py). Requests are `{"id": n, "op": name, ...}`; replies
`{"id": n, "ok": true, "result": {...}}` or `{"id": n, "ok": false, "error": {"kind": k,
"message": m}}` with `k` from error_names.py. The host's side is agent_client.py, which treats
everything it receives as untrusted.
"""

from __future__ import annotations

import json
import select
import socket
import struct

HEADER = struct.Struct(">I")
MAX_FRAME = 16 * 1024 * 1024


class FrameTooLargeError(Exception):
    """A request announced more than MAX_FRAME bytes: the host is not speaking this protocol."""


class Inbox:
    """Bytes from the control socket, cut into whole frames."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def frames(self, data: bytes) -> list[bytes]:
        """Add `data`; return every frame now complete (a partial one stays for the next read)."""
        self.buffer += data
        complete: list[bytes] = []
        while len(self.buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(self.buffer)
            if length > MAX_FRAME:
                raise FrameTooLargeError(length)
            if len(self.buffer) < HEADER.size + length:
                break
            complete.append(bytes(self.buffer[HEADER.size : HEADER.size + length]))
            del self.buffer[: HEADER.size + length]
        return complete


def send(sock: socket.socket, message: dict[str, object]) -> bool:
    """Write one frame to the (non-blocking) socket; False if the host is gone."""
    payload = json.dumps(message, separators=(",", ":")).encode()
    data = memoryview(HEADER.pack(len(payload)) + payload)
    while data:
        try:
            sent = sock.send(data)
            data = data[sent:]
        except BlockingIOError:
            select.select([], [sock], [], 5.0)
        except OSError:
            return False
    return True


def result(request_id: int, value: dict[str, object]) -> dict[str, object]:
    """A successful reply."""
    return {"id": request_id, "ok": True, "result": value}


def error(request_id: int, kind: str, message: str) -> dict[str, object]:
    """An error reply; `kind` is a name from error_names.py."""
    return {"id": request_id, "ok": False, "error": {"kind": kind, "message": message}}
