"""The walker that copies a session's tree into the context store (tree_copy.py), on plain directories."""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agentbay_mcp.backends.local.tree_copy import TreeLimitError, TreeLimits, TreeStats, copy_tree, open_beneath


@contextmanager
def opened(*paths: Path) -> Iterator[list[int]]:
    fds = [os.open(path, os.O_RDONLY | os.O_DIRECTORY) for path in paths]
    try:
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


def copy(src: Path, dst: Path, limits: TreeLimits | None = None, previous: Path | None = None) -> TreeStats:
    dst.mkdir()
    with opened(src, dst, *([previous] if previous else [])) as fds:
        return copy_tree(fds[0], fds[1], limits or TreeLimits(), fds[2] if previous else None)


def test_files_dirs_and_links_are_copied_and_the_rest_skipped(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d" / "e").mkdir(parents=True)
    (src / "d" / "e" / "f").write_bytes(b"abc")
    (src / "x").write_bytes(b"12345")
    (src / "x").chmod(0o4755)  # setuid is never kept
    (src / "abs").symlink_to("/etc/passwd")
    (src / "loop").symlink_to("loop")
    os.mkfifo(src / "fifo")
    stats = copy(src, tmp_path / "dst")
    dst = tmp_path / "dst"
    assert (stats.files, stats.bytes, stats.skipped) == (4, 8 + len("/etc/passwd") + len("loop"), 1)
    assert (dst / "d" / "e" / "f").read_bytes() == b"abc"
    assert os.readlink(dst / "abs") == "/etc/passwd"
    assert os.readlink(dst / "loop") == "loop"
    assert not (dst / "fifo").exists()
    assert (dst / "x").stat().st_mode & 0o7777 == 0o755
    assert (dst / "x").stat().st_mtime_ns == (src / "x").stat().st_mtime_ns


@pytest.mark.parametrize(
    ("limits", "what"),
    [(TreeLimits(max_entries=3), "entries"), (TreeLimits(max_depth=2), "depth"), (TreeLimits(max_bytes=10), "bytes")],
)
def test_bounds(tmp_path: Path, limits: TreeLimits, what: str) -> None:
    src = tmp_path / "src"
    (src / "a" / "b").mkdir(parents=True)
    for index in range(3):
        (src / "a" / "b" / f"f{index}").write_bytes(b"x" * 6)
    with pytest.raises(TreeLimitError) as raised:
        copy(src, tmp_path / "dst", limits)
    assert raised.value.what == what


def test_unchanged_files_are_linked_from_the_previous_copy(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "d").mkdir(parents=True)
    (src / "d" / "same").write_bytes(b"same")
    (src / "changed").write_bytes(b"old")
    copy(src, tmp_path / "v1")
    (src / "changed").write_bytes(b"new!")
    stats = copy(src, tmp_path / "v2", previous=tmp_path / "v1")
    assert (stats.linked, stats.files, stats.bytes) == (1, 2, 8)
    assert (tmp_path / "v2" / "d" / "same").stat().st_ino == (tmp_path / "v1" / "d" / "same").stat().st_ino
    assert (tmp_path / "v2" / "changed").read_bytes() == b"new!"
    assert (tmp_path / "v1" / "changed").read_bytes() == b"old"


def test_open_beneath_never_follows_a_link(tmp_path: Path) -> None:
    (tmp_path / "root" / "a").mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "root" / "a" / "link").symlink_to(tmp_path / "outside")
    with opened(tmp_path / "root") as (root,):
        with pytest.raises(NotADirectoryError):
            open_beneath(root, ["a", "link"])
        assert open_beneath(root, ["a", "missing"]) is None
        fd = open_beneath(root, ["a"])
        assert fd is not None
        os.close(fd)


def test_a_huge_directory_is_refused_without_listing_it_whole(tmp_path: Path) -> None:
    # Hard links cost a session no disk quota: one directory of millions of long names must not be
    # read into the server's memory before the entry bound is checked.
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"x")
    for index in range(20_000):
        os.link(src / "f", src / f"{index:0200d}")
    tracemalloc.start()
    try:
        with pytest.raises(TreeLimitError):
            copy(src, tmp_path / "dst", TreeLimits(max_entries=100))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes to refuse 100 entries"


