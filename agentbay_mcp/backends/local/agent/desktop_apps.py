"""Applications inside the sandbox: `.desktop` entries, and stopping an application's processes.

Runs in the agent (stdlib only). Processes come from proc_table.py (the sandbox's own pid
namespace, so every pid belongs to the session); the agent's own desktop processes (pid 1, Xvfb,
the window manager) are excluded by the caller through `protected`.
"""

from __future__ import annotations

import configparser
import os
import re
import signal
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type checker sees the package; the sandbox runs these files as top-level modules
    from agentbay_mcp.backends.local.agent import proc_table
else:
    import proc_table

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


def terminate_trees(
    roots: list[int], protected: set[int], table: proc_table.Table
) -> tuple[list[dict[str, object]], list[tuple[int, int]]]:
    """SIGTERM every process of the given trees (never `protected` ones).

    Returns the processes signalled and their (pid, start time), for a SIGKILL after a grace period.
    Trees are collected before anything is signalled: children of a killed parent are re-parented to
    pid 1 and would be lost otherwise.
    """
    victims: list[int] = []
    for root in roots:
        for pid in proc_table.tree(root, table):
            if pid not in protected and pid not in victims:
                victims.append(pid)
    stopped = [info for info in (proc_table.process_info(pid) for pid in victims) if info is not None]
    marked = [(pid, started) for pid in victims if (started := proc_table.start_time(pid)) is not None]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    return stopped, marked


def kill_survivors(marked: list[tuple[int, int]]) -> None:
    """SIGKILL those of `marked` that are still the same, live processes."""
    for pid, started in marked:
        if proc_table.alive(pid) and proc_table.start_time(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
