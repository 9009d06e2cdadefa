"""Attacks on a session's desktop (Xvfb + openbox, started by the agent inside the sandbox).

Every test drives real MCP tools on real sandboxes, X servers and clients (python-xlib inside the
sandbox, raw X11 connection setups from the host) and checks the effect: who can reach a session's
X server, what a hostile X client or command in the session can do to the desktop tools, and that
nothing hangs or outlives its session. Each test fails if the protection it checks were missing.
"""

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
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import call, call_error, error_text, unwrapped
from agentbay_mcp.testing.desktop import new_desktop_session, start_xterm, window_titles
from agentbay_mcp.testing.host import processes_in, sandbox_namespace
from agentbay_mcp.testing.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

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


def host_listens(kind: str, address: str) -> bool:
    """Whether something in this (the host's) network namespace already listens on `address`."""
    if kind == "unix":
        paths = {
            line.split()[7] for line in Path("/proc/net/unix").read_text().splitlines()[1:] if len(line.split()) > 7
        }
        return address in paths
    port = int(address.rsplit(":", 1)[1])
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def host_listener(kind: str) -> Iterator[str]:
    """A listener in the host's network namespace that accepts and closes connections (a control:
    a session sharing the host's network must reach it). Yields its address as probe_x takes it."""
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
            assert result.structured_content is not None
            return list(result.structured_content["windows"])
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


# 1. Another session cannot reach a session's X server ------------------------------------------


@pytest.mark.parametrize(
    ("policy", "ask"),
    [("off", False), ("on-request", True), ("on", False)],
    ids=["no-network", "network-on-request", "network-on"],
)
async def test_another_session_cannot_reach_the_x_server(state_dir: Path, policy: str, ask: bool) -> None:
    async with serve(Settings(state_dir=state_dir, network=policy)) as client:
        created = [
            await call(client, "create_session", image_id="linux_latest", **({"network": True} if ask else {}))
            for _ in range(2)
        ]
        session_a, session_b = (str(c["session_id"]) for c in created)
        shared = policy != "off"
        assert all(c["network"] is shared for c in created)
        # Names and ports B will try. Sharing the host's network, B would also reach whatever the host
        # itself serves there (a host X server on :0 is not A's): those are left out, decided before
        # A's display exists.
        by_name = [("unix", "@" + SOCKET), ("tcp", "127.0.0.1:6000")]
        by_name = [t for t in by_name if not (shared and host_listens(*t))]
        assert await window_titles(client, session_a) == []  # A's desktop runs
        cookie = read_cookie(state_dir, session_a)

        # Structurally: A's X server listens on its socket file in A's /tmp only (no TCP, no abstract name).
        xvfb = host_pid_of(state_dir, session_a, "Xvfb")
        assert listening_sockets(xvfb) == [SOCKET]

        # The probe works: A itself reaches its own display with the cookie (and is refused without).
        own = await probe_from(client, session_a, cookie, [("unix", SOCKET)])
        assert own == {SOCKET: "reply:1"}
        assert (await probe_from(client, session_a, b"", [("unix", SOCKET)]))[SOCKET] in ("reply:0", "reply:2")

        # B, even holding A's cookie, finds nothing: not by name, port or path.
        host_path = str(session_tmp(state_dir, session_a) / SOCKET.removeprefix("/tmp/"))
        by_path = [("unix", SOCKET), ("unix", host_path), ("unix", f"/proc/{xvfb}/root{SOCKET}")]
        targets = by_name + by_path
        with host_listener("unix") as abstract_control, host_listener("tcp") as tcp_control:
            controls = [("unix", abstract_control), ("tcp", tcp_control)]
            found = await probe_from(client, session_b, cookie, targets + controls)
        expected = {t[1]: ("ENOENT" if t[1].startswith("/") else "ECONNREFUSED") for t in targets}
        # The controls: a session sharing the host's network reaches the host's listeners; one without cannot.
        expected[abstract_control] = "closed" if shared else "ECONNREFUSED"
        expected[tcp_control] = "closed" if shared else "ECONNREFUSED"
        assert found == expected

        # Every socket file B can see anywhere: none is A's X server.
        listed = await run(
            client, session_b, "find / -path /proc -prune -o -path /sys -prune -o -type s -print 2>/dev/null"
        )
        sockets = [line for line in listed["stdout"].splitlines() if line]
        assert sockets == []  # B has no desktop of its own yet
        assert await window_titles(client, session_b) == []  # now it has
        found = await probe_from(client, session_b, cookie, [("unix", SOCKET)])
        assert found == {SOCKET: "reply:0"}  # B's own X server: A's cookie means nothing there

        # A's desktop is unharmed.
        await start_xterm(client, session_a, "still-a")
        assert await window_titles(client, session_b) == []


