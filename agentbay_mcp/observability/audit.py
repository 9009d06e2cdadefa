"""The audit log: one JSON line per tool call, to a file or stderr.

Each line says when, who (principal), in which conversation, which tool on which session, the
outcome and how long it took. Arguments are kept only where they cannot carry secrets: a
command's text and directory, paths, image and process ids are kept; environment variables
keep their names and never their values; file contents, process input, edits and label values
never appear.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

#: Arguments recorded as given (capped in length): none of them carries a secret by design.
KEPT_ARGUMENTS = (
    "command",
    "cwd",
    "path",
    "source",
    "destination",
    "image_id",
    "process_id",
    "signal",
    "timeout_ms",
    "pattern",
    "window_id",
    "action",
    # Desktop tools that run shell commands are audited like execute_command.
    "start_cmd",
    "stop_cmd",
    "work_directory",
    "pid",
    "pname",
    "app_name",
)
#: Arguments whose keys are recorded but never their values.
NAMES_ONLY = ("envs", "labels")
MAX_KEPT_CHARS = 2000


def safe_arguments(arguments: Mapping[str, Any] | None) -> dict[str, Any]:
    """The part of a tool call's arguments fit for the audit log."""
    if not arguments:
        return {}
    kept: dict[str, Any] = {}
    for name in KEPT_ARGUMENTS:
        value = arguments.get(name)
        if isinstance(value, str):
            kept[name] = value[:MAX_KEPT_CHARS]
        elif isinstance(value, int | float | bool):
            kept[name] = value
    for name in NAMES_ONLY:
        value = arguments.get(name)
        if isinstance(value, Mapping):
            kept[f"{name}_names"] = sorted(str(key)[:128] for key in value)[:64]
    return kept


class AuditLog:
    """Appends audit records as JSON lines; a no-op when no destination is configured."""

    def __init__(self, destination: str | None) -> None:
        self.destination = destination
        self._stream: TextIO | None = None

    @property
    def enabled(self) -> bool:
        """Whether records are written anywhere."""
        return bool(self.destination)

    def open(self) -> None:
        """Open the destination (a file is created 0600 and appended to)."""
        if not self.destination or self._stream is not None:
            return
        if self.destination == "stderr":
            self._stream = sys.stderr
            return
        path = Path(self.destination).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        # Line-buffered: each record reaches the file as one append, even if the server is killed next.
        self._stream = os.fdopen(fd, "a", encoding="utf-8", buffering=1)

    def close(self) -> None:
        """Close a file destination."""
        stream, self._stream = self._stream, None
        if stream is not None and stream is not sys.stderr:
            stream.close()

    def write(self, **record: Any) -> None:
        """Append one record, stamped with the current UTC time."""
        if self._stream is None:
            return
        line = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"), **record}
        self._stream.write(json.dumps(line, separators=(",", ":"), default=str) + "\n")
        if self._stream is sys.stderr:
            self._stream.flush()
