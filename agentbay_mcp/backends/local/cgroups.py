"""Per-session cgroups (process count and memory), where the host lets us create them.

rlimits are applied in every sandbox regardless; cgroups add limits that rlimits cannot express per
session: RLIMIT_NPROC counts every process of the host user, while a cgroup's pids.max counts only
the session's. Supported: cgroup v2 with the pids and memory controllers delegated to us, or the v1
`pids` and `memory` hierarchies (as on this project's CI machines). Anything else: no cgroups,
reported by `agentbay-mcp doctor`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
GROUP = "agentbay-mcp"


@dataclass(frozen=True)
class CgroupLimits:
    """Limits one session's cgroup enforces."""

    max_processes: int
    max_memory_bytes: int


class Cgroups:
    """Creates, fills and removes the cgroups of sessions."""

    def __init__(self, dirs: dict[str, Path], version: int, scope: str = "") -> None:
        self._dirs = dirs  # controller -> parent directory of session groups
        self.version = version
        # Groups are named <scope>-<session id>: servers on other state dirs share the hierarchy, and
        # reaping must never touch their groups.
        self.scope = scope

    def scoped(self, scope: str) -> Cgroups:
        """The same cgroups, for the sessions of one state dir."""
        return Cgroups(self._dirs, self.version, scope)

    @classmethod
    def detect_for(cls, state_root: Path) -> Cgroups | None:
        """Usable cgroups, scoped to the sessions of the state dir `state_root`, or None."""
        found = cls.detect()
        return None if found is None else found.scoped(hashlib.sha256(str(state_root).encode()).hexdigest()[:10])

    @classmethod
    def detect(cls, root: Path = ROOT) -> Cgroups | None:
        """Usable cgroups on this host, or None."""
        if (root / "cgroup.controllers").exists():  # unified (v2) hierarchy
            controllers = (root / "cgroup.controllers").read_text().split()
            parent = root / GROUP
            if {"pids", "memory"} <= set(controllers) and cls._writable(parent, enable=True):
                return cls({"pids": parent, "memory": parent}, 2)
            return None
        dirs = {name: root / name / GROUP for name in ("pids", "memory")}
        if all((root / name).is_dir() for name in dirs) and all(cls._writable(d) for d in dirs.values()):
            return cls(dirs, 1)
        return None

    @staticmethod
    def _writable(parent: Path, *, enable: bool = False) -> bool:
        try:
            parent.mkdir(exist_ok=True)
            if enable:
                (parent / "cgroup.subtree_control").write_text("+pids +memory")
            probe = parent / f"probe-{os.getpid()}"
            probe.mkdir(exist_ok=True)
            probe.rmdir()
        except OSError:
            return False
        return True

    def describe(self) -> str:
        """One line for doctor."""
        where = ", ".join(sorted({str(p) for p in self._dirs.values()}))
        return f"cgroup v{self.version} ({where})"

    def _name(self, session_id: str) -> str:
        return f"{self.scope}-{session_id}" if self.scope else session_id

    def _groups(self, session_id: str) -> list[Path]:
        return sorted({parent / self._name(session_id) for parent in self._dirs.values()})

    def create(self, session_id: str, limits: CgroupLimits) -> None:
        """Make the session's groups with their limits."""
        for path in self._groups(session_id):
            path.mkdir(exist_ok=True)
        pids = self._dirs["pids"] / self._name(session_id)
        memory = self._dirs["memory"] / self._name(session_id)
        (pids / "pids.max").write_text(str(limits.max_processes))
        if self.version == 2:
            (memory / "memory.max").write_text(str(limits.max_memory_bytes))
            with contextlib.suppress(OSError):
                (memory / "memory.swap.max").write_text("0")
        else:
            (memory / "memory.limit_in_bytes").write_text(str(limits.max_memory_bytes))

    def add(self, session_id: str, pid: int) -> None:
        """Move `pid` (before it forks anything) into the session's groups."""
        for path in self._groups(session_id):
            (path / "cgroup.procs").write_text(str(pid))

    def remove(self, session_id: str, timeout: float = 2.0) -> None:
        """Kill whatever is left in the session's groups and delete them."""
        for path in self._groups(session_id):
            if not path.exists():
                continue
            deadline = time.monotonic() + timeout
            while True:
                if self.version == 2 and (path / "cgroup.kill").exists():
                    with contextlib.suppress(OSError):
                        (path / "cgroup.kill").write_text("1")
                pids = _read_pids(path)
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                try:
                    path.rmdir()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        break
                    time.sleep(0.01)

    def leftover_sessions(self) -> set[str]:
        """Ids of this scope's sessions that have a group (for reaping)."""
        prefix = f"{self.scope}-" if self.scope else ""
        found: set[str] = set()
        for parent in self._dirs.values():
            with contextlib.suppress(OSError):
                found |= {
                    p.name.removeprefix(prefix)
                    for p in parent.iterdir()
                    if p.is_dir() and p.name.startswith(f"{prefix}session-")
                }
        return found


def _read_pids(path: Path) -> list[int]:
    try:
        return [int(line) for line in (path / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []
