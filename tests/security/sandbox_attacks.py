"""What the sandbox-boundary tests share: a server on a state dir, commands that must succeed, mounts
seen from inside a sandbox, host processes and users, and a TCP listener on the host."""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import socket
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
from mcp import Client

from agentbay_mcp.backends.local.cgroups import GROUP, ROOT
from agentbay_mcp.backends.local.sandbox import UNPRIVILEGED_UID
from agentbay_mcp.server.wiring import BackendFactory, build_server, default_backend
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import call, unwrapped
from agentbay_mcp.testing.leaks import cgroup_scope

AS_ROOT = os.geteuid() == 0
#: The uid sandboxes run as on the host: nobody for a root server, else the server's own user.
SANDBOX_HOST_UID = UNPRIVILEGED_UID if AS_ROOT else os.geteuid()
MIB = 1024 * 1024


# Helpers --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(state_dir: Path, backend: BackendFactory = default_backend, **overrides: Any) -> AsyncIterator[Client]:
    """An in-memory client of a server with custom settings (and backend) on `state_dir`."""
    with unwrapped():
        async with Client(build_server(Settings(state_dir=state_dir, **overrides), backend), mode="legacy") as client:
            yield client


async def new_session(client: Client, **arguments: Any) -> str:
    return str((await call(client, "create_session", image_id="code_latest", **arguments))["session_id"])


async def run(client: Client, session_id: str, command: str, timeout_ms: int = 30_000) -> dict[str, Any]:
    """execute_command, which must not be a tool error (a dead sandbox is one)."""
    return await call(client, "execute_command", session_id=session_id, command=command, timeout_ms=timeout_ms)


def python(code: str) -> str:
    """A shell command running `code` with the sandbox's python3."""
    return "python3 -c " + shlex.quote(code)


def cgroup_dir(controller: str, state_dir: Path, session_id: str) -> Path:
    """The session's cgroup directory for `controller` (v1 layout, or the v2 unified one)."""
    name = f"{cgroup_scope(state_dir)}-{session_id}"
    if (ROOT / "cgroup.controllers").exists():
        return ROOT / GROUP / name
    return ROOT / controller / GROUP / name


def unescape(path: str) -> str:
    """A path from /proc/<pid>/mountinfo, with its octal escapes (spaces...) decoded."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def mounts(mountinfo: str) -> list[tuple[str, str, str]]:
    """(device major:minor, root inside the filesystem, mount point) of each mountinfo line."""
    return [
        (fields[2], unescape(fields[3]), unescape(fields[4]))
        for fields in (line.split() for line in mountinfo.splitlines())
        if len(fields) >= 5
    ]


def is_within(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def fs_location(path: Path) -> tuple[str, str] | None:
    """(device, path inside its filesystem) of a host file: what a bind mount would have to expose."""
    st = os.stat(path)
    device = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    real = os.path.realpath(path)
    candidates = [
        m for m in mounts(Path("/proc/self/mountinfo").read_text()) if m[0] == device and is_within(real, m[2])
    ]
    if not candidates:
        return None
    _, root, point = max(candidates, key=lambda m: len(m[2]))
    return device, os.path.normpath(os.path.join(root, os.path.relpath(real, point)))


def exposing_mounts(sandbox_mountinfo: str, host_path: Path) -> list[tuple[str, str, str]]:
    """The sandbox's mounts through which `host_path` could be reached."""
    location = fs_location(host_path)
    if location is None:
        return []
    device, inside = location
    return [m for m in mounts(sandbox_mountinfo) if m[0] == device and is_within(inside, m[1])]


def on_host(path: str) -> bool:
    """Whether `path` exists on the host."""
    return os.path.lexists(path)


def start_host_sleeper() -> subprocess.Popen[bytes]:
    """A host process running as the sandboxes' own host uid (nobody, for a root server)."""
    if AS_ROOT:
        return subprocess.Popen(
            ["sleep", "300"],
            stdin=subprocess.DEVNULL,
            user=UNPRIVILEGED_UID,
            group=UNPRIVILEGED_UID,
            extra_groups=[],
        )
    return subprocess.Popen(["sleep", "300"], stdin=subprocess.DEVNULL)


def run_as_other_user(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `argv` as uid 4242, a local user with no business in the state dir."""
    return subprocess.run(
        argv, user=4242, group=4242, extra_groups=[], capture_output=True, text=True, timeout=30, check=False
    )


def kill_marked(*markers: str) -> None:
    """Clean-up: SIGKILL processes this test started (their command lines carry `markers`)."""
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if any(m in " ".join(proc.cmdline()) for m in markers):
                proc.kill()
                proc.wait(timeout=5)


@contextlib.contextmanager
def tcp_listener() -> Iterator[tuple[int, list[bytes]]]:
    """A TCP server on the host's 127.0.0.1: yields its port and the payloads it received."""
    received: list[bytes] = []
    stop = threading.Event()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.1)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    received.append(conn.recv(1024))

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], received
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def connect_probe(port: int, payload: str) -> str:
    """A command that sends `payload` to the host's 127.0.0.1:`port` (2 s timeout) and says so."""
    return python(
        "import socket\n"
        f"s = socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        f"s.sendall(b'{payload}')\n"
        "s.close()\n"
        "print('connected')\n"
    )