# 2. A host process without the cookie -----------------------------------------------------------


async def test_host_process_without_the_cookie_is_refused(settings: Settings, state_dir: Path) -> None:
    async with serve(settings) as client:
        session_id = await new_desktop_session(client)
        other = await new_desktop_session(client)
        await window_titles(client, session_id)
        await window_titles(client, other)
        path = str(session_tmp(state_dir, session_id) / SOCKET.removeprefix("/tmp/"))
        cookie_file = session_tmp(state_dir, session_id) / XAUTHORITY.removeprefix("/tmp/")
        assert cookie_file.stat().st_mode & 0o077 == 0  # only the sandbox user may read the cookie
        cookie = read_cookie(state_dir, session_id)

        assert probe_x("unix", path, "") in ("reply:0", "reply:2")
        assert probe_x("unix", path, secrets.token_hex(16)) in ("reply:0", "reply:2")
        assert probe_x("unix", path, read_cookie(state_dir, other).hex()) in ("reply:0", "reply:2")
        assert probe_x("unix", path, cookie.hex()) == "reply:1"  # the test can tell the difference
        assert await window_titles(client, session_id) == []


# 3. The session's own processes attacking the desktop -------------------------------------------


@pytest.mark.parametrize("victim", ["Xvfb", "openbox"])
async def test_killing_the_display_from_a_command_gives_a_fresh_desktop(
    settings: Settings, state_dir: Path, victim: str
) -> None:
    async with serve(settings) as client:
        session_id = await new_desktop_session(client)
        await start_xterm(client, session_id, "before")
        killed = await run(client, session_id, kill_9(victim) + "; pgrep -x -c " + victim)
        assert killed["stdout"] == "0\n", killed
        with anyio.fail_after(30):
            windows = await desktop_answers(client, session_id)
        titles = [w["title"] for w in windows]
        # A dead X server takes its clients along; a dead window manager may or may not (a restart of both).
        assert titles == [] if victim == "Xvfb" else titles in ([], ["before"]), titles
        await start_xterm(client, session_id, "after")
        assert await window_titles(client, session_id) == [*titles, "after"]
        running = processes_in(sandbox_namespace(state_dir, session_id))
        assert running.count("Xvfb") == 1, running
        assert running.count("openbox") == 1, running


