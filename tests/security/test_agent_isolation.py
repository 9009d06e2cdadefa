"""The agent is out of the commands' reach, and nothing outlives the command that started it.

Real sessions, real bubblewrap: every attack runs as a command inside a sandbox, with the agent
(pid 1, the same uid) as its target, and the agent must keep answering afterwards. Then the
process trees: whatever a command starts (setsid, double forks, daemons) dies with it; what a
background process starts lives until it is killed; a planted FIFO cannot wedge the agent.
"""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from agentbay_mcp.server.wiring import build_server, default_backend
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import call, unwrapped
from agentbay_mcp.testing.host import marked, nonce
from agentbay_mcp.testing.waiting import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


@contextlib.asynccontextmanager
async def session(state_dir: Path, **overrides: Any) -> AsyncIterator[tuple[Client, str]]:
    with unwrapped():
        server = build_server(Settings(state_dir=state_dir, **overrides), default_backend)
        async with Client(server, mode="legacy") as c:
            created = await call(c, "create_session", image_id="code_latest")
            yield c, str(created["session_id"])


async def run(client: Client, session_id: str, command: str, timeout_ms: int = 30_000) -> dict[str, Any]:
    return await call(client, "execute_command", session_id=session_id, command=command, timeout_ms=timeout_ms)


def python(code: str) -> str:
    return "python3 -c " + shlex.quote(code)


async def agent_pid_unchanged(client: Client, session_id: str, before: str) -> None:
    """The agent answers, and it is the same process (the sandbox was not restarted)."""
    after = await run(client, session_id, "cat /proc/1/stat | cut -d' ' -f22")
    assert after["stdout"] == before, "the sandbox was restarted: its agent died"


# The agent is out of reach --------------------------------------------------------------------

REACH_AGENT = r"""
import ctypes, errno, os, signal
libc = ctypes.CDLL(None, use_errno=True)
def attempt(name, fn):
    try:
        result = fn()
    except OSError as exc:
        print(name, "refused", errno.errorcode.get(exc.errno, exc.errno))
    else:
        print(name, "ALLOWED", result)
def syscall(name, number, *args):
    def call():
        if libc.syscall(number, *args) == -1:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return "ok"
    attempt(name, call)
attempt("mem", lambda: os.open("/proc/1/mem", os.O_RDONLY))
attempt("fd-dir", lambda: os.listdir("/proc/1/fd"))
for fd in range(12):
    attempt(f"fd-{fd}", lambda: os.open(f"/proc/1/fd/{fd}", os.O_RDONLY))
attempt("environ", lambda: open("/proc/1/environ", "rb").read())
attempt("maps", lambda: open("/proc/1/maps", "rb").read())
syscall("ptrace-attach", 101, 16, 1, 0, 0)   # PTRACE_ATTACH
syscall("ptrace-seize", 101, 0x4206, 1, 0, 0)  # PTRACE_SEIZE
syscall("pidfd_open", 434, 1, 0)
class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
buf = ctypes.create_string_buffer(64)
local, remote = Iovec(ctypes.cast(buf, ctypes.c_void_p), 64), Iovec(0x400000, 64)
syscall("process_vm_readv", 310, 1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
for sig in ("SIGTERM", "SIGHUP", "SIGINT", "SIGCHLD", "SIGALRM", "SIGUSR1", "SIGKILL", "SIGSTOP"):
    attempt(f"kill-{sig}", lambda: os.kill(1, getattr(signal, sig)))
syscall("tkill", 200, 1, 10)
syscall("tgkill", 234, 1, 1, 10)
print("cmdline", open("/proc/1/cmdline", "rb").read().replace(b"\0", b" ").decode())
# pidfd_send_signal also takes a /proc/<pid> directory fd, which seccomp cannot tell from others:
# it is refused outright.
proc1 = os.open("/proc/1", os.O_RDONLY | os.O_DIRECTORY)
for sig in ("SIGTERM", "SIGALRM", "SIGKILL"):
    attempt(f"pidfd_send_signal-{sig}", lambda: signal.pidfd_send_signal(proc1, getattr(signal, sig)))
print("sent", "done")
"""


