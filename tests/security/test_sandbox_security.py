"""What a hostile command in a session can and cannot do: the sandbox boundary, tested by attacking it.

Every test runs real commands in real bubblewrap sandboxes through the MCP tools and checks the
effect on the host: canary files, host processes (psutil), the session's cgroups, a TCP listener.
Tests marked xfail document security weaknesses found in the project; each reason says what
happens and how to fix it, and `strict=True` makes the test fail loudly once it is fixed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from mcp import Client

from agentbay_mcp.backends.base import SandboxBackend
from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.local.cgroups import GROUP, ROOT
from agentbay_mcp.backends.local.sandbox import UNPRIVILEGED_UID
from agentbay_mcp.server.wiring import BackendFactory, build_server, default_backend, sandbox_options
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import call, call_error, unwrapped
from agentbay_mcp.testing.host import marked, nonce, sandbox_processes
from agentbay_mcp.testing.leaks import cgroup_scope
from agentbay_mcp.testing.servers import HttpServer, session_dirs, stdio_params
from agentbay_mcp.testing.waiting import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

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


# 1. Host files ---------------------------------------------------------------------------------


async def test_host_files_outside_the_sandbox_are_unreachable(
    client: Client, state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = secrets.token_hex(16)
    canary = tmp_path / f"canary-{secrets.token_hex(6)}.txt"
    canary.write_text(secret)
    canary.chmod(0o644)  # readable by everyone, the sandbox uid included: only the mount namespace protects it
    monkeypatch.setenv("AGENTBAY_SECURITY_CANARY", secret)  # the server's environment must not leak either
    session_id = await new_session(client)

    # No mount of the sandbox exposes the canary, /root or the session's own record, under any path.
    mountinfo = (await run(client, session_id, "cat /proc/self/mountinfo"))["stdout"]
    assert mounts(mountinfo), mountinfo
    for host_path in (canary, Path("/root"), state_dir / "sessions" / session_id / "meta.json"):
        assert not exposing_mounts(mountinfo, host_path), f"{host_path} is reachable in the sandbox"

    read = await run(client, session_id, f"cat {canary}")
    assert read["exit_code"] != 0
    assert secret not in read["stdout"] + read["stderr"]

    root = await run(client, session_id, "ls -a /root")
    assert root["exit_code"] != 0 or root["stdout"].split() in ([], [".", ".."]), root
    host_root_entries = {name for name in os.listdir("/root") if len(name) > 4}
    assert not host_root_entries & set(root["stdout"].split())

    for command in (
        f"find / -xdev 2>/dev/null | grep {canary.name}",
        f"find / -path /proc -prune -o -name {canary.name} -print 2>/dev/null",
        f"grep -rls {secret} /home /tmp /opt /etc /dev /run 2>/dev/null",
        "env; tr '\\0' '\\n' < /proc/1/environ",
        f"ls -la {state_dir} {state_dir}/sessions/{session_id} 2>&1; cat {state_dir}/sessions/{session_id}/meta.json",
    ):
        found = await run(client, session_id, command)
        assert secret not in found["stdout"], command
        assert canary.name not in found["stdout"], command
        assert "meta.json" not in found["stdout"], command
        assert '"owner"' not in found["stdout"], command


# 2. Writing ------------------------------------------------------------------------------------


async def test_system_dirs_are_read_only_and_home_and_tmp_land_in_the_session(client: Client, state_dir: Path) -> None:
    token = secrets.token_hex(6)
    session_id = await new_session(client)
    probes = {
        f"touch /usr/agentbay-probe-{token}": f"/usr/agentbay-probe-{token}",
        f"echo x > /etc/agentbay-probe-{token}": f"/etc/agentbay-probe-{token}",
        f"mkdir /usr/lib/agentbay-probe-{token}": f"/usr/lib/agentbay-probe-{token}",
        f"echo x >> /etc/passwd && grep -c x /etc/passwd # {token}": None,
    }
    for command, host_path in probes.items():
        result = await run(client, session_id, command)
        assert result["exit_code"] != 0, f"{command!r} succeeded: {result}"
        if host_path is not None:
            assert not on_host(host_path), f"{command!r} reached the host"
    # Writes to the sandbox's own root must at least never reach the host.
    await run(client, session_id, f"touch /agentbay-probe-{token}; mkdir /opt/agentbay-probe-{token}; true")
    assert not on_host(f"/agentbay-probe-{token}")
    assert not on_host(f"/opt/agentbay-probe-{token}")

    wrote = await run(
        client,
        session_id,
        f"echo home-{token} > /home/user/h.txt && echo rel-{token} > rel.txt && mkdir -p deep/er "
        f"&& echo tmp-{token} > /tmp/t.txt && echo ok",
    )
    assert wrote["exit_code"] == 0, wrote
    session = state_dir / "sessions" / session_id
    assert (session / "home" / "h.txt").read_text() == f"home-{token}\n"
    assert (session / "home" / "rel.txt").read_text() == f"rel-{token}\n"
    assert (session / "home" / "deep" / "er").is_dir()
    assert (session / "tmp" / "t.txt").read_text() == f"tmp-{token}\n"


async def test_writes_outside_home_and_tmp_fail(state_dir: Path) -> None:
    token = secrets.token_hex(6)
    async with serve(state_dir) as client:
        session_id = await new_session(client)
        for command in (f"touch /agentbay-probe-{token}", f"mkdir /opt/agentbay-probe-{token}", "echo x > /x"):
            result = await run(client, session_id, command)
            assert result["exit_code"] != 0, f"{command!r} succeeded inside the sandbox"


# 3. Other sessions ----------------------------------------------------------------------------------


async def test_other_sessions_files_and_processes_are_invisible_and_unkillable(state_dir: Path) -> None:
    secret, name, mark = secrets.token_hex(16), f"secret-{secrets.token_hex(6)}.txt", nonce()
    async with serve(state_dir) as client:
        a, b = await new_session(client), await new_session(client)
        assert (await run(client, a, f"echo {secret} > {name}"))["exit_code"] == 0
        started = await call(client, "start_process", session_id=a, command=f"sleep 300.{mark}")
        assert await eventually(lambda: marked(state_dir, mark), timeout=5)
        victims = marked(state_dir, mark)

        found = await run(client, b, f"find / -name {name} 2>/dev/null; grep -rs {secret} /home /tmp")
        assert name not in found["stdout"], found
        assert secret not in found["stdout"], found
        ps = await run(client, b, "ps aux; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done")
        assert mark not in ps["stdout"], ps["stdout"]
        listing = (await run(client, b, "ls /proc"))["stdout"].split()
        assert not {str(pid) for pid in victims} & set(listing)
        assert len([entry for entry in listing if entry.isdigit()]) < 10, listing  # only B's own handful

        await run(client, b, "kill -9 -1; pkill sleep; pkill -9 -f 300; true")
        await anyio.sleep(0.3)
        still = marked(state_dir, mark)
        assert victims <= still, "session B killed a process of session A"
        status = await call(client, "wait_process", session_id=a, process_id=started["process_id"], timeout_ms=0)
        assert status["running"] is True
        assert (await run(client, a, f"cat {name}"))["stdout"] == f"{secret}\n"


# 4. Network ------------------------------------------------------------------------------------------


async def test_no_network_by_default_but_network_true_reaches_the_host(state_dir: Path) -> None:
    with tcp_listener() as (port, received):
        async with serve(state_dir, network="on-request") as client:
            offline = await new_session(client)
            token = secrets.token_hex(8)
            attempt = await run(client, offline, connect_probe(port, token))
            assert attempt["exit_code"] != 0, attempt
            assert "connected" not in attempt["stdout"]
            devices = (await run(client, offline, "cat /proc/net/dev"))["stdout"].splitlines()[2:]
            assert [line.split(":")[0].strip() for line in devices] == ["lo"]
            await anyio.sleep(0.3)
            assert received == [], "a session without network reached the host"

            online = await new_session(client, network=True)
            assert (await call(client, "get_session", session_id=online))["network"] is True
            other = secrets.token_hex(8)
            reached = await run(client, online, connect_probe(port, other))
            assert reached["exit_code"] == 0, reached
            assert reached["stdout"] == "connected\n"
            assert await eventually(lambda: other.encode() in received, timeout=5), received
            assert token.encode() not in b"".join(received)


async def test_network_off_refuses_network_sessions(state_dir: Path) -> None:
    async with serve(state_dir, network="off") as client:
        message = await call_error(client, "create_session", network=True)
        assert "network=off" in message, message
        assert session_dirs(state_dir) == []
        session_id = await new_session(client)
        assert (await call(client, "get_session", session_id=session_id))["network"] is False


#: Run inside a network session: drive the host's agentbay-mcp HTTP endpoint like any MCP client
#: (sessionless era: no authentication, so it is the same `anonymous` principal as the real client).
HTTP_ATTACK = """
import json, sys, urllib.request
def call(name, args):
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    params = {"name": name, "arguments": args, "_meta": meta}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": name}
    request = urllib.request.Request(sys.argv[1], data=json.dumps(body).encode(), headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())["result"]["structuredContent"]
