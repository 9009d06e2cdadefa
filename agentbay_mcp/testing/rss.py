"""Peak memory of processes while a test runs (needs psutil, a dev extra)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence

import psutil


class PeakRss:
    """Peak RSS of named groups of processes (each group summed), sampled in a thread every 5 ms."""

    def __init__(self, **groups: psutil.Process | Sequence[psutil.Process]) -> None:
        self.groups = {name: [g] if isinstance(g, psutil.Process) else list(g) for name, g in groups.items()}
        self.base = self.sample()
        self.peak = dict(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def sample(self) -> dict[str, int]:
        found = {}
        for name, processes in self.groups.items():
            total = 0
            for process in processes:
                with contextlib.suppress(psutil.Error):
                    total += int(process.memory_info().rss)
            found[name] = total
        return found

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            for key, value in self.sample().items():
                self.peak[key] = max(self.peak[key], value)

    def growth(self, key: str) -> int:
        return self.peak[key] - self.base[key]

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        assert not self._thread.is_alive()