async def test_commands_cannot_trace_read_or_signal_the_agent(state_dir: Path) -> None:
    async with session(state_dir) as (client, session_id):
        before = (await run(client, session_id, "cat /proc/1/stat | cut -d' ' -f22"))["stdout"]
        ran = await run(client, session_id, python(REACH_AGENT))
        lines = dict(line.split(" ", 1) for line in ran["stdout"].splitlines())
        allowed = {name: result for name, result in lines.items() if result.startswith("ALLOWED")}
        assert allowed == {}, f"a command reached the agent: {allowed}\n{ran['stderr']}"
        # Signals to pid 1 are refused outright (seccomp), not merely dropped by the kernel.
        for sig in ("SIGTERM", "SIGALRM", "SIGKILL", "SIGSTOP"):
            assert lines[f"kill-{sig}"] == "refused EPERM", lines
        assert lines["pidfd_open"] == "refused EPERM"
        # Nothing names the agent's socket: no fd number, no config on its command line.
        assert lines["cmdline"].split() == ["/usr/bin/python3", "-I", "-S", "/opt/agentbay/sandbox_agent.py"]
        assert lines["sent"] == "done"
        assert lines["pidfd_send_signal-SIGALRM"] == "refused EPERM"
        await agent_pid_unchanged(client, session_id, before)
        # A command in flight while the agent was being signalled completes normally.
        slow = await run(client, session_id, "sleep 0.5; echo finished")
        assert slow["stdout"] == "finished\n"


async def test_a_shell_kill_of_pid_1_fails_and_the_agent_lives(state_dir: Path) -> None:
    async with session(state_dir) as (client, session_id):
        before = (await run(client, session_id, "cat /proc/1/stat | cut -d' ' -f22"))["stdout"]
        ran = await run(client, session_id, "kill -TERM 1; echo term=$?; kill -STOP 1; echo stop=$?")
        assert "term=1" in ran["stdout"], ran
        assert "stop=1" in ran["stdout"], ran
        assert "Operation not permitted" in ran["stderr"]
        await agent_pid_unchanged(client, session_id, before)


async def test_nested_user_namespaces_are_refused(state_dir: Path) -> None:
    async with session(state_dir) as (client, session_id):
        ran = await run(client, session_id, "unshare -Ur id -u; echo status=$?")
        assert "status=0" not in ran["stdout"], ran
        assert ran["stdout"].strip().splitlines()[-1] != "0"
        code = "import os\ntry:\n os.unshare(os.CLONE_NEWUSER)\n print('ALLOWED')\nexcept OSError as e:\n print(e)"
        assert "ALLOWED" not in (await run(client, session_id, python(code)))["stdout"]


async def test_other_processes_of_the_session_stay_traceable(state_dir: Path) -> None:
    # Only the agent (and its keepers) are closed: a session's own programs can debug each other.
    code = (
        "import ctypes, os, time\nlibc = ctypes.CDLL(None, use_errno=True)\npid = os.fork()\n"
        "if pid == 0:\n    time.sleep(5)\n    os._exit(0)\n"
        "print(libc.syscall(101, 0x4206, pid, 0, 0), len(os.listdir(f'/proc/{pid}/fd')) > 0)\n"
        "os.kill(pid, 9)"
    )
    async with session(state_dir) as (client, session_id):
        assert (await run(client, session_id, python(code)))["stdout"] == "0 True\n"


# Nothing outlives its command -------------------------------------------------------------------