for session in call("list_sessions", {"max_results": 100})["sessions"]:
    ran = call("execute_command", {"session_id": session["session_id"], "command": "cat secret.txt"})
    print(session["session_id"], ran["stdout"])
"""


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="SECURITY (high; network is now off unless the operator allows it): network=true shares the "
    "host's network namespace (bwrap --share-net), so a "
    "sandboxed command reaches every loopback service of the host, including agentbay-mcp's own "
    "unauthenticated HTTP endpoint: as the shared 'anonymous' principal it lists the other sessions and "
    "runs commands in them (here: reads a file of a session created WITHOUT network). Fix: give network "
    "sessions their own netns (slirp4netns/pasta without host loopback) or block 127.0.0.0/8 and ::1 for the "
    "sandbox uid; and authenticate the HTTP endpoint (a per-server token).",
)
async def test_a_network_session_cannot_use_the_servers_http_endpoint(state_dir: Path) -> None:
    server = HttpServer(state_dir, "--network", "on-request")
    try:
        with unwrapped():
            async with Client(server.url) as client:  # the sessionless (2026-07-28) era
                victim = await new_session(client)
                secret = secrets.token_hex(16)
                assert (await run(client, victim, f"echo {secret} > secret.txt"))["exit_code"] == 0
                online = await new_session(client, network=True)
                attack = await run(client, online, f"{python(HTTP_ATTACK)} {server.url}")
                assert secret not in attack["stdout"], f"session {online} read session {victim}: {attack['stdout']}"
    finally:
        server.stop()


# 5. kill -9 -1 -------------------------------------------------------------------------------------


async def test_kill_everything_inside_a_session_hurts_nothing_outside_it(state_dir: Path) -> None:
    # A host process of the very uid the sandboxes run as: only the pid namespace protects it.
    host_sleeper = start_host_sleeper()
    mark = nonce()
    try:
        async with serve(state_dir) as client:
            a, b = await new_session(client), await new_session(client)
            neighbour = await call(client, "start_process", session_id=b, command=f"sleep 300.{mark}")
            sandbox_a = {p for p, c in sandbox_processes(state_dir, a).items() if "bwrap" in c or "agent" in c}
            assert len(sandbox_a) >= 2, sandbox_a  # bwrap and the agent

            result = await run(
                client, a, "kill -9 -1; kill -KILL 1; kill -TERM 1; kill -SEGV 1; kill -USR1 1; echo survived"
            )
            assert result["stdout"] == "survived\n", result
            await anyio.sleep(0.3)

            assert host_sleeper.poll() is None, "kill -9 -1 in a sandbox killed a host process of the sandbox uid"
            status = await call(client, "wait_process", session_id=b, process_id=neighbour["process_id"], timeout_ms=0)
            assert status["running"] is True, "kill -9 -1 in session A killed a process of session B"
            assert (await run(client, b, "echo ok"))["stdout"] == "ok\n"
            assert (await run(client, a, "echo still here"))["stdout"] == "still here\n"
            # ... and A's sandbox was not silently restarted: its agent (pid 1) survived.
            assert sandbox_a <= set(sandbox_processes(state_dir, a)), "session A's sandbox was restarted"
    finally:
        host_sleeper.kill()
        host_sleeper.wait(timeout=5)


# 6. Fork bomb ----------------------------------------------------------------------------------------


async def test_fork_bomb_is_contained(state_dir: Path) -> None:
    limit = 64
    async with serve(state_dir, process_limit=limit) as client:
        a, b = await new_session(client), await new_session(client)
        pids_current = cgroup_dir("pids", state_dir, a) / "pids.current"
        assert pids_current.exists(), "this host was promised per-session cgroups"
        peak = 0
        bomb: dict[str, Any] = {}
        answered_in: list[float] = []

        def pids() -> int:
            with contextlib.suppress(OSError, ValueError):
                return int(pids_current.read_text())
            return 0

        async def detonate() -> None:
            bomb.update(await run(client, a, "bash -c ':(){ :|:& };:'; sleep 30", timeout_ms=4000))

        async def sample(stop: anyio.Event) -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, pids())
                await anyio.sleep(0.02)

        stop = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample, stop)
            async with anyio.create_task_group() as bombing:
                bombing.start_soon(detonate)
                assert await eventually(lambda: pids() >= limit // 2, timeout=5), "the bomb never went off"
                started = time.monotonic()
                with anyio.fail_after(5):
                    assert (await run(client, b, "echo ok", timeout_ms=5000))["stdout"] == "ok\n"
                answered_in.append(time.monotonic() - started)
            stop.set()

        assert bomb["timed_out"] is True or bomb["exit_code"] != 0, bomb
        assert answered_in[0] < 5
        assert 0 < peak <= limit, f"session had {peak} processes with process_limit={limit}"
        # What the bomb left is gone: only the agent (and the keeper it keeps ready for the next
        # command) remain in the session, which works again.
        assert await eventually(lambda: pids() <= 2, timeout=5), f"{pids()} processes left after the bomb"
        assert (await run(client, a, "echo recovered"))["stdout"] == "recovered\n"

        await call(client, "delete_session", session_id=a)
        assert await eventually(lambda: not sandbox_processes(state_dir, a), timeout=5), sandbox_processes(state_dir, a)
        assert (await run(client, b, "echo ok"))["stdout"] == "ok\n"


# 7. Memory -------------------------------------------------------------------------------------------


async def test_memory_hogs_fail_without_hurting_the_session_or_the_host(state_dir: Path) -> None:
    limit_mb = 256
    async with serve(state_dir, memory_limit_mb=limit_mb) as client:
        a, b = await new_session(client), await new_session(client)
        background = await call(client, "start_process", session_id=a, command="sleep 300")

        single = await run(client, a, python("b = bytearray(600 * 1024 * 1024)"))
        assert single["exit_code"] != 0, single

        # Three processes each under the per-process limit, together over the session's cgroup limit.
        hog = python("import time; b = b'x' * (200 << 20); time.sleep(6)")  # long enough to overlap under load
        many = await run(
            client,
            a,
            f'for i in 1 2 3; do {hog} & pids="$pids $!"; done; fails=0; '
            "for p in $pids; do wait $p || fails=$((fails + 1)); done; echo fails=$fails; exit $fails",
        )
        assert many["exit_code"] != 0, many
        peak_file = cgroup_dir("memory", state_dir, a) / (
            "memory.peak" if (ROOT / "cgroup.controllers").exists() else "memory.max_usage_in_bytes"
        )
        if peak_file.exists():
            assert int(peak_file.read_text()) <= limit_mb * MIB

        with anyio.fail_after(5):
            assert (await run(client, b, "echo ok"))["stdout"] == "ok\n"
        assert (await run(client, a, "echo ok"))["stdout"] == "ok\n"
        # The agent survived: it still knows the process started before the hogs (a restarted agent
        # would not). The kernel may have picked that process itself as an OOM victim (every command
        # is a candidate, only the agent is spared), so it need not still be running.
        status = await call(client, "wait_process", session_id=a, process_id=background["process_id"], timeout_ms=0)
        killed = status["signal"] == signal.SIGKILL or status["exit_code"] == 128 + signal.SIGKILL  # sleep or its sh
        assert status["running"] is True or killed, status


async def test_filling_ram_backed_tmpfs_does_not_kill_the_session(state_dir: Path) -> None:
    async with serve(state_dir, memory_limit_mb=256) as client:
        session_id = await new_session(client)
        background = await call(client, "start_process", session_id=session_id, command="sleep 300")
        filled = await run(
            client,
            session_id,
            "for i in 1 2 3 4 5 6 7; do dd if=/dev/zero of=/dev/shm/f$i bs=1M count=50 2>/dev/null || exit 1; done",
        )
        assert filled["exit_code"] != 0
        status = await call(
            client, "wait_process", session_id=session_id, process_id=background["process_id"], timeout_ms=0
        )
        assert status["running"] is True


# 8. File size -----------------------------------------------------------------------------------------


async def test_file_size_limit_stops_a_big_write(state_dir: Path) -> None:
    async with serve(state_dir, file_size_limit_mb=50) as client:
        session_id = await new_session(client)
        started = time.monotonic()
        result = await run(client, session_id, "dd if=/dev/zero of=big bs=1M count=200")
        assert result["exit_code"] != 0, result
        assert "File size limit exceeded" in result["stderr"], result
        assert time.monotonic() - started < 10
        big = state_dir / "sessions" / session_id / "home" / "big"
        assert 0 < big.stat().st_size <= 50 * MIB
        # Output bigger than the limit is capped in the spill file, not fatal to the agent.
        flood = await run(client, session_id, "head -c 70000000 /dev/zero")
        assert flood["exit_code"] == 0
        assert flood["stdout_bytes"] == 70_000_000
        with anyio.fail_after(5):
            assert (await run(client, session_id, "echo ok"))["stdout"] == "ok\n"


async def test_full_output_file_cut_by_the_size_limit_is_a_true_prefix(state_dir: Path) -> None:
    async with serve(state_dir, file_size_limit_mb=1) as client:
        session_id = await new_session(client)
        result = await run(client, session_id, "seq 1 400000")
        expected = "".join(f"{i}\n" for i in range(1, 400_001))
        assert result["exit_code"] == 0
        assert result["stdout_bytes"] == len(expected)
        assert result["full_stdout_path"] is not None
        kept = state_dir / "sessions" / session_id / "tmp" / ".agentbay" / Path(result["full_stdout_path"]).name
        content = kept.read_text()
        assert len(content) <= MIB
        assert expected.startswith(content), f"the kept file starts with {content[:40]!r}"


# 9. Identity -------------------------------------------------------------------------------------------


async def test_commands_run_as_an_unprivileged_user(client: Client, state_dir: Path) -> None:
    session_id = await new_session(client)
    who = await run(client, session_id, "id; id -u; grep CapEff /proc/self/status")
    lines = who["stdout"].splitlines()
    assert lines[0].startswith("uid=1000(user) gid=1000(user)"), lines
    assert lines[1] == "1000"
    assert lines[2].split() == ["CapEff:", "0000000000000000"]
    shadow = await run(client, session_id, "cat /etc/shadow")
    assert shadow["exit_code"] != 0
    assert "root:" not in shadow["stdout"]

    token = secrets.token_hex(6)
    assert (await run(client, session_id, f"echo x > owned-{token}; mkdir dir-{token}"))["exit_code"] == 0
    home = state_dir / "sessions" / session_id / "home"
    for path in (home / f"owned-{token}", home / f"dir-{token}"):
        assert path.stat().st_uid == SANDBOX_HOST_UID, f"{path} is owned by uid {path.stat().st_uid}"
        assert path.stat().st_gid == (UNPRIVILEGED_UID if AS_ROOT else os.getegid())


#: Run as another, unprivileged user of the host: find a session's directory in bwrap's command
#: line (world-readable in /proc), read a file of the session and plant one in its /tmp.
HOST_SPY = """
import os, sys
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\\0")
    except OSError:
        continue
    for i in range(len(argv) - 2):
        if argv[i] == "--bind" and argv[i + 2] == "/home/user" and argv[i + 1].startswith(sys.argv[1]):
            home = argv[i + 1]
            try:
                print(open(os.path.join(home, "secret.txt")).read().strip())
            except OSError as exc:
                print("read refused:", exc)
            try:
                with open(os.path.join(os.path.dirname(home), "tmp", "planted"), "w") as planted:
                    planted.write("x")
            except OSError as exc:
                print("write refused:", exc)
