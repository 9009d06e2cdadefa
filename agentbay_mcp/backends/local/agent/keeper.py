"""Keepers: one small process per command, so that nothing a command starts outlives it unseen.

Standard library only (see sandbox_agent.py). A command that calls setsid, double-forks or
daemonizes leaves its process group and, once its parent exits, would be re-parented to the agent
(pid 1) with nothing saying which command it came from. So the agent never starts a command
itself: it forks a keeper (a copy of itself that drops everything it holds), which marks itself a
child subreaper (PR_SET_CHILD_SUBREAPER) and starts the command. Every orphan of the command's
tree, setsid or not, is re-parented to the keeper, never further up; the keeper's subtree is exactly
what the command started. When the command exits:

- a foreground command (execute_command): the keeper kills its whole subtree, then reports;
- a background process (start_process, start_app): the keeper reports and goes on reaping; the
  tree lives until kill_process kills it (the agent signals the keeper's subtree) or the session
  ends.

The keeper tells the agent the command's pid and, later, its wait status, as JSON lines on a pipe.
If something kills a keeper, its orphans fall to the agent, which kills every child it does not
know (see Processes.sweep_orphans in process_ops.py): nothing escapes by killing its keeper.

The agent is made non-dumpable at start-up (harden()): then no process of the session may trace
it, read its memory, open its /proc fds or environment, or copy its fds with pidfd_getfd, even with
the same uid. Keepers inherit that (they are forks); commands do not (exec resets it).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import select
import signal
import socket
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type checker sees the package; the sandbox runs these files as top-level modules
    from agentbay_mcp.backends.local.agent import error_names, proc_table
    from agentbay_mcp.backends.local.agent.error_names import AgentError
else:
    import error_names
    import proc_table
    from error_names import AgentError

_PR_SET_NAME = 15
_PR_SET_DUMPABLE = 4
_PR_SET_CHILD_SUBREAPER = 36
#: How long a spawn waits for its keeper to report the command's pid.
SPAWN_TIMEOUT_SECONDS = 10.0
_KILL_ROUNDS = 200

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _prctl(option: int, value: int | bytes) -> None:
    if _libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def harden() -> None:
    """Make this process non-dumpable: out of reach of ptrace, /proc/<pid>/{mem,fd,environ}, pidfd_getfd."""
    _prctl(_PR_SET_DUMPABLE, 0)
    # Objects that exist now are never collected: keepers (forks) then do not copy every page the
    # collector would touch.
    gc.freeze()


def signal_below(root: int, sig: int, include_root: bool = False) -> int:
    """Send `sig` to every descendant of `root` (and `root`); returns how many were signalled."""
    victims = proc_table.descendants({root}) + ([root] if include_root else [])
    for pid in victims:
        try:
            os.kill(pid, sig)
        except OSError:
            pass
    return len(victims)


def kill_below(roots: set[int], include_roots: bool = False, reap: bool = False) -> None:
    """SIGKILL every descendant of `roots` (and the roots), until none is left.

    Processes that fork between a scan and the kill leave orphans that land on a subreaper in the
    set (a keeper, or the agent), so the next round finds them; the session's process limit bounds
    the rounds a fork loop can force.
    """
    for _ in range(_KILL_ROUNDS):
        victims = proc_table.descendants(roots)
        if include_roots:
            victims += [pid for pid in roots if os.path.exists(f"/proc/{pid}")]
            include_roots = False  # once: afterwards their orphans are what is left
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if reap:
            for _ in exited_children():
                pass
        time.sleep(0.001)


def exited_children() -> Iterator[tuple[int, int]]:
    """(pid, wait status) of each child that has exited, reaped now; ends when none is left waiting."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


class Spare:
    """A keeper forked in advance, waiting for its command on a socket: a Python fork costs about
    2 ms, which the agent pays while idle instead of on the way to every command."""

    def __init__(self) -> None:
        self.sock, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.pid = os.fork()
        if self.pid == 0:  # the spare: never returns
            code = 1
            try:
                self.sock.close()
                code = _wait_for_job(theirs)
            finally:
                os._exit(code)
        theirs.close()

    def close(self) -> None:
        """Tell it to exit (it sees the socket close)."""
        self.sock.close()


