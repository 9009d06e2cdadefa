"""Probes run inside sessions: fetch a URL directly, through the session's proxy, or tunnel with CONNECT."""

from __future__ import annotations

import shlex
from typing import Any

from mcp import Client

from agentbay_mcp.testing.calls import call

#: `python3 /tmp/fetch.py MODE TARGET...` prints one line per target: "OK <body>" or "ERR <why>".
#: MODE raw: no proxy (routes only); proxy: the session's proxy (from the environment); connect: a CONNECT
#: tunnel through the proxy to TARGET (host:port), then a GET.
FETCH = r"""
import socket, sys, urllib.error, urllib.request
mode = sys.argv[1]
def one(target):
    if mode == "connect":
        host, port = target.rsplit(":", 1)
        s = socket.create_connection(("127.0.0.1", 3128), timeout=5)
        s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        status, _, rest = head.partition(b"\r\n")
        if not status.startswith(b"HTTP/1.1 200"):
            return "ERR " + status.decode() + " " + head.partition(b"\r\n\r\n")[2].decode().strip()
        s.sendall(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")
        data = head.partition(b"\r\n\r\n")[2]
        while chunk := s.recv(4096):
            data += chunk
        return "OK " + data.partition(b"\r\n\r\n")[2].decode().strip()
    handlers = [urllib.request.ProxyHandler({})] if mode == "raw" else []
    try:
        with urllib.request.build_opener(*handlers).open(target, timeout=5) as answer:
            return "OK " + answer.read().decode().strip()
    except urllib.error.HTTPError as exc:
        return f"ERR {exc.code} " + exc.read().decode().strip()
for target in sys.argv[2:]:
    try:
        print(one(target), flush=True)
    except Exception as exc:
        print("ERR", type(exc).__name__, getattr(exc, "reason", exc), flush=True)
"""


async def install(client: Client, session_id: str) -> None:
    """Put the fetch probe in the session's /tmp."""
    await call(client, "write_file", session_id=session_id, path="/tmp/fetch.py", content=FETCH)


async def fetch(client: Client, session_id: str, mode: str, *targets: str) -> list[str]:
    """One line per target (see FETCH)."""
    command = f"python3 /tmp/fetch.py {mode} " + " ".join(shlex.quote(t) for t in targets)
    ran: dict[str, Any] = await call(
        client, "execute_command", session_id=session_id, command=command, timeout_ms=60_000
    )
    assert ran["exit_code"] == 0, ran
    lines = str(ran["stdout"]).splitlines()
    assert len(lines) == len(targets), ran
    return lines


def reached(lines: list[str]) -> list[bool]:
    """Which probes got an answer."""
    return [line.startswith("OK ") for line in lines]
