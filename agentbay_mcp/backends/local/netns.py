"""Sockets inside a session's network namespace, made by the server itself.

Every bwrap sandbox has a network namespace of its own (bwrap --unshare-all, never --share-net).
The server keeps a file descriptor of it (opened before the sandbox runs anything, see sandbox.py)
and makes sockets there: a socket belongs to the namespace it was created in, whichever thread uses
it later. So the egress proxy can listen on the session's own 127.0.0.1 and a port link can connect
to a port the session serves on its 127.0.0.1, while the bytes flow through the server, which checks
them, and the sandbox never gets a way into the host's namespace.

setns(2) switches only the calling thread; it runs on one dedicated thread that always switches back
(and is replaced, never reused, if it ever could not).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import ctypes.util
import errno
import os
import socket
import threading

import anyio

from agentbay_mcp.errors import BackendError

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_lock = threading.Lock()
_host_ns: int | None = None
_executor: concurrent.futures.ThreadPoolExecutor | None = None


def open_netns(pid: int) -> int:
    """A descriptor of `pid`'s network namespace (the caller closes it)."""
    return os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def _make(netns: int, family: int, kind: int) -> socket.socket:
    assert _host_ns is not None
    _setns(netns)
    try:
        return socket.socket(family, kind)
    finally:
        try:
            _setns(_host_ns)
        except OSError:  # never let this thread serve another call from the wrong namespace
            _retire()
            raise


def _retire() -> None:
    global _executor  # noqa: PLW0603 - the one thread that may switch namespaces
    with _lock:
        if _executor is not None:
            _executor.shutdown(wait=False)
        _executor = None


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _executor, _host_ns  # noqa: PLW0603 - set up once, on first use
    with _lock:
        if _host_ns is None:
            _host_ns = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="netns")
        return _executor


async def socket_in(netns: int | None, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
    """A new non-blocking socket in the namespace `netns` (None: the server's own)."""
    if netns is None:
        sock = socket.socket(family, kind)
    else:
        try:
            with anyio.fail_after(5.0):  # the server runs on asyncio (anyio's default backend)
                sock = await asyncio.wrap_future(_pool().submit(_make, netns, family, kind))
        except (OSError, TimeoutError) as exc:
            raise BackendError(f"Could not open a socket in the session's network namespace: {exc}") from exc
    sock.setblocking(False)
    return sock


async def connect_in(netns: int | None, port: int, timeout: float = 5.0) -> socket.socket:
    """A TCP connection to `port` on the namespace's loopback: 127.0.0.1 first, then ::1 (what
    `localhost` servers bind). Raises OSError (ECONNREFUSED...) if nothing listens there."""
    last: OSError | None = None
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        sock = await socket_in(netns, family)
        try:
            with anyio.fail_after(timeout):
                await _connect(sock, (host, port))
        except (OSError, TimeoutError) as exc:
            sock.close()
            last = exc if isinstance(exc, OSError) else OSError(errno.ETIMEDOUT, "connection timed out")
            continue
        return sock
    assert last is not None
    raise last


async def _connect(sock: socket.socket, address: tuple[str, int]) -> None:
    err = sock.connect_ex(address)
    if err == 0:
        return
    if err not in (errno.EINPROGRESS, errno.EAGAIN):
        raise OSError(err, os.strerror(err))
    await anyio.wait_writable(sock)
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))