def _close_fds_except(keep: set[int]) -> None:
    """Close every fd above stderr but `keep`: whatever the agent holds (its control socket, the X
    connection, other commands' pipes) must not reach a keeper, let alone the command it starts."""
    for entry in os.listdir("/proc/self/fd"):
        fd = int(entry)
        if fd > 2 and fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _wait_for_job(sock: socket.socket) -> int:
    gc.disable()
    signal.set_wakeup_fd(-1)
    try:
        _prctl(_PR_SET_NAME, b"agentbay-keeper")
    except OSError:
        pass
    _close_fds_except({sock.fileno()})  # nothing of the agent's: only our socket
    message, fds, _, _ = socket.recv_fds(sock, 1 << 20, 4)
    sock.close()
    if not message or len(fds) < 3:
        return 0
    job = json.loads(message)
    status_w, stdout_fd, stderr_fd = fds[:3]
    stdin_fd = fds[3] if len(fds) > 3 else None
    for fd in fds:
        os.set_inheritable(fd, False)
    return _keeper(
        str(job["command"]),
        str(job["cwd"]),
        {str(k): str(v) for k, v in job["env"].items()},
        stdin_fd,
        stdout_fd,
        stderr_fd,
        bool(job["foreground"]),
        int(job["cpu_seconds"]),
        status_w,
        set(fds),
    )


def spawn(
    command: str,
    *,
    cwd: str,
    env: dict[str, str],
    stdin_fd: int | None,
    stdout_fd: int,
    stderr_fd: int,
    foreground: bool,
    cpu_seconds: int,
    spare: Spare | None = None,
) -> tuple[int, int, int, bytes]:
    """Fork a keeper that runs `sh -c command`; returns (keeper pid, command pid, status fd, and
    what the keeper already reported: a quick command's exit may come with its start).

    The caller keeps its ends of the command's pipes and closes the child ends after this returns.
    Raises AgentError (spawn_failed) if the command could not be started (bad cwd, ...).
    """
    status_r, status_w = os.pipe2(os.O_CLOEXEC)
    keep = {status_w, stdout_fd, stderr_fd} | ({stdin_fd} if stdin_fd is not None else set())
    if spare is not None:  # forked in advance: the job and its fds go over its socket
        keeper_pid = spare.pid
        job = {"command": command, "cwd": cwd, "env": env, "foreground": foreground, "cpu_seconds": cpu_seconds}
        fds = [status_w, stdout_fd, stderr_fd] + ([stdin_fd] if stdin_fd is not None else [])
        try:
            socket.send_fds(spare.sock, [json.dumps(job).encode()], fds)
        except OSError:
            os.close(status_r)
            os.close(status_w)
            raise AgentError(error_names.SPAWN_FAILED, "the spare keeper is gone; retry") from None
        finally:
            spare.sock.close()
    else:
        keeper_pid = os.fork()
        if keeper_pid == 0:  # the keeper: never returns
            code = 1
            try:
                code = _keeper(
                    command, cwd, env, stdin_fd, stdout_fd, stderr_fd, foreground, cpu_seconds, status_w, keep
                )
            finally:
                os._exit(code)
    os.close(status_w)
    try:
        messages, rest = _read_start(status_r, SPAWN_TIMEOUT_SECONDS)
    except BaseException:
        os.close(status_r)
        # E.g. the keeper was stopped before it reported: take it and whatever it started down (the
        # agent reaps the keeper; nothing may stay behind unattributed).
        kill_below({keeper_pid}, include_roots=True)
        raise
    pid = messages[0].get("pid") if messages else None
    error = next((m["error"] for m in messages if "error" in m), None)
    if isinstance(pid, int) and error is None:
        # Started, or the keeper was killed once the command could run (the agent adopts it then).
        os.set_blocking(status_r, False)
        return keeper_pid, pid, status_r, rest
    os.close(status_r)
    kill_below({keeper_pid}, include_roots=True)
    if isinstance(error, list) and len(error) == 2:
        raise AgentError(str(error[0]), str(error[1]))
    raise AgentError(error_names.SPAWN_FAILED, "the command could not be started (its keeper died first)")