ESCAPES = {
    "setsid": "setsid sleep 300.{m} >/dev/null 2>&1 &",
    "setsid -f": "setsid -f sleep 300.{m} >/dev/null 2>&1",
    "double fork": "(sh -c 'sleep 300.{m} >/dev/null 2>&1 &' &)",
    "daemon": python(
        "import os, time\nif os.fork(): os._exit(0)\nos.setsid()\nif os.fork(): os._exit(0)\n"
        "os.closerange(0, 3)\nos.execvp('sleep', ['sleep', '300.{m}'])"
    ),
}


@pytest.mark.parametrize("how", sorted(ESCAPES))
async def test_processes_leaving_the_commands_group_are_killed_when_it_exits(state_dir: Path, how: str) -> None:
    mark = nonce()
    async with session(state_dir) as (client, session_id):
        ran = await run(client, session_id, ESCAPES[how].replace("{m}", mark) + "\nsleep 0.3; echo done")
        assert ran["stdout"] == "done\n", ran
        assert (await call(client, "list_processes", session_id=session_id))["processes"] == []
        assert await eventually(lambda: not marked(state_dir, mark), timeout=3), (
            f"a process the command left behind ({how}) is still running"
        )
        assert "300." + mark not in (await run(client, session_id, "ps -eo args"))["stdout"]


async def test_a_background_process_tree_lives_until_it_is_killed(state_dir: Path) -> None:
    mark = nonce()
    async with session(state_dir) as (client, session_id):
        started = await call(
            client,
            "start_process",
            session_id=session_id,
            command=f"setsid sleep 300.{mark} >/dev/null 2>&1 & echo started",
        )
        process_id = started["process_id"]
        waited = await call(client, "wait_process", session_id=session_id, process_id=process_id, timeout_ms=10_000)
        assert waited["running"] is False
        assert waited["exit_code"] == 0
        # The leader is gone; what it started in the background keeps running (a dev server, say) ...
        await run(client, session_id, "true")  # another command ending kills nothing of it
        assert marked(state_dir, mark), "the background process's detached child was killed"
        # ... until the process is killed: then the whole tree goes, setsid or not.
        await call(client, "kill_process", session_id=session_id, process_id=process_id, signal="TERM")
        assert await eventually(lambda: not marked(state_dir, mark), timeout=5)


async def test_a_command_that_kills_its_keeper_still_reports_and_leaves_nothing(state_dir: Path) -> None:
    mark = nonce()
    async with session(state_dir) as (client, session_id):
        before = (await run(client, session_id, "cat /proc/1/stat | cut -d' ' -f22"))["stdout"]
        ran = await run(
            client,
            session_id,
            f"setsid sleep 300.{mark} >/dev/null 2>&1 & sleep 0.2; kill -9 $PPID; sleep 0.2; echo survived; exit 4",
        )
        assert ran["stdout"] == "survived\n", ran
        assert ran["exit_code"] == 4, ran
        assert await eventually(lambda: not marked(state_dir, mark), timeout=3)
        await agent_pid_unchanged(client, session_id, before)


async def test_a_command_that_stops_its_keeper_ends_and_leaves_nothing(state_dir: Path) -> None:
    mark = nonce()
    async with session(state_dir) as (client, session_id):
        result = await client.call_tool(
            "execute_command",
            {"session_id": session_id, "command": f"kill -STOP $PPID; sleep 300.{mark}", "timeout_ms": 1000},
        )
        # Depending on when the keeper stops, the command times out or cannot be started: either way
        # it ends, and nothing of it stays behind.
        if not result.is_error:
            assert (result.structured_content or {})["timed_out"] is True, result
        assert await eventually(lambda: not marked(state_dir, mark), timeout=15)
        assert (await run(client, session_id, "echo ok"))["stdout"] == "ok\n"


# The agent never blocks on a session file ------------------------------------------------------