async def test_stop_app_never_stops_the_desktop_or_the_agent(settings: Settings, state_dir: Path) -> None:
    async with serve(settings) as client:
        session_id = await new_desktop_session(client)
        await start_xterm(client, session_id, "survivor")
        namespace = sandbox_namespace(state_dir, session_id)
        pids = json.loads(
            (
                await run(
                    client,
                    session_id,
                    python(
                        "import json, subprocess; print(json.dumps({n: int(subprocess.check_output(['pgrep', '-x', n]))"
                        " for n in ('Xvfb', 'openbox')}))"
                    ),
                )
            )["stdout"]
        )
        display = {host_pid_of(state_dir, session_id, n) for n in ("Xvfb", "openbox")}
        # A python3 of the user's own, which pname="python3" may stop (the agent is a python3 too).
        started = await call(
            client,
            "start_app",
            session_id=session_id,
            start_cmd="exec " + python("import time; time.sleep(60)"),
            wait_ms=0,
        )
        users_python = started["processes"][0]["pid"]
        comm = f"cat /proc/{users_python}/comm"
        with anyio.fail_after(10):
            while (await run(client, session_id, comm))["stdout"] != "python3\n":  # noqa: ASYNC110 - in the sandbox
                await anyio.sleep(0.05)

        for pname in ("Xvfb", "openbox"):
            message = await call_error(client, "stop_app", session_id=session_id, pname=pname)
            assert "no process named" in message
        stopped = await call(client, "stop_app", session_id=session_id, pname="python3")
        assert [p["pid"] for p in stopped["stopped"]] == [users_python]
        for pid in (1, pids["Xvfb"], pids["openbox"]):
            assert "cannot be stopped" in await call_error(client, "stop_app", session_id=session_id, pid=pid)

        assert await window_titles(client, session_id) == ["survivor"]
        assert {host_pid_of(state_dir, session_id, n) for n in ("Xvfb", "openbox")} == display
        assert "python3" in processes_in(namespace)  # the agent
        assert (await run(client, session_id, "echo alive"))["stdout"] == "alive\n"


# 4. A hostile X client grabs the server ---------------------------------------------------------

GRAB = "d.grab_server(); d.sync(); print('grabbed', flush=True); import time; time.sleep(120)"


async def test_a_grabbed_x_server_times_out_and_recovers(settings: Settings) -> None:
    async with serve(settings) as client:
        session_id = await new_desktop_session(client)
        other = await new_desktop_session(client)
        await window_titles(client, session_id)
        await start_xterm(client, other, "other")
        grabber = await start_background(client, session_id, x_client(GRAB))
        await wait_for_output(client, session_id, grabber, "grabbed")

        began = time.monotonic()
        with anyio.fail_after(15):
            async with anyio.create_task_group() as group:

                async def other_session() -> None:
                    assert await window_titles(client, other) == ["other"]
                    assert time.monotonic() - began < 3

                group.start_soon(other_session)
                message = await call_error(client, "list_windows", session_id=session_id)
        assert "did not answer" in message
        assert time.monotonic() - began < 10

        await call(client, "kill_process", session_id=session_id, process_id=grabber, signal="KILL")
        with anyio.fail_after(30):
            assert await desktop_answers(client, session_id) == []
        await start_xterm(client, session_id, "after-grab")


async def test_a_timeout_keeps_the_sessions_apps(settings: Settings) -> None:
    async with serve(settings) as client:
        session_id = await new_desktop_session(client)
        await start_xterm(client, session_id, "precious")
        grabber = await start_background(client, session_id, x_client(GRAB))
        await wait_for_output(client, session_id, grabber, "grabbed")
        with anyio.fail_after(15):
            assert "did not answer" in await call_error(client, "list_windows", session_id=session_id)
        await call(client, "kill_process", session_id=session_id, process_id=grabber, signal="KILL")
        with anyio.fail_after(30):
            titles = [w["title"] for w in await desktop_answers(client, session_id)]
        assert titles == ["precious"]


# 5. Resource abuse by an application ------------------------------------------------------------

HUGE_TITLE = """
w = d.screen().root.create_window(0, 0, 200, 100, 0, X.CopyFromParent)
chunk = ('big-' + 'x' * 199_996).encode()
for atom, kind in ((d.intern_atom('_NET_WM_NAME'), d.intern_atom('UTF8_STRING')), (Xatom.WM_NAME, Xatom.STRING)):
    w.change_property(atom, kind, 8, b'')
    for _ in range(26):  # 5.2 MB, appended in requests under the core protocol's size limit
        w.change_property(atom, kind, 8, chunk, X.PropModeAppend)
w.map(); d.sync()
print('mapped', flush=True)
import time; time.sleep(120)
"""


async def test_a_five_megabyte_window_title_is_capped(settings: Settings) -> None:
    async with serve(settings) as client:
        session_id = await new_desktop_session(client)
        with anyio.fail_after(20):
            started = await call(
                client, "start_app", session_id=session_id, start_cmd=x_client(HUGE_TITLE), wait_ms=15_000
            )
        assert started["window"] is not None
        assert len(started["window"]["title"]) == 1024
        for _ in range(3):
            began = time.monotonic()
            listed = await call(client, "list_windows", session_id=session_id)
            assert time.monotonic() - began < 2
            (window,) = listed["windows"]
            assert window["title"] == "big-" + "x" * 1020