def _read_start(fd: int, timeout: float) -> tuple[list[dict[str, object]], bytes]:
    """Read the keeper's reports up to {"started"} or {"error"} (or its end); returns them and the rest."""
    data = b""
    messages: list[dict[str, object]] = []
    deadline = time.monotonic() + timeout
    while True:
        while b"\n" in data:
            line, data = data.split(b"\n", 1)
            message = json.loads(line)
            if isinstance(message, dict):
                messages.append(message)
                if "started" in message or "error" in message:
                    return messages, data
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise AgentError(error_names.SPAWN_FAILED, "the command's keeper did not start it in time")
        chunk = os.read(fd, 4096)
        if not chunk:
            return messages, data
        data += chunk


def _send(fd: int, message: dict[str, object]) -> None:
    data = json.dumps(message).encode() + b"\n"  # small: one atomic pipe write
    try:
        os.write(fd, data)
    except OSError:
        pass


#: How a command starts: wait until the keeper has told the agent our pid (fd 9 is the go pipe; a
#: keeper that died first closes it unsent), then become `sh -c command` (argv and pid unchanged).
_WRAPPER = 'IFS= read -r _ <&9 || exit 137; exec 9<&-; exec /bin/sh -c "$1"'
#: Ignored by Python, and an ignored signal stays ignored across exec: commands get the defaults.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


def _refuse(status_w: int, message: str) -> int:
    _send(status_w, {"error": [error_names.SPAWN_FAILED, message]})
    return 1


def _keeper(
    command: str,
    cwd: str,
    env: dict[str, str],
    stdin_fd: int | None,
    stdout_fd: int,
    stderr_fd: int,
    foreground: bool,
    cpu_seconds: int,
    status_w: int,
    keep: set[int],
) -> int:
    gc.disable()
    signal.set_wakeup_fd(-1)
    _close_fds_except(keep)
    os.setsid()
    _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    try:
        _prctl(_PR_SET_NAME, b"agentbay-keeper")
    except OSError:
        pass
    if stdin_fd is None:
        stdin_fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:  # the keeper's own directory is the command's (posix_spawn has no chdir)
        os.chdir(cwd)
    except FileNotFoundError:
        return _refuse(status_w, f"working directory {cwd!r} does not exist")
    except NotADirectoryError:
        return _refuse(status_w, f"working directory {cwd!r} is not a directory")
    except PermissionError:
        return _refuse(status_w, f"working directory {cwd!r} is not accessible")
    go_r, go_w = os.pipe2(os.O_CLOEXEC)
    try:
        # posix_spawn (vfork inside): a Python fork here cost 1.8 ms per command.
        child = os.posix_spawn(
            "/bin/sh",
            ["/bin/sh", "-c", _WRAPPER, "/bin/sh", command],
            env,
            file_actions=[
                (os.POSIX_SPAWN_DUP2, stdin_fd, 0),
                (os.POSIX_SPAWN_DUP2, stdout_fd, 1),
                (os.POSIX_SPAWN_DUP2, stderr_fd, 2),
                (os.POSIX_SPAWN_DUP2, go_r, 9),
            ],
            setsid=True,
            setsigdef=_DEFAULT_SIGNALS,
        )
    except OSError as exc:
        return _refuse(status_w, f"could not start the command: {exc.strerror or exc}")
    # Set while it waits for go: nothing of the command runs before these hold.
    try:  # if the session runs out of memory, the kernel kills commands, never the agent
        with open(f"/proc/{child}/oom_score_adj", "w") as handle:
            handle.write("1000")
    except OSError:
        pass
    if cpu_seconds:
        import resource  # noqa: PLC0415 - only keepers need it

        try:
            resource.prlimit(child, resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        except OSError:
            pass
    _send(status_w, {"pid": child})  # before the command can run (it waits for go): it cannot stop us first
    for fd in (go_r, stdin_fd, stdout_fd, stderr_fd):
        os.close(fd)  # the command has them; holding its pipes would keep its output open forever
    os.write(go_w, b"g\n")
    os.close(go_w)
    _send(status_w, {"started": True})
    status = None
    while status is None:
        try:
            pid, raw = os.waitpid(-1, 0)
        except ChildProcessError:  # cannot happen while the command lives; be safe
            break
        if pid == child:
            status = raw
    if foreground and proc_table.children_of_self():  # whatever it left running, in its group or not, goes with it
        kill_below({os.getpid()}, reap=True)
    _send(status_w, {"exit": status if status is not None else 137 << 8})
    while True:  # background: reap the tree until it is gone
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return 0
