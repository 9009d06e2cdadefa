"""The agent's side of the wire: frames of a 4-byte big-endian length and a UTF-8 JSON object.

Standard library only (see sandbox_agent.py). Requests are `{"id": n, "op": name, ...}`; replies
`{"id": n, "ok": true, "result": {...}}` or `{"id": n, "ok": false, "error": {"kind": k,
"message": m}}` with `k` from error_names.py. The host's side is agent_client.py, which treats
everything it receives as untrusted.

A reply may carry raw bytes beside its JSON (a file's content: no base64, no JSON escaping, no
second copy on either side): a result's `BLOB` value (bytes) leaves the JSON and follows it. Such a
frame sets BLOB_FLAG in its length word; its payload is a 4-byte JSON length, the JSON, the bytes.
The host puts the bytes back under `BLOB` in the result. Requests never carry one.
"""

from __future__ import annotations

import json
import select
import socket
import struct

HEADER = struct.Struct(">I")
MAX_FRAME = 16 * 1024 * 1024
#: The top bit of a reply's length word: the frame carries raw bytes after its JSON.
BLOB_FLAG = 0x8000_0000
#: The result key whose bytes travel raw after the JSON (and come back under it on the host).
BLOB = "blob"
#: The columns of a `file_list` reply's rows (a list each, not an object: a third of the bytes and no
#: repeated keys); the host derives the type, permissions and mode from st_mode.
LIST_COLUMNS = ("name", "st_mode", "size", "modified", "changed", "accessed", "target")


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
            with memoryview(self.buffer) as view:  # one copy of the frame, not two
                complete.append(bytes(view[HEADER.size : HEADER.size + length]))
            del self.buffer[: HEADER.size + length]
        return complete


def encode(message: dict[str, object]) -> bytes:
    """One frame: a result's `BLOB` bytes, if any, go raw after the JSON (see the module's doc)."""
    result = message.get("result")
    blob = result.pop(BLOB, None) if isinstance(result, dict) else None
    payload = json.dumps(message, separators=(",", ":")).encode()
    if not isinstance(blob, (bytes, bytearray)):
        return HEADER.pack(len(payload)) + payload
    length = HEADER.size + len(payload) + len(blob)
    return b"".join((HEADER.pack(BLOB_FLAG | length), HEADER.pack(len(payload)), payload, blob))


def send(sock: socket.socket, message: dict[str, object]) -> bool:
    """Write one frame to the (non-blocking) socket; False if the host is gone."""
    data = memoryview(encode(message))
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