MANY_WINDOWS = """
root = d.screen().root
for i in range(1000):
    w = root.create_window(i % 600, i % 400, 50, 50, 0, X.CopyFromParent)
    w.set_wm_name(f'flood-{i}')
    w.set_wm_normal_hints(flags=3, x=i % 600, y=i % 400)  # USPosition | USSize: openbox places nothing
    w.map()
d.sync()
import time
clients = d.intern_atom('_NET_CLIENT_LIST')
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    prop = root.get_full_property(clients, 0)
    if prop is not None and len(prop.value) >= 1000:
        break
    time.sleep(0.05)
print('managed', len(prop.value), flush=True)
time.sleep(120)
"""


async def test_a_thousand_windows_are_listed_fast_and_capped(settings: Settings) -> None:
    async with serve(settings) as client:
        session_id = await new_desktop_session(client)
        await window_titles(client, session_id)
        flood = await start_background(client, session_id, x_client(MANY_WINDOWS))
        output = await wait_for_output(client, session_id, flood, "managed", timeout=40)
        assert "managed 1000" in output
        for _ in range(3):
            began = time.monotonic()
            listed = await call(client, "list_windows", session_id=session_id)
            assert time.monotonic() - began < 2
            # The newest 200 (in the window manager's mapping order).
            assert [w["title"] for w in listed["windows"]] == [f"flood-{i}" for i in range(800, 1000)]
            assert listed["truncated"] is True


# 6. Tampering with the desktop's files ----------------------------------------------------------


async def test_deleting_the_x_socket(settings: Settings, state_dir: Path) -> None:
    async with serve(settings) as client:
        session_id = await new_desktop_session(client)
        namespace = sandbox_namespace(state_dir, session_id)
        await start_xterm(client, session_id, "connected")
        await run(client, session_id, f"rm -f {SOCKET}")
        # The agent's connection is already open: the desktop keeps answering.
        assert await window_titles(client, session_id) == ["connected"]
        # A new application cannot connect: a clear error, not a hang.
        with anyio.fail_after(15):
            message = await call_error(client, "start_app", session_id=session_id, start_cmd="xterm -T orphan")
        assert "exited at once" in message
        assert ":0" in message
        # Killing the display brings up a fresh one, with a socket again.
        await run(client, session_id, kill_9("Xvfb"))
        with anyio.fail_after(30):
            await desktop_answers(client, session_id)
        await start_xterm(client, session_id, "reconnected")
        with anyio.fail_after(10):
            await call(client, "delete_session", session_id=session_id)
        no_processes_left(namespace)


async def test_overwriting_the_xauthority_file(settings: Settings, state_dir: Path) -> None:
    async with serve(settings) as client:
        session_id = await new_desktop_session(client)
        namespace = sandbox_namespace(state_dir, session_id)
        await start_xterm(client, session_id, "connected")
        await run(client, session_id, f"head -c 95 /dev/urandom > {XAUTHORITY}")
        assert await window_titles(client, session_id) == ["connected"]  # the agent's connection is open
        # A new application either cannot authenticate (a clear error) or, if the X server re-read the
        # file, gets in (see test_a_session_cannot_switch_off_x_authentication): never a hang.
        with anyio.fail_after(15):
            result = await client.call_tool("start_app", {"session_id": session_id, "start_cmd": "xterm -T orphan"})
        if result.is_error:
            assert "exited at once" in error_text(result)
        # A restarted display writes a fresh cookie file: new applications work again.
        await run(client, session_id, kill_9("openbox"))
        with anyio.fail_after(30):
            assert await desktop_answers(client, session_id) == []
        await start_xterm(client, session_id, "fresh-cookie")
        assert probe_x("unix", str(session_tmp(state_dir, session_id) / SOCKET.removeprefix("/tmp/")), "") in (
            "reply:0",
            "reply:2",
        )
        with anyio.fail_after(10):
            await call(client, "delete_session", session_id=session_id)
        no_processes_left(namespace)


