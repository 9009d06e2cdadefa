"""Finding and killing a sandbox whose server died without stopping it.

`--die-with-parent` normally takes a sandbox down with its server, but a bwrap killed within
milliseconds of its start can leave its sandboxed child running. So each session records its
sandbox's pid together with the process's start time (from /proc/<pid>/stat): the reaper kills that
pid only if it is still the same process, never an unrelated one that reused the number. Killing a
pid namespace's init (the agent runs as pid 1) kills everything in the sandbox.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from pathlib import Path

_FILE = "sandbox.json"


def process_start_time(pid: int) -> int | None:
    """Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


_known_starts: dict[int, int | None] = {}


def write_sandbox_pids(session_dir: Path, child_pid: int) -> None:
    """Remember the sandbox's pid and start time next to the session's record."""
    started = process_start_time(child_pid)
    _known_starts[child_pid] = started
    record = {"child_pid": child_pid, "start_time": started}
    with contextlib.suppress(OSError):
        (session_dir / _FILE).write_text(json.dumps(record))


def kill_leftover_sandbox_pid(child_pid: int) -> None:
    """SIGKILL a sandbox pid this process recorded, if it is still the same process."""
    started = _known_starts.pop(child_pid, None)
    if child_pid > 1 and started is not None and process_start_time(child_pid) == started:
        with contextlib.suppress(OSError):
            os.kill(child_pid, signal.SIGKILL)


def kill_leftover_sandbox(session_dir: Path) -> bool:
    """SIGKILL the session's recorded sandbox if that very process is still running."""
    try:
        record = json.loads((session_dir / _FILE).read_text())
        pid, started = int(record["child_pid"]), record["start_time"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if pid <= 1 or started is None or process_start_time(pid) != started:
        return False
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
        return True
    return False