async def test_a_fifo_at_the_next_output_file_does_not_wedge_the_agent(state_dir: Path) -> None:
    async with session(state_dir) as (client, session_id):
        started = await call(client, "start_process", session_id=session_id, command="true")
        generation, number = started["process_id"].rsplit("-", 1)
        plant = " ".join(
            f"/tmp/.agentbay/{generation}-{int(number) + n}.{stream}"
            for n in range(1, 6)
            for stream in ("stdout", "stderr")
        )
        planted = await run(client, session_id, f"mkdir -p /tmp/.agentbay && mkfifo {plant} && echo planted")
        assert planted["stdout"] == "planted\n", planted
        with anyio.fail_after(20):
            big = await run(client, session_id, "head -c 300000 /dev/zero | tr '\\0' x; head -c 300000 /dev/zero >&2")
        assert big["stdout_bytes"] == 300000
        assert big["stderr_bytes"] == 300000
        path = big["full_stdout_path"]
        assert path, big
        kind = await run(client, session_id, f"stat -c %F {path}; wc -c < {path}")
        assert kind["stdout"] == "regular file\n300000\n", kind


async def test_a_symlink_at_the_next_output_file_is_not_followed(state_dir: Path) -> None:
    async with session(state_dir) as (client, session_id):
        started = await call(client, "start_process", session_id=session_id, command="true")
        generation, number = started["process_id"].rsplit("-", 1)
        links = " ".join(
            f"&& ln -s /home/user/victim /tmp/.agentbay/{generation}-{int(number) + n}.stdout" for n in range(1, 4)
        )
        await run(client, session_id, f"echo precious > /home/user/victim && mkdir -p /tmp/.agentbay {links}")
        big = await run(client, session_id, "head -c 200000 /dev/zero | tr '\\0' y")
        assert big["stdout_bytes"] == 200000
        assert (await run(client, session_id, "cat /home/user/victim"))["stdout"] == "precious\n"


async def test_a_fifo_among_desktop_entries_does_not_wedge_the_agent(state_dir: Path) -> None:
    with unwrapped():
        async with Client(build_server(Settings(state_dir=state_dir), default_backend), mode="legacy") as client:
            session_id = (await call(client, "create_session", image_id="linux_latest"))["session_id"]
            apps = "/home/user/.local/share/applications"
            await run(client, session_id, f"mkdir -p {apps} && mkfifo {apps}/trap.desktop")
            with anyio.fail_after(20):
                listed = await call(client, "get_installed_apps", session_id=session_id)
            assert all(app.get("desktop_file") != f"{apps}/trap.desktop" for app in listed["apps"])
            assert (await run(client, session_id, "echo ok"))["stdout"] == "ok\n"


SPAM_SIGALRM = r"""
import os, signal, time
proc1 = os.open("/proc/1", os.O_RDONLY | os.O_DIRECTORY)
refused = 0
end = time.monotonic() + 4
while time.monotonic() < end:
    try:
        signal.pidfd_send_signal(proc1, signal.SIGALRM)
    except PermissionError:
        refused += 1
print("refused", refused)
"""


async def test_sigalrm_from_the_session_does_not_break_desktop_calls(state_dir: Path) -> None:
    # The desktop's X deadline is a SIGALRM timer: the session cannot send the agent one.
    with unwrapped():
        async with Client(build_server(Settings(state_dir=state_dir), default_backend), mode="legacy") as client:
            session_id = (await call(client, "create_session", image_id="linux_latest"))["session_id"]
            await call(client, "list_windows", session_id=session_id)
            spam = await call(client, "start_process", session_id=session_id, command=python(SPAM_SIGALRM))
            await anyio.sleep(0.2)
            for _ in range(10):
                await call(client, "list_windows", session_id=session_id)
                await call(client, "take_screenshot", session_id=session_id, format="jpeg", max_width=200)
            done = await call(
                client, "wait_process", session_id=session_id, process_id=spam["process_id"], timeout_ms=20_000
            )
            assert done["exit_code"] == 0
            out = await call(client, "read_process_output", session_id=session_id, process_id=spam["process_id"])
            assert out["stdout"].startswith("refused "), out
            assert int(out["stdout"].split()[1]) > 0
