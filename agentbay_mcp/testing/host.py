"""Processes on this host that tests look for: marked commands, a session's sandbox, a pid namespace.

Other tests run sandboxes on this machine at the same time, so every search is tied to a marker, a
state dir or a namespace. Needs psutil (a dev extra).
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import psutil

from agentbay_mcp.backends.local.cgroups import GROUP
from agentbay_mcp.testing.leaks import cgroup_scope


def marked_processes(marker: str) -> list[psutil.Process]:
    """Processes on this host whose command line contains `marker` (our own test excluded)."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            if proc.pid != os.getpid() and marker in " ".join(proc.info["cmdline"] or []):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def sleeper(marker: str, *, ignore_term: bool = False) -> str:
    """A shell command sleeping 300 s in a process whose command line carries `marker`."""
    ignore = "signal.signal(signal.SIGTERM, signal.SIG_IGN); " if ignore_term else ""
    return f"python3 -c 'import signal, time; {ignore}time.sleep(300)' {marker}"


def nonce() -> str:
    """Digits that make a `sleep 300.<nonce>` command line unique on this host."""
    return str(10**8 + secrets.randbelow(9 * 10**8))


def sandbox_processes(state_dir: Path, session_id: str = "", markers: tuple[str, ...] = ()) -> dict[int, str]:
    """Live host processes of the sandboxes of `state_dir` (or of one session): bwrap (its argv
    names the session dir), everything in the session's cgroups, their descendants, and anything
    whose command line carries one of `markers`. Other tests' sandboxes are never counted."""
    where = str(state_dir / "sessions" / session_id) if session_id else str(state_dir)
    group = f"{GROUP}/{cgroup_scope(state_dir)}-{session_id}"
    found: dict[int, str] = {}
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid() or proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.cmdline())
            cgroups = Path(f"/proc/{proc.pid}/cgroup").read_text()
            if where in cmdline or group in cgroups or any(m in cmdline for m in markers):
                found[proc.pid] = cmdline[:200]
                for child in proc.children(recursive=True):
                    if child.status() != psutil.STATUS_ZOMBIE:
                        found[child.pid] = " ".join(child.cmdline())[:200]
        except (psutil.Error, OSError):
            continue
    return found


def marked(state_dir: Path, mark: str) -> set[int]:
    """Pids of processes whose own command line carries `mark`."""
    return {pid for pid, cmdline in sandbox_processes(state_dir, markers=(mark,)).items() if mark in cmdline}


def sandbox_namespace(state_dir: Path, session_id: str) -> str:
    record = json.loads((state_dir / "sessions" / session_id / "sandbox.json").read_text())
    return os.readlink(f"/proc/{record['child_pid']}/ns/pid")


def processes_in(namespace: str) -> list[str]:
    names = []
    for process in psutil.process_iter(["name"]):
        try:
            if os.readlink(f"/proc/{process.pid}/ns/pid") == namespace:
                names.append(process.info["name"])
        except OSError:
            continue
    return names
