"""What the desktop-attack tests share: X clients run inside a sandbox, X connection probes from the
host, the session's cookie and sockets, background processes, and desktop calls that must answer."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import secrets
import shlex
import socket
import struct
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.answers import unpack
from agentbay_mcp.testing.calls import call, error_text, unwrapped
from agentbay_mcp.testing.desktop import new_desktop_session, window_titles
from agentbay_mcp.testing.host import processes_in, sandbox_namespace
from agentbay_mcp.testing.waiting import wait_until

#: Where the agent keeps the display's files inside the sandbox (and so under the session's tmp dir).
SOCKET = "/tmp/.X11-unix/X0"
XAUTHORITY = "/tmp/.agentbay/display/Xauthority"
#: What python-xlib needs inside a sandbox (the agent's vendored copy).
XLIB = "import sys; sys.path.insert(0, '/opt/agentbay/vendor'); from Xlib import X, Xatom, display; "
#: Messages the desktop tools give when the X server is gone, wedged or could not start.
CLEAR_ERRORS = ("did not answer", "X request failed", "could not start", "Xvfb", "window manager")


# Helpers --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[Client]:
    """An in-memory client of a server with `settings`."""
    with unwrapped():
        async with Client(build_server(settings), mode="legacy") as client:
            yield client


async def run(client: Client, session_id: str, command: str, timeout_ms: int = 20_000) -> dict[str, Any]:
    """execute_command, which must succeed as a tool call."""
    return await call(client, "execute_command", session_id=session_id, command=command, timeout_ms=timeout_ms)


def python(code: str, *args: str) -> str:
    """A shell command running `code` with the sandbox's python3."""
    return shlex.join(["python3", "-c", code, *args])


def x_client(code: str) -> str:
    """A shell command running python-xlib `code` against the session's display (DISPLAY from the socket)."""
    setup = XLIB + "import os; os.environ.setdefault('DISPLAY', ':0'); "
    setup += f"os.environ.setdefault('XAUTHORITY', {XAUTHORITY!r}); d = display.Display(); "
    return python(setup + code)


def session_tmp(state_dir: Path, session_id: str) -> Path:
    """The host directory that is the session's /tmp."""
    return state_dir / "sessions" / session_id / "tmp"


def host_socket(state_dir: Path, session_id: str) -> str:
    """The host path of the session's X socket."""
    return str(session_tmp(state_dir, session_id) / SOCKET.removeprefix("/tmp/"))


def read_cookie(state_dir: Path, session_id: str) -> bytes:
    """The MIT-MAGIC-COOKIE-1 of the session's display, from its Xauthority file on the host."""
    data = (session_tmp(state_dir, session_id) / XAUTHORITY.removeprefix("/tmp/")).read_bytes()
    cookies: set[bytes] = set()
    offset = 2  # each entry: family (2 bytes), then address, number, name, data as (length, bytes)
    while offset < len(data):
        fields = []
        for _ in range(4):
            (length,) = struct.unpack_from(">H", data, offset)
            fields.append(data[offset + 2 : offset + 2 + length])
            offset += 2 + length
        offset += 2
        if fields[2] == b"MIT-MAGIC-COOKIE-1":
            cookies.add(fields[3])
    assert len(cookies) == 1, cookies
    (cookie,) = cookies
    assert len(cookie) == 16
    return cookie


def probe_x(kind: str, address: str, cookie_hex: str) -> str:
    """Connect to a would-be X server and send a connection setup (byte order 'l', protocol 11.0)
    with the given MIT-MAGIC-COOKIE-1 (none if empty). Returns the errno name of a failed connect,
    or 'reply:N' with the first byte of the server's answer (0 Failed, 1 Success, 2 Authenticate),
    'closed' or 'timeout'. Runs on the host and, by its source, inside sandboxes (stdlib only)."""
    # Imported here: the function must stand alone when its source is shipped into a sandbox.
    import errno
    import os
    import socket
    import struct

    cookie = bytes.fromhex(cookie_hex)
    name = b"MIT-MAGIC-COOKIE-1" if cookie else b""
    message = struct.pack("<BxHHHHxx", 0x6C, 11, 0, len(name), len(cookie))
    message += name + b"\0" * (-len(name) % 4) + cookie + b"\0" * (-len(cookie) % 4)
    family = socket.AF_INET if kind == "tcp" else socket.AF_UNIX
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(3)
        try:
            if kind == "tcp":
                host, port = address.rsplit(":", 1)
                sock.connect((host, int(port)))
            elif address.startswith("@"):
                sock.connect("\0" + address[1:])
            else:  # through a descriptor of its directory: a session dir's path can exceed sun_path
                directory = os.open(os.path.dirname(address), os.O_PATH)
                try:
                    sock.connect(f"/proc/self/fd/{directory}/{os.path.basename(address)}")
                finally:
                    os.close(directory)
        except OSError as exc:
            return errno.errorcode.get(exc.errno or 0, str(exc))
        try:
            sock.sendall(message)
            first = sock.recv(1)
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            return errno.errorcode.get(exc.errno or 0, str(exc))
        return f"reply:{first[0]}" if first else "closed"


#: A script that probes every (kind, address) of argv[2] with the cookie argv[1], printing JSON.
PROBE_SCRIPT = (
    inspect.getsource(probe_x)
    + "import json, sys\n"
    + "print(json.dumps({a: probe_x(k, a, sys.argv[1]) for k, a in json.loads(sys.argv[2])}))\n"
)


async def probe_from(client: Client, session_id: str, cookie: bytes, targets: list[tuple[str, str]]) -> dict[str, str]:
    """probe_x run inside a session, for each target."""
    result = await run(client, session_id, python(PROBE_SCRIPT, cookie.hex(), json.dumps(targets)))
    assert result["exit_code"] == 0, result
    found: dict[str, str] = json.loads(result["stdout"])
    return found


def host_pid_of(state_dir: Path, session_id: str, name: str) -> int:
    """The host pid of the session's only process called `name`."""
    namespace = sandbox_namespace(state_dir, session_id)
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError):
            named = entry.isdigit() and Path(f"/proc/{entry}/comm").read_text().strip() == name
            if named and os.readlink(f"/proc/{entry}/ns/pid") == namespace:
                pids.append(int(entry))
    assert len(pids) == 1, (name, pids)
    return pids[0]


def listening_sockets(pid: int) -> list[str]:
    """What a process listens on, read from its own net namespace: unix paths ('@' = abstract), tcp ports."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found = []
    for line in Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[6] in inodes and int(fields[3], 16) & 0x10000:  # __SO_ACCEPTCON: listening
            found.append(fields[7] if len(fields) > 7 else "(unnamed)")
    for table in ("tcp", "tcp6", "udp", "udp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                found.append(f"{table}:{int(fields[1].split(':')[1], 16)}")
    return sorted(found)


@contextlib.contextmanager
def host_listener(kind: str) -> Iterator[str]:
    """A listener in the host's network namespace that accepts and closes connections (a control: no
    session reaches it, network or not). Yields its address as probe_x takes it."""
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        name = f"agentbay-test-{secrets.token_hex(6)}"
        sock.bind("\0" + name)
        address = "@" + name
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
    sock.listen(8)
    sock.settimeout(0.1)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                connection, _ = sock.accept()
                with connection:  # read what the client sent, so the close is a clean end of file
                    connection.settimeout(2)
                    connection.recv(4096)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield address
    finally:
        stop.set()
        thread.join(timeout=5)
        sock.close()


async def start_background(client: Client, session_id: str, command: str) -> str:
    """start_process; returns its process_id."""
    return str((await call(client, "start_process", session_id=session_id, command=command))["process_id"])


async def wait_for_output(client: Client, session_id: str, process_id: str, text: str, timeout: float = 10.0) -> str:
    """Read a background process's stdout until it contains `text` (fails after `timeout` s)."""
    output, cursor = "", None
    with anyio.fail_after(timeout):
        while text not in output:
            chunk = await call(
                client, "read_process_output", session_id=session_id, process_id=process_id, cursor=cursor, wait_ms=2000
            )
            output += chunk["stdout"]
            cursor = chunk["cursor"]
            assert chunk["status"]["running"] or text in output, (output, chunk)
    return output


async def desktop_answers(client: Client, session_id: str, attempts: int = 5) -> list[dict[str, Any]]:
    """list_windows, retried while it fails with one of the clear errors; fails the test otherwise."""
    errors = []
    for _ in range(attempts):
        with anyio.fail_after(20):
            result = await client.call_tool("list_windows", {"session_id": session_id})
        if not result.is_error:
            return list(unpack("list_windows", result)["windows"])
        message = error_text(result)
        assert any(clear in message for clear in CLEAR_ERRORS), message
        errors.append(message)
    raise AssertionError(f"the desktop did not come back: {errors}")


def kill_9(name: str) -> str:
    """A command that SIGKILLs the session's `name` and returns once the agent has reaped it (pgrep
    lists zombies too), so the next desktop call sees it gone rather than racing its death."""
    return f"pkill -9 -x {name} && for _ in $(seq 500); do pgrep -x {name} >/dev/null || break; sleep 0.01; done"


def no_processes_left(namespace: str) -> None:
    """Everything of a deleted session's sandbox is gone within a few seconds."""
    assert wait_until(lambda: processes_in(namespace) == [], timeout=5), processes_in(namespace)


@contextlib.asynccontextmanager
async def desktop_session(client: Client, state_dir: Path) -> AsyncIterator[str]:
    """A desktop session with its display up. Deleted at the end, however the block ends, and then
    nothing of its sandbox may be left."""
    session_id = await new_desktop_session(client)
    namespace = sandbox_namespace(state_dir, session_id)
    await window_titles(client, session_id)
    try:
        yield session_id
    finally:
        with anyio.fail_after(10):
            await call(client, "delete_session", session_id=session_id)
        no_processes_left(namespace)