def test_a_file_hard_linked_in_the_tree_is_stored_once(tmp_path: Path) -> None:
    # One 1 MB file under 200 names costs the session 1 MB of disk: the copy must not write (nor count
    # against the byte bound) 200 MB, which would also make the context too big to show again.
    src = tmp_path / "src"
    (src / "deep" / "er").mkdir(parents=True)
    (src / "big").write_bytes(b"x" * (1 << 20))
    for index in range(100):
        os.link(src / "big", src / f"l{index}")
        os.link(src / "big", src / "deep" / "er" / f"l{index}")
    (src / "other").write_bytes(b"y" * 10)
    stats = copy(src, tmp_path / "v1", TreeLimits(max_bytes=2 << 20))
    assert (stats.files, stats.bytes) == (202, (1 << 20) + 10)
    dst = tmp_path / "v1"
    inode = (dst / "big").stat().st_ino
    assert {(dst / "deep" / "er" / f"l{i}").stat().st_ino for i in range(100)} == {inode}
    assert (dst / "l7").read_bytes() == b"x" * (1 << 20)
    assert (dst / "other").stat().st_ino != inode
    # Linked from the previous copy when unchanged, and the tree's own links kept among the new names.
    again = copy(src, tmp_path / "v2", TreeLimits(max_bytes=2 << 20), previous=dst)
    assert (again.files, again.bytes) == (202, (1 << 20) + 10)
    assert (tmp_path / "v2" / "deep" / "er" / "l3").stat().st_ino == inode


def test_a_sparse_file_is_copied_sparse(tmp_path: Path) -> None:
    # `truncate -s` costs a session no disk: its copy must not cost us the whole size either.
    src = tmp_path / "src"
    src.mkdir()
    with (src / "sparse").open("wb") as file:
        file.seek(1 << 20)
        file.write(b"data")
        file.truncate(64 << 20)
    stats = copy(src, tmp_path / "dst")
    copied = tmp_path / "dst" / "sparse"
    assert copied.stat().st_size == 64 << 20
    assert copied.stat().st_blocks * 512 < 1 << 20
    with copied.open("rb") as file:
        file.seek((1 << 20) - 2)
        assert file.read(8) == b"\0\0data\0\0"
    assert stats.bytes == 64 << 20  # the quota counts what the files show
    assert stats.disk < 1 << 20  # and the disk what they take


def test_symlink_targets_count_against_the_byte_bound(tmp_path: Path) -> None:
    # A symlink's target is up to 4 KB of the session's own text: 200,000 of them would hold 800 MB
    # outside the owner's byte quota if they counted for nothing.
    src = tmp_path / "src"
    src.mkdir()
    for index in range(100):
        (src / f"l{index}").symlink_to("x" * 4000)
    with pytest.raises(TreeLimitError) as raised:
        copy(src, tmp_path / "dst", TreeLimits(max_bytes=100_000))
    assert raised.value.what == "bytes"
    stats = copy(src, tmp_path / "again", TreeLimits(max_bytes=100 * 8192))  # room for a block each
    assert (stats.files, stats.bytes) == (100, 400_000)
    assert stats.disk >= 400_000  # a long target takes a block


@pytest.mark.parametrize("kind", ["dirs", "files"])
def test_what_empty_directories_and_tiny_files_take_counts_against_the_byte_bound(tmp_path: Path, kind: str) -> None:
    # 200,000 empty directories (or one-byte files) show next to nothing and take 800 MB of our disk:
    # the bound counts what the copy takes when that is more than what the files show.
    src = tmp_path / "src"
    src.mkdir()
    for index in range(300):
        if kind == "dirs":
            (src / f"d{index}").mkdir()
        else:
            (src / f"f{index}").write_bytes(b"x")
    stats = copy(src, tmp_path / "free")
    assert stats.bytes == (0 if kind == "dirs" else 300)
    assert stats.charged == stats.disk >= 300 * 512  # a block each, whatever the file system's block size
    with pytest.raises(TreeLimitError) as raised:
        copy(src, tmp_path / "bounded", TreeLimits(max_bytes=100 * 512))
    assert raised.value.what == "bytes"
