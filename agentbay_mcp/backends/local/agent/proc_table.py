"""The sandbox's process table, read from /proc: the one place the agent parses /proc/<pid>/stat.

Standard library only (see sandbox_agent.py). /proc here is the sandbox's own pid namespace, so
every pid seen belongs to the session. Keepers use it to find and kill a command's whole tree
(keeper.py), the desktop to find and stop an application's (desktop_apps.py, desktop_ops.py), the
agent to tell a live process from a zombie. Zombies count as gone everywhere: they run nothing and
cannot be signalled into doing anything.
"""

from __future__ import annotations

import os

#: pid -> (process name, parent pid) of every live process.
Table = dict[int, tuple[str, int]]


def _stat_fields(pid: int) -> tuple[str, list[str]] | None:
    """(name, the fields after the name: state, ppid, ...) of a process, or None if it is gone.

    The name sits in parentheses and may itself hold spaces and parentheses: split after the last ')'.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    return raw[raw.find("(") + 1 : raw.rfind(")")], raw[raw.rfind(")") + 2 :].split()


def entry(pid: int) -> tuple[str, int] | None:
    """(name, parent pid) of a live process, or None if it is gone or a zombie."""
    found = _stat_fields(pid)
    if found is None or len(found[1]) < 2 or found[1][0] == "Z":
        return None
    return found[0], int(found[1][1])


def alive(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) process."""
    return entry(pid) is not None


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (with the pid, it names one process even across pid reuse)."""
    found = _stat_fields(pid)
    return int(found[1][19]) if found is not None and len(found[1]) > 19 else None


def table() -> Table:
    """Every live process: pid -> (name, parent pid)."""
    found: Table = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            live = entry(int(name))
            if live is not None:
                found[int(name)] = live
    return found


def descendants(roots: set[int], processes: Table | None = None) -> list[int]:
    """Every live descendant of `roots` (not the roots), parents first (breadth first, by pid)."""
    processes = table() if processes is None else processes
    children: dict[int, list[int]] = {}
    for pid, (_, parent) in processes.items():
        children.setdefault(parent, []).append(pid)
    found: list[int] = []
    todo = sorted(roots)
    while todo:
        for child in sorted(children.get(todo.pop(0), [])):
            found.append(child)
            todo.append(child)
    return found


def tree(root: int, processes: Table | None = None) -> list[int]:
    """`root` and all its descendants that are alive, parents first."""
    processes = table() if processes is None else processes
    return [root, *descendants({root}, processes)] if root in processes else []


def children_of_self() -> list[int]:
    """This process's direct children (cheap: one read, CONFIG_PROC_CHILDREN)."""
    pid = os.getpid()
    try:
        with open(f"/proc/{pid}/task/{pid}/children", "rb") as handle:
            return [int(p) for p in handle.read().split()]
    except OSError:
        return [p for p, (_, parent) in table().items() if parent == pid]


def matching(pname: str, processes: Table) -> list[int]:
    """Pids whose process name is `pname` (the kernel's comm, at most 15 characters)."""
    return sorted(pid for pid, (name, _) in processes.items() if name == pname[:15])


def process_info(pid: int) -> dict[str, object] | None:
    """pid, pname and command line of a live process."""
    live = entry(pid)
    if live is None:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read(64 * 1024).replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        cmdline = ""
    return {"pid": pid, "pname": live[0], "cmdline": cmdline}