async def test_a_session_cannot_switch_off_x_authentication(settings: Settings, state_dir: Path) -> None:
    async with serve(settings) as client:
        session_id = await new_desktop_session(client)
        await window_titles(client, session_id)
        path = str(session_tmp(state_dir, session_id) / SOCKET.removeprefix("/tmp/"))
        assert probe_x("unix", path, "") in ("reply:0", "reply:2")
        # Empty the cookie file; the future mtime makes the X server's one-second change check see it.
        await run(client, session_id, f": > {XAUTHORITY}; touch -d @$(( $(date +%s) + 5 )) {XAUTHORITY}")
        assert probe_x("unix", path, "") in ("reply:0", "reply:2")


async def test_a_display_directory_that_is_a_file_is_a_clear_error(settings: Settings, state_dir: Path) -> None:
    async with serve(settings) as client:
        session_id = await new_desktop_session(client)
        namespace = sandbox_namespace(state_dir, session_id)
        await window_titles(client, session_id)
        display_dir = "/tmp/.agentbay/display"
        await run(client, session_id, f"rm -rf {display_dir}; echo x > {display_dir}; " + kill_9("Xvfb"))
        with anyio.fail_after(20):
            message = await call_error(client, "list_windows", session_id=session_id)
        assert "desktop is unavailable: cannot prepare the display's files" in message
        await run(client, session_id, f"rm {display_dir}")
        with anyio.fail_after(30):
            assert await desktop_answers(client, session_id) == []
        with anyio.fail_after(10):
            await call(client, "delete_session", session_id=session_id)
        no_processes_left(namespace)


async def test_a_fifo_in_place_of_the_xauthority_file_does_not_hang_the_agent(
    settings: Settings, state_dir: Path
) -> None:
    async with serve(settings) as client:
        session_id = await new_desktop_session(client)
        namespace = sandbox_namespace(state_dir, session_id)
        await window_titles(client, session_id)
        await run(client, session_id, f"rm -f {XAUTHORITY}; mkfifo {XAUTHORITY}; " + kill_9("Xvfb"))
        try:
            with anyio.move_on_after(8) as waited:
                result = await client.call_tool("list_windows", {"session_id": session_id})
                if result.is_error:
                    message = error_text(result)
                    assert any(clear in message for clear in CLEAR_ERRORS), message
                # The session itself must still work.
                assert (await run(client, session_id, "echo alive", timeout_ms=2000))["stdout"] == "alive\n"
            assert not waited.cancelled_caught, "the session's agent hung"
        finally:
            with anyio.fail_after(10):
                await call(client, "delete_session", session_id=session_id)
            no_processes_left(namespace)


# 7. Deleting a session while a desktop call runs ------------------------------------------------


async def test_deleting_a_session_during_start_app(settings: Settings, state_dir: Path) -> None:
    async with serve(settings) as client:
        session_id = await new_desktop_session(client)
        namespace = sandbox_namespace(state_dir, session_id)
        await window_titles(client, session_id)
        outcome: dict[str, Any] = {}

        async def start() -> None:
            began = time.monotonic()
            result = await client.call_tool(
                "start_app", {"session_id": session_id, "start_cmd": "sleep 600", "wait_ms": 5000}
            )
            outcome["result"] = result
            outcome["ended"] = time.monotonic()
            outcome["took"] = time.monotonic() - began

        with anyio.fail_after(15):
            async with anyio.create_task_group() as group:
                group.start_soon(start)
                await anyio.sleep(0.5)
                deleted_at = time.monotonic()
                await call(client, "delete_session", session_id=session_id)
                assert time.monotonic() - deleted_at < 3
        result = outcome["result"]
        assert result.is_error, result.structured_content
        assert outcome["ended"] - deleted_at < 2
        no_processes_left(namespace)