"""


@pytest.mark.skipif(not AS_ROOT, reason="only a root server runs sandboxes as nobody under a traversable state dir")
async def test_other_host_users_cannot_reach_a_sessions_files(state_dir: Path) -> None:
    spy_python = "/usr/bin/python3"
    if not os.access(spy_python, os.X_OK):
        pytest.skip("no system python3 for the unprivileged spy")
    secret = secrets.token_hex(16)
    async with serve(state_dir) as client:
        session_id = await new_session(client)
        assert (await run(client, session_id, f"echo {secret} > secret.txt"))["exit_code"] == 0
        spy = await anyio.to_thread.run_sync(run_as_other_user, [spy_python, "-I", "-c", HOST_SPY, str(state_dir)])
        assert secret not in spy.stdout, "another host user read a session's file"
        assert "read refused" in spy.stdout or spy.stdout == "", spy.stdout
        assert not (state_dir / "sessions" / session_id / "tmp" / "planted").exists(), "a host user wrote into /tmp"


# 10. Nothing left behind ----------------------------------------------------------------------------------


async def test_delete_session_leaves_no_process_behind(state_dir: Path) -> None:
    mark = nonce()
    async with serve(state_dir) as client:
        keep, doomed = await new_session(client), await new_session(client)
        await call(client, "start_process", session_id=doomed, command=f"sleep 300.{mark}")
        await call(client, "start_process", session_id=doomed, command="setsid sleep 301 & sleep 302")
        assert (await run(client, doomed, "echo ok"))["stdout"] == "ok\n"
        assert await eventually(lambda: len(sandbox_processes(state_dir, doomed)) >= 4, timeout=5)
        before = sandbox_processes(state_dir, doomed, (mark,))
        assert any(mark in c for c in before.values()), before
        assert any("bwrap" in c for c in before.values()), before

        await call(client, "delete_session", session_id=doomed)
        assert await eventually(lambda: not sandbox_processes(state_dir, doomed, (mark,)), timeout=5), (
            sandbox_processes(state_dir, doomed, (mark,))
        )
        for controller in ("pids", "memory"):
            assert not cgroup_dir(controller, state_dir, doomed).exists()
        assert session_dirs(state_dir) == [keep]
        assert (await run(client, keep, "echo ok"))["stdout"] == "ok\n"


async def test_disconnect_mid_command_leaves_no_process_behind(state_dir: Path) -> None:
    """A real stdio server whose client goes away while a command runs.

    Not in-process: there, this disconnect sometimes makes asyncio report "Exception in callback
    Future.set_result(None): InvalidStateError" (AgentClient.aclose closes the anyio UNIXSocketStream
    while AgentClient.serve is blocked in receive() and the agent's reply to the 'cancel' request is
    arriving), which anyio's pytest plugin turns into a failure of whatever test is running.
    """
    mark = nonce()
    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            async with Client(stdio_params(state_dir, "--log-level", "WARNING"), mode="legacy") as client:
                session_id = await new_session(client)

                async def long_command() -> None:
                    with contextlib.suppress(Exception):  # the connection goes away under it
                        await run(client, session_id, f"sleep 300.{mark}", timeout_ms=600_000)

                tg.start_soon(long_command)
                assert await eventually(lambda: marked(state_dir, mark), timeout=10)
                assert any("bwrap" in c for c in sandbox_processes(state_dir, session_id).values())
            # The client is gone (stdin closed, server stopped) while the command still runs.
            tg.cancel_scope.cancel()
    assert await eventually(lambda: not sandbox_processes(state_dir, markers=(mark,)), timeout=10), sandbox_processes(
        state_dir, markers=(mark,)
    )
    assert session_dirs(state_dir) == []


FAKE_BWRAP = """#!/bin/sh
# bwrap caught between clone() and reporting the child's pid on --info-fd: its sandbox child already
# exists and waits for a go-ahead (bwrap's child_wait_fd) that will never come.
sleep 300.{child} &
exec sleep 300.{parent}
"""


async def test_an_aborted_sandbox_launch_leaves_no_process_behind(state_dir: Path, tmp_path: Path) -> None:
    child, parent = nonce(), nonce()
    fake = tmp_path / "fake-bwrap"
    fake.write_text(FAKE_BWRAP.format(child=child, parent=parent))
    fake.chmod(0o755)

    def backend(settings: Settings) -> SandboxBackend:
        options = dataclasses.replace(sandbox_options(settings), bwrap_path=str(fake))
        return LocalBackend(settings.state_dir, sandbox=options)

    try:
        async with anyio.create_task_group() as tg:
            async with serve(state_dir, backend) as client:

                async def create() -> None:
                    with contextlib.suppress(Exception):
                        await client.call_tool("create_session", {})

                tg.start_soon(create)
                assert await eventually(lambda: marked(state_dir, child), timeout=5)
            tg.cancel_scope.cancel()  # the client disconnected in the middle of create_session
        assert await eventually(lambda: not sandbox_processes(state_dir, markers=(parent,)), timeout=5)
        assert session_dirs(state_dir) == []
        assert await eventually(lambda: not sandbox_processes(state_dir, markers=(child,)), timeout=3), (
            "the sandbox child of an aborted launch is still running"
        )
    finally:
        kill_marked(f"300.{child}", f"300.{parent}")


async def test_process_limit_holds_without_cgroups(state_dir: Path) -> None:
    limit = 64

    def backend(settings: Settings) -> SandboxBackend:
        return LocalBackend(settings.state_dir, sandbox=sandbox_options(settings), use_cgroups=False)

    async with serve(state_dir, backend, process_limit=limit) as c:
        session_id = await new_session(c)
        limits = (await run(c, session_id, "cat /proc/self/limits"))["stdout"]
        line = next(line for line in limits.splitlines() if line.startswith("Max processes"))
        soft = line.split()[2]
        assert soft != "unlimited", line
        assert int(soft) <= limit, line
