"""The walk of an overlay's upper dir (ws_tree.walk_upper) on real directories: its bounds."""

from __future__ import annotations

import os
from pathlib import Path

from agentbay_mcp.backends.local.ws_tree import MAX_PATH_BYTES, O_DIR, walk_upper


def test_the_walk_stops_at_its_bytes_of_paths(tmp_path: Path) -> None:
    # 17,000 paths of 4 KB: past what one walk holds (the entry bound alone would let 800 MB through).
    deep = tmp_path / "upper" / "/".join(["d" * 250] * 15)
    deep.mkdir(parents=True)
    (tmp_path / "lower").mkdir()
    fd = os.open(deep, O_DIR)
    try:
        for index in range(17_000):
            os.close(os.open(f"{index:05}" + "f" * 200, os.O_CREAT | os.O_WRONLY, 0o644, dir_fd=fd))
    finally:
        os.close(fd)
    upper, lower = os.open(tmp_path / "upper", O_DIR), os.open(tmp_path / "lower", O_DIR)
    try:
        found, truncated = walk_upper(upper, lower)
    finally:
        os.close(upper)
        os.close(lower)
    assert truncated
    assert 15_000 < len(found) < 17_000
    assert sum(len(change.path) for change in found) <= MAX_PATH_BYTES
