"""Copying a tree a session wrote (hostile: it may change under us) into a fresh directory of ours.

The walk never resolves a path: it holds a directory fd per level, opens every entry relative to its
parent's fd with O_NOFOLLOW, and checks with fstat what it opened. So a session that swaps a
directory for a symlink (to the host's /etc, say) while we walk gets, at worst, that entry skipped:
a symlink is recreated as a symlink with the same target text (never followed), regular files are
copied, directories recreated, and everything else (fifos, sockets, devices) skipped. The walk is
bounded before it works: entries, depth and bytes (checked against each file's size before its copy,
and the copy stops at that size even if the file grows). The byte bound is on `TreeStats.charged`, the
greater of what the files show and what the copy takes on our disk, directories included: 200,000
empty directories or one-byte files show almost nothing and take 800 MB.

A sparse file is copied sparse (only its data, found with SEEK_DATA/SEEK_HOLE), so a file that shows
terabytes of holes costs us what it costs the session. A file the tree holds under several names (hard
links) is copied once and linked under the others, and counted once against the byte bound: a session's
hard links cost it no disk, and must cost us none.

With `previous` (the last copy of the same tree, ours and never changed once made), a file whose size,
modification time and mode match the previous copy's is hard-linked from it instead of copied (rsync's
quick check): a sync of a tree that barely changed writes barely anything.

Copies keep permission bits (without setuid/setgid/sticky, and always readable and writable by their
owner, us, so we can copy them back in and remove them) and modification times.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass, field

#: Defaults for a context: a dependency cache has tens of thousands of files, never millions.
MAX_ENTRIES = 200_000
MAX_DEPTH = 128

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK = 1 << 30
# An entry that vanished or changed kind between listing and opening: skipped, not an error.
_RACED = (errno.ENOENT, errno.ELOOP, errno.ENOTDIR, errno.EINVAL, errno.EACCES, errno.EPERM, errno.ENXIO)


@dataclass(frozen=True)
class TreeLimits:
    """Bounds of one copy; `max_bytes` None: no byte bound."""

    max_entries: int = MAX_ENTRIES
    max_depth: int = MAX_DEPTH
    max_bytes: int | None = None


#: Where a directory of the copy is, below its root: (its parent's place, its name), None for the root.
#: Parents are shared, so remembering the place of every file costs one small tuple per directory.
Place = tuple["Place", str] | None


@dataclass
class TreeStats:
    """What a copy copied: `files` counts regular files and symlinks, `entries` also directories, `bytes`
    the bytes the files show (a file under several names once), `disk` the bytes their blocks take."""

    files: int = 0
    entries: int = 0
    bytes: int = 0
    disk: int = 0
    skipped: int = 0
    linked: int = 0
    #: (st_dev, st_ino) of the tree's files with several names -> where their copy is (its directory, name)
    copies: dict[tuple[int, int], tuple[Place, str]] = field(default_factory=dict)

    @property
    def charged(self) -> int:
        """What the byte bound counts: what the files show or what the copy takes on disk, the greater."""
        return max(self.bytes, self.disk)

    def check(self, limits: TreeLimits, more: int = 0) -> None:
        """Raise if `more` bytes (or what is already charged) would pass the byte bound."""
        if limits.max_bytes is not None and max(self.bytes + more, self.disk) > limits.max_bytes:
            raise TreeLimitError("bytes", limits.max_bytes, f"more than {limits.max_bytes} bytes")


class TreeLimitError(Exception):
    """The tree is over a bound; `what` is 'entries', 'depth' or 'bytes'. Nothing is usable from the copy."""

    def __init__(self, what: str, limit: int, message: str) -> None:
        super().__init__(message)
        self.what = what
        self.limit = limit


def copy_tree(src_fd: int, dst_fd: int, limits: TreeLimits, previous: int | None = None) -> TreeStats:
    """Copy the directory open at `src_fd` (hostile) into the empty directory open at `dst_fd` (ours),
    linking unchanged files from the directory open at `previous` (ours, immutable).

    Raises TreeLimitError past a bound and OSError if writing the copy fails (e.g. our disk is full)."""
    stats = TreeStats()
    _copy_dir(_Level(src_fd, dst_fd, previous, dst_fd, None), 1, limits, stats)
    return stats


@dataclass(frozen=True)
class _Level:
    """One directory: the session's (src), ours being made (dst), the previous copy's (prev, or None), the
    root of ours (root) and where dst is below it (place)."""

    src: int
    dst: int
    prev: int | None
    root: int
    place: Place


def _copy_dir(level: _Level, depth: int, limits: TreeLimits, stats: TreeStats) -> None:
    if depth > limits.max_depth:
        raise TreeLimitError("depth", limits.max_depth, f"directories nest deeper than {limits.max_depth} levels")
    # List first, then close the listing: only one fd per level stays open while we descend. Counted as
    # listed: a directory of millions of hard links costs the session no disk, and must cost us no memory.
    entries = []
    with os.scandir(level.src) as listing:
        for entry in listing:
            stats.entries += 1
            if stats.entries > limits.max_entries:
                raise TreeLimitError(
                    "entries", limits.max_entries, f"more than {limits.max_entries} files and directories"
                )
            entries.append((entry.name, _kind(entry)))
    for name, kind in entries:
        if kind == "dir":
            _copy_subdir(level, name, depth, limits, stats)
        elif kind == "file":
            _copy_file(level, name, limits, stats)
        elif kind == "link":
            _copy_link(level.src, level.dst, name, limits, stats)
        else:
            stats.skipped += 1


def _kind(entry: os.DirEntry[str]) -> str:
    """What the listing says the entry is (d_type, or an lstat: never following a link)."""
    try:
        if entry.is_symlink():
            return "link"
        if entry.is_dir(follow_symlinks=False):
            return "dir"
        if entry.is_file(follow_symlinks=False):
            return "file"
    except OSError:
        pass
    return "other"


def _copy_subdir(level: _Level, name: str, depth: int, limits: TreeLimits, stats: TreeStats) -> None:
    try:
        sub_src = os.open(name, _DIR_FLAGS, dir_fd=level.src)
    except OSError as exc:
        if exc.errno in _RACED:  # swapped for a symlink or a file since the listing, or unreadable
            stats.skipped += 1
            return
        raise
    sub_prev = _open_previous(level.prev, name)
    try:
        info = os.fstat(sub_src)
        os.mkdir(name, 0o700, dir_fd=level.dst)
        sub_dst = os.open(name, _DIR_FLAGS, dir_fd=level.dst)
        try:
            _copy_dir(_Level(sub_src, sub_dst, sub_prev, level.root, (level.place, name)), depth + 1, limits, stats)
            os.fchmod(sub_dst, stat.S_IMODE(info.st_mode) & 0o777 | 0o700)
            os.utime(sub_dst, ns=(info.st_atime_ns, info.st_mtime_ns))
            stats.disk += os.fstat(sub_dst).st_blocks * 512  # its names' blocks, now that it holds them all
            stats.check(limits)
        finally:
            os.close(sub_dst)
    finally:
        os.close(sub_src)
        if sub_prev is not None:
            os.close(sub_prev)


def _open_previous(prev: int | None, name: str) -> int | None:
    if prev is None:
        return None
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=prev)
    except OSError:
        return None


def _copy_file(level: _Level, name: str, limits: TreeLimits, stats: TreeStats) -> None:
    try:
        source = os.open(name, _FILE_FLAGS, dir_fd=level.src)
    except OSError as exc:
        if exc.errno in _RACED:
            stats.skipped += 1
            return
        raise
    try:
        info = os.fstat(source)
        if not stat.S_ISREG(info.st_mode):  # a fifo or device swapped in since the listing
            stats.skipped += 1
            return
        key = (info.st_dev, info.st_ino)
        if info.st_nlink > 1 and key in stats.copies and _link_copy(level, name, stats.copies[key]):
            stats.files += 1  # another name of a file already copied: its bytes are stored once
            return
        stats.check(limits, info.st_size)
        mode = stat.S_IMODE(info.st_mode) & 0o777 | 0o600
        if info.st_nlink > 1:
            stats.copies[key] = (level.place, name)
        if (old := _link_unchanged(level, name, info, mode)) is not None:
            stats.bytes += info.st_size
            stats.disk += old.st_blocks * 512
            stats.files += 1
            stats.linked += 1
            stats.check(limits)
            return
        target = os.open(
            name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=level.dst
        )
        try:
            stats.bytes += _copy_bytes(source, target, info.st_size)
            os.fchmod(target, mode)
            os.utime(target, ns=(info.st_atime_ns, info.st_mtime_ns))
            stats.disk += os.fstat(target).st_blocks * 512
        finally:
            os.close(target)
        stats.files += 1
        stats.check(limits)
    finally:
        os.close(source)


def _link_copy(level: _Level, name: str, copy: tuple[Place, str]) -> bool:
    """Link `name` to the copy made of another name of the same file. The path is below our root and
    passes through directories we made (never a symlink: a name is made once, as what it was listed as).
    False (copy it instead) if the link fails: too many links, a path too long."""
    parts = [copy[1]]
    place = copy[0]
    while place is not None:
        place, part = place
        parts.append(part)
    try:
        os.link("/".join(reversed(parts)), name, src_dir_fd=level.root, dst_dir_fd=level.dst, follow_symlinks=False)
    except OSError:
        return False
    return True


def _link_unchanged(level: _Level, name: str, info: os.stat_result, mode: int) -> os.stat_result | None:
    """Hard-link the previous copy of `name` if its size, mtime and mode say it is unchanged; its stat if linked."""
    if level.prev is None:
        return None
    try:
        old = os.stat(name, dir_fd=level.prev, follow_symlinks=False)
        if not (
            stat.S_ISREG(old.st_mode)
            and old.st_size == info.st_size
            and old.st_mtime_ns == info.st_mtime_ns
            and stat.S_IMODE(old.st_mode) == mode
        ):
            return None
        os.link(name, name, src_dir_fd=level.prev, dst_dir_fd=level.dst, follow_symlinks=False)
    except OSError:
        return None
    return old


def _copy_bytes(source: int, target: int, size: int) -> int:
    """Copy the data of the first `size` bytes in the kernel, leaving holes as holes; the copy's size (a file
    that grows meanwhile is cut at its size when listed; one that shrinks ends where its data ended)."""
    offset = 0
    while offset < size:
        try:
            data = os.lseek(source, offset, os.SEEK_DATA)
            hole = min(os.lseek(source, data, os.SEEK_HOLE), size) if data < size else size
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                break  # nothing but a hole up to the end
            if exc.errno != errno.EINVAL:
                raise
            data, hole = offset, size  # a file system that cannot tell holes: all of it is data
        if data >= size:
            break
        if hole <= data:  # a file system whose lseek ignores SEEK_HOLE (noop_llseek): the rest is data
            hole = size
        os.lseek(target, data, os.SEEK_SET)
        while data < hole:
            sent = os.sendfile(target, source, data, min(hole - data, _CHUNK))
            if sent == 0:  # it shrank
                os.ftruncate(target, data)
                return data
            data += sent
        offset = hole
    os.ftruncate(target, size)  # the holes up to the end, if it ends with one
    return size


def _copy_link(src_fd: int, dst_fd: int, name: str, limits: TreeLimits, stats: TreeStats) -> None:
    try:
        target = os.readlink(name, dir_fd=src_fd)  # EINVAL if it is no longer a symlink
    except OSError as exc:
        if exc.errno in _RACED:
            stats.skipped += 1
            return
        raise
    # Its bytes are its target (what lstat calls its size): up to 4 KB of the session's text each.
    size = len(os.fsencode(target))
    stats.check(limits, size)
    os.symlink(target, name, dir_fd=dst_fd)
    stats.files += 1
    stats.bytes += size
    stats.disk += os.stat(name, dir_fd=dst_fd, follow_symlinks=False).st_blocks * 512
    stats.check(limits)


def open_beneath(root_fd: int, parts: list[str]) -> int | None:
    """Open the directory `parts` below `root_fd` without following any symlink; None if one is missing.

    Raises NotADirectoryError if a part exists but is not a directory (a file, or a symlink)."""
    fd = os.dup(root_fd)
    try:
        for part in parts:
            try:
                next_fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except FileNotFoundError:
                return None
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise NotADirectoryError(errno.ENOTDIR, f"{part!r} is not a directory") from exc
                raise
            os.close(fd)
            fd = next_fd
        result, fd = fd, -1
        return result
    finally:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
