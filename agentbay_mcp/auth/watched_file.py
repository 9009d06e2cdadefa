"""A file re-read when it changes: tokens and keys are rotated without restarting the server."""

from __future__ import annotations

import time
from pathlib import Path


class WatchedFile:
    """Tells, at most once every `interval` seconds, whether a file changed since it last said so."""

    def __init__(self, path: Path, interval: float) -> None:
        self.path = path
        self.interval = interval
        self._seen = self._signature()
        self._checked_at = time.monotonic()

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return (info.st_mtime_ns, info.st_size, info.st_ino)

    def changed(self) -> bool:
        """Whether the file was modified, replaced or removed (cheap: one stat, and not every call)."""
        now = time.monotonic()
        if now - self._checked_at < self.interval:
            return False
        self._checked_at = now
        signature = self._signature()
        if signature == self._seen:
            return False
        self._seen = signature
        return True
