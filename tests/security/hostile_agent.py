"""A hostile stand-in for the in-sandbox agent (tests inject it with SandboxOptions.agent_dir).

Standard library only, run as `python -I -S sandbox_agent.py FD CONFIG` like the real agent. It
answers `run` well (stdout is the command text) unless the command names an attack:
  deep, deep-id     a reply nested 200,000 levels deep (in the result, or in "id")
  flood             30 MB frames, one after another, until the host hangs up
  shape             a reply of the wrong shape
  unsolicited       a reply to an id nobody asked for
and answers `desktop_screenshot` with a zlib bomb (400 MB of zeros claimed as a 1280x800 screen).
"""

import base64
import contextlib
import json
import os
import socket
import struct
import zlib

HEADER = struct.Struct(">I")
DEEP = 200_000
FLOOD_BYTES = 30 * 1024 * 1024


def send(sock, payload):
    sock.sendall(HEADER.pack(len(payload)) + payload)


def reply(sock, request_id, result):
    send(sock, json.dumps({"id": request_id, "ok": True, "result": result}).encode())


def info(command):
    return {
        "proc_id": "p1",
        "pid": 2,
        "command": command,
        "running": False,
        "exit_code": 0,
        "signal": None,
        "killed_by": "",
        "elapsed_ms": 1,
        "stdout_bytes": len(command.encode()),
        "stderr_bytes": 0,
        "stdin_open": False,
    }


def stream(data):
    return {
        "head": base64.b64encode(data).decode(),
        "tail": "",
        "total": len(data),
        "full_path": None,
        "full_bytes": 0,
        "full_complete": True,
        "note": "",
    }


def bomb():
    packer = zlib.compressobj(9)
    zeros = bytes(1 << 20)
    packed = b"".join(packer.compress(zeros) for _ in range(400)) + packer.flush()
    return base64.b64encode(packed).decode()


def run(sock, request_id, command):
    if command == "deep":
        send(sock, b'{"id": %d, "ok": true, "result": {"info": ' % request_id + b"[" * DEEP + b"]" * DEEP + b"}}")
    elif command == "deep-id":
        send(sock, b'{"id": ' + b"[" * DEEP + b"]" * DEEP + b', "ok": true, "result": {}}')
    elif command == "flood":
        chunk = b"x" * (1 << 20)  # streamed: the attacker's own memory is not what is measured
        while True:
            sock.sendall(HEADER.pack(FLOOD_BYTES))
            for _ in range(FLOOD_BYTES >> 20):
                sock.sendall(chunk)
    elif command == "shape":
        reply(sock, request_id, {"info": "a lie", "summary": [1, 2, 3]})
    elif command == "unsolicited":
        reply(sock, request_id + 1000, {"info": info(command)})
    else:
        reply(
            sock,
            request_id,
            {"info": info(command), "summary": {"stdout": stream(command.encode()), "stderr": stream(b"")}},
        )


def main():
    sock = socket.socket(fileno=int(os.environ["AGENTBAY_AGENT_FD"]))
    reply(sock, 0, {"ready": True})
    inbox = b""
    while True:
        data = sock.recv(1 << 20)
        if not data:
            return
        inbox += data
        while len(inbox) >= 4:
            (length,) = HEADER.unpack_from(inbox)
            if len(inbox) < 4 + length:
                break
            request = json.loads(inbox[4 : 4 + length])
            inbox = inbox[4 + length :]
            op = request.get("op")
            if op == "run":
                run(sock, request["id"], request["command"])
            elif op == "cancel":
                reply(sock, request["id"], {"cancelled": False})
            elif op == "desktop_screenshot":
                result = {"width": 1280, "height": 800, "format": "bgrx", "compression": "zlib", "data": bomb()}
                reply(sock, request["id"], result)
            else:
                error = {"kind": "bad_request", "message": f"the hostile agent does not do {op}"}
                send(sock, json.dumps({"id": request["id"], "ok": False, "error": error}).encode())


with contextlib.suppress(OSError):  # the host hung up on us: what a violation earns
    main()
