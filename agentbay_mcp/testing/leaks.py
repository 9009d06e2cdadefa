"""What a state dir's sessions can leave on the host, counted from the host's own records.

Other tests (and other servers) run sandboxes on this machine at the same time, so everything here
is tied to one state dir: session dirs under it, processes whose mount table names it (every
sandboxed process bind-mounts the session's home and tmp from it, whatever its pid namespace, and
Xvfb is one of them), cgroups of its scope, mounts under it in /proc/self/mountinfo, and loop devices
whose backing file is under it (per-session disk images, once sessions have them).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

CGROUP_PARENTS = (
    Path("/sys/fs/cgroup/pids/agentbay-mcp"),
    Path("/sys/fs/cgroup/memory/agentbay-mcp"),
    Path("/sys/fs/cgroup/agentbay-mcp"),  # cgroup v2
)


def _unescape(field_: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal."""
    for code, char in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
        field_ = field_.replace(code, char)
    return field_


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root + "/")


@dataclass
class Leaks:
    """Everything found; empty lists mean nothing leaked."""

    session_dirs: list[str] = field(default_factory=list)
    processes: list[str] = field(default_factory=list)  # "pid name"
    x_servers: list[str] = field(default_factory=list)
    cgroups: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    loop_devices: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(
            len(v)
            for v in (
                self.session_dirs,
                self.processes,
                self.x_servers,
                self.cgroups,
                self.mounts,
                self.loop_devices,
            )
        )

    def summary(self) -> str:
        return (
            f"{len(self.session_dirs)} session dirs, {len(self.processes)} processes "
            f"({len(self.x_servers)} X servers), {len(self.cgroups)} cgroups, {len(self.mounts)} mounts, "
            f"{len(self.loop_devices)} loop devices"
        )


def _in_filesystem(path: str) -> str:
    """`path` as its filesystem knows it (mountinfo's root field), e.g. without a tmpfs's mount point."""
    best = ("", "/")
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields = line.split()
            fs_root, mount_point = _unescape(fields[3]), _unescape(fields[4])
            if (_under(path, mount_point) or mount_point == "/") and len(mount_point) >= len(best[0]):
                best = (mount_point, fs_root)
    mount_point, fs_root = best
    rest = path[len(mount_point) :] if mount_point != "/" else path
    return (fs_root.rstrip("/") + "/" + rest.lstrip("/")).rstrip("/") or "/"


def _sandbox_processes(root: str) -> list[tuple[int, str]]:
    """Processes (other than this one) whose mount table or command line names the state dir."""
    in_fs = _in_filesystem(root)
    found: list[tuple[int, str]] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        base = Path("/proc") / entry
        try:
            cmdline = (base / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            mountinfo = (base / "mountinfo").read_text(errors="replace")
            name = (base / "comm").read_text().strip()
        except OSError:
            continue  # gone, or a kernel thread
        # Our own mount namespace lists the state dir's mounts too (a test's bind mount): only foreign ones count.
        bound = any(_under(_unescape(line.split()[3]), in_fs) for line in mountinfo.splitlines())
        if root in cmdline or (bound and _foreign_mount_ns(base)):
            found.append((int(entry), name))
    return found


def _foreign_mount_ns(base: Path) -> bool:
    try:
        return os.readlink(base / "ns" / "mnt") != os.readlink("/proc/self/ns/mnt")
    except OSError:
        return False


def cgroup_scope(state_dir: Path) -> str:
    """The prefix the local backend gives the cgroups of a state dir's sessions."""
    return hashlib.sha256(str(state_dir).encode()).hexdigest()[:10]


def find_leaks(state_dir: Path) -> Leaks:
    """Count what the state dir's sessions left behind on this host."""
    root = str(state_dir)
    leaks = Leaks()
    sessions = state_dir / "sessions"
    with contextlib.suppress(FileNotFoundError):
        leaks.session_dirs = sorted(p.name for p in sessions.iterdir() if p.name.startswith("session-"))
    for pid, name in _sandbox_processes(root):
        leaks.processes.append(f"{pid} {name}")
        if name.startswith("Xvfb"):
            leaks.x_servers.append(f"{pid} {name}")
    prefix = cgroup_scope(state_dir) + "-"
    for parent in CGROUP_PARENTS:
        with contextlib.suppress(OSError):
            leaks.cgroups += sorted(str(p) for p in parent.iterdir() if p.name.startswith(prefix))
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            mount_point = _unescape(line.split()[4])
            if _under(mount_point, root):
                leaks.mounts.append(mount_point)
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        with contextlib.suppress(OSError):
            target = backing.read_text().strip().removesuffix(" (deleted)")
            if _under(target, root):
                leaks.loop_devices.append(f"{backing.parent.parent.name} {target}")
    return leaks
