"""Applications inside the sandbox: `.desktop` entries, and processes read from /proc.

Runs in the agent (stdlib only). /proc here is the sandbox's own pid namespace, so every pid this
module sees belongs to the session; the agent's own desktop processes (pid 1, Xvfb, the window
manager) are excluded by the caller through `protected`.
"""

from __future__ import annotations

import configparser
import os
import re
import signal
import stat

#: Field codes of the Exec key (desktop entry spec) that stand for files or URLs to open; dropped.
_FIELD_CODE = re.compile(r"\s*%[fFuUdDnNickvm]")
MAX_APPS = 500


def _application_dirs(home: str) -> list[str]:
    data_dirs = os.environ.get("XDG_DATA_DIRS") or "/usr/local/share:/usr/share"
    dirs = [os.path.join(home, ".local/share")] + [d for d in data_dirs.split(":") if d]
    return [os.path.join(d, "applications") for d in dirs]


def _parse_entry(path: str) -> dict[str, str] | None:
    parser = configparser.RawConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    try:
        # Non-blocking and regular files only: the session owns ~/.local/share/applications and could
        # plant a FIFO or a device there to wedge the agent.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            parser.read_string(handle.read(256 * 1024).decode("utf-8", "replace"))
    except (OSError, configparser.Error):
        return None
    if not parser.has_section("Desktop Entry"):
        return None
    return dict(parser.items("Desktop Entry"))


def _is_system(entry: dict[str, str]) -> bool:
    """Entries not meant for a menu (NoDisplay, Hidden) and settings tools count as system apps."""
    if entry.get("NoDisplay", "").lower() == "true" or entry.get("Hidden", "").lower() == "true":
        return True
    return "Settings" in entry.get("Categories", "").split(";")


def installed_apps(home: str, include_system: bool) -> list[dict[str, object]]:
    """Applications from the `.desktop` entries visible in the sandbox, user entries first."""
    seen: set[str] = set()
    apps: list[dict[str, object]] = []
    for directory in _application_dirs(home):
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            continue
        for name in names:
            if not name.endswith(".desktop") or name in seen:
                continue
            seen.add(name)  # an entry in an earlier dir shadows the same file name later (XDG rule)
            entry = _parse_entry(os.path.join(directory, name))
            if entry is None or entry.get("Type", "Application") != "Application" or not entry.get("Exec"):
                continue
            if not include_system and _is_system(entry):
                continue
            command = _FIELD_CODE.sub("", entry["Exec"]).replace("%%", "%").strip()
            apps.append(
                {
                    "name": entry.get("Name", name[: -len(".desktop")]),
                    "start_cmd": command,
                    "stop_cmd": None,
                    "work_directory": entry.get("Path") or None,
                    "desktop_file": os.path.join(directory, name),
                    "system": _is_system(entry),
                }
            )
            if len(apps) >= MAX_APPS:
                return apps
    return apps


def _stat(pid: int) -> tuple[str, int] | None:
    """(name, parent pid) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    name = raw[raw.find("(") + 1 : raw.rfind(")")]
    fields = raw[raw.rfind(")") + 2 :].split()
    if len(fields) < 2 or fields[0] == "Z":
        return None
    return name, int(fields[1])


def process_info(pid: int) -> dict[str, object] | None:
    """pid, pname and command line of a live process."""
    stat = _stat(pid)
    if stat is None:
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read(64 * 1024).replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        cmdline = ""
    return {"pid": pid, "pname": stat[0], "cmdline": cmdline}


def all_processes() -> dict[int, tuple[str, int]]:
    """Every live process: pid -> (name, parent pid)."""
    table: dict[int, tuple[str, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                table[int(entry)] = stat
    return table


def tree(root: int, table: dict[int, tuple[str, int]] | None = None) -> list[int]:
    """`root` and all its descendants that are alive, parents first."""
    table = all_processes() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (_, parent) in table.items():
        children.setdefault(parent, []).append(pid)
    found: list[int] = []
    todo = [root] if root in table else []
    while todo:
        pid = todo.pop(0)
        found.append(pid)
        todo.extend(sorted(children.get(pid, [])))
    return found


def matching(pname: str, table: dict[int, tuple[str, int]]) -> list[int]:
    """Pids whose process name is `pname` (the kernel's comm, at most 15 characters)."""
    return sorted(pid for pid, (name, _) in table.items() if name == pname[:15])


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks (with the pid, it names one process even across pid reuse)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read().decode("utf-8", "replace")
    except OSError:
        return None
    fields = raw[raw.rfind(")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 else None


def terminate_trees(
    roots: list[int], protected: set[int], table: dict[int, tuple[str, int]]
) -> tuple[list[dict[str, object]], list[tuple[int, int]]]:
    """SIGTERM every process of the given trees (never `protected` ones).

    Returns the processes signalled and their (pid, start time), for a SIGKILL after a grace period.
    Trees are collected before anything is signalled: children of a killed parent are re-parented to
    pid 1 and would be lost otherwise.
    """
    victims: list[int] = []
    for root in roots:
        for pid in tree(root, table):
            if pid not in protected and pid not in victims:
                victims.append(pid)
    stopped = [info for info in (process_info(pid) for pid in victims) if info is not None]
    marked = [(pid, started) for pid in victims if (started := start_time(pid)) is not None]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    return stopped, marked


def kill_survivors(marked: list[tuple[int, int]]) -> None:
    """SIGKILL those of `marked` that are still the same, live processes."""
    for pid, started in marked:
        if _stat(pid) is not None and start_time(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
