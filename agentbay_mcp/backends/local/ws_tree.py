"""Reading an overlay workspace's upper dir host-side: what the session changed.

The upper dir is the session's: hostile, and changing while we read (it may swap a file for a
symlink at any moment). Everything here goes through directory fds: each path component is opened
with O_NOFOLLOW|O_DIRECTORY beneath a root fd, files with O_NOFOLLOW (and O_NONBLOCK, so a fifo
swapped in cannot block us), and a symlink is only ever read with readlink, never followed. The
host directory (the lower layer) is read the same way: a link in the project is not followed either,
so no diff can show a file outside it. The walk is bounded in entries, depth and bytes compared.

What overlayfs leaves in the upper (mounted without redirects or metacopy, see idmap.py):
- a whiteout (a 0:0 character device): the lower's entry of that name is deleted;
- an opaque dir (xattr trusted.overlay.opaque = y): the lower's entries not in it are deleted, and
  so are those not in its subdirectories (overlayfs looks no lower below an opaque dir, so it marks
  only the top one: after `rm -rf src && mkdir -p src/sub`, src/sub is not marked but hides all of
  the host's src/sub);
- a file, link or dir: added, or changed if the lower has that name (a copy-up of a file whose
  content did not change, e.g. after chmod or touch, is not a change).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import stat
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

O_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
O_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
MAX_ENTRIES = 200_000
#: Bytes of paths one walk collects, at most (each may be 4 KiB: 200,000 of them would be 800 MB).
MAX_PATH_BYTES = 64 * 1024**2
MAX_DEPTH = 128
#: Files larger than this are compared but not shown as a diff.
MAX_TEXT_BYTES = 1024 * 1024
#: Bytes read comparing files, per walk: past it, same-size files are reported as changed unread.
MAX_COMPARE_BYTES = 4 * 1024**3
_CHUNK = 1024 * 1024
_OPAQUE = "trusted.overlay.opaque"

Kind = Literal["added", "modified", "deleted"]


@dataclass
class Found:
    """One change in the upper dir (path relative to the workspace root, '/'-separated)."""

    path: str
    kind: Kind
    what: Literal["file", "symlink", "dir"] = "file"
    target: str | None = None  # a symlink's


def shown(path: str) -> str:
    """A session-made path for a line of text: JSON-quoted if it could break or forge a line."""
    return path if path.isprintable() and path.strip() == path else json.dumps(path)


def split_path(path: str) -> tuple[str, ...]:
    """The components of a relative path a caller gave; ValueError for absolute ones, `..` or NUL."""
    if not path or path.startswith("/") or "\0" in path:
        raise ValueError(f"{path!r} is not a relative path inside the workspace")
    parts = tuple(part for part in path.split("/") if part not in ("", "."))
    if not parts or ".." in parts:
        raise ValueError(f"{path!r} is not a relative path inside the workspace ('..' is not allowed)")
    return parts


def open_dir(root_fd: int, parts: tuple[str, ...]) -> int | None:
    """An fd of the directory `parts` beneath `root_fd`, never following a link; None if there is none."""
    fd = os.open(".", O_DIR, dir_fd=root_fd)
    for part in parts:
        try:
            next_fd = os.open(part, O_DIR, dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EACCES):
                return None
            raise
        os.close(fd)
        fd = next_fd
    return fd


def open_no_links(path: str) -> int | None:
    """An fd of the absolute directory `path` with no link followed anywhere along it; None if there
    is none. A workspace's host path runs through directories its user may write (their home): a
    link put there later must not lead a mount or an apply anywhere else."""
    root = os.open("/", O_DIR)
    try:
        return open_dir(root, tuple(part for part in path.split("/") if part))
    finally:
        os.close(root)


def lstat_at(root_fd: int, parts: tuple[str, ...]) -> os.stat_result | None:
    """lstat of `parts` beneath `root_fd` (no link followed on the way); None if absent."""
    parent = open_dir(root_fd, parts[:-1])
    if parent is None:
        return None
    try:
        return os.stat(parts[-1], dir_fd=parent, follow_symlinks=False)
    except OSError:
        return None
    finally:
        os.close(parent)


def changed_since(root_fd: int, parts: tuple[str, ...], since: int, known: Mapping[str, int], *, below: bool) -> bool:
    """Whether the host entry `parts` has a ctime later than `since` that is not the one `known` gives
    for its path (a directory's path ends in '/'); with `below`, anything under a directory too.

    A deletion removes a directory's whole tree, but a file made two levels down changes neither the
    directory's own ctime nor its parent's: each entry must be looked at. A tree past the walk's
    bounds, or changing under the walk, counts as changed (a conflict is the safe answer).
    """
    info = lstat_at(root_fd, parts)
    if info is None:
        return False
    if below and stat.S_ISDIR(info.st_mode):
        return any(_tree_changes(root_fd, parts, since, known))
    return _fresh(info, "/".join(parts), since, known)


def _tree_changes(root_fd: int, parts: tuple[str, ...], since: int, known: Mapping[str, int]) -> Iterator[bool]:
    """For each entry of the host tree `parts`: whether it changed (or could not be looked at)."""
    entries, pending = MAX_ENTRIES, [parts]
    while pending:
        here = pending.pop()
        fd = open_dir(root_fd, here)
        if fd is None:
            yield True
            continue
        try:
            prefix = "/".join(here) + "/"
            yield _fresh(os.fstat(fd), prefix, since, known)
            with os.scandir(fd) as scan:
                for entry in scan:
                    entries -= 1
                    yield entries < 0
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        yield True
                        continue
                    if stat.S_ISDIR(st.st_mode):
                        yield len(here) >= MAX_DEPTH
                        pending.append((*here, entry.name))
                    else:
                        yield _fresh(st, prefix + entry.name, since, known)
        finally:
            os.close(fd)


def _fresh(info: os.stat_result, path: str, since: int, known: Mapping[str, int]) -> bool:
    return info.st_ctime_ns > since and known.get(path) != info.st_ctime_ns


class _FileHandle(ctypes.Structure):
    _fields_ = (("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int), ("f_handle", ctypes.c_ubyte * 128))


_libc = ctypes.CDLL(None, use_errno=True)
_ORIGIN = "trusted.overlay.origin"
_OVL_FH_MAGIC = 0xFB
_OVL_FH_HEAD = 21  # version, magic, len, flags, type, then a 16-byte uuid: the file handle follows
_OVL_FH_FLAG_PATH_UPPER = 4


def origin_gone(upper_fd: int, parts: tuple[str, ...], host_fd: int) -> bool:
    """Whether the upper file `parts` is a copy of a host file that no longer exists on the host.

    overlayfs records, in an xattr the session cannot set, the file handle of the host file it
    copied up. Opened by that handle (root may): a file the host deleted is stale (or unlinked), while
    one the session only renamed is still there. Without the record (a new file), False.
    """
    handle = _origin(upper_fd, parts)
    if handle is None:
        return False
    opened = _libc.open_by_handle_at(host_fd, ctypes.byref(handle), os.O_PATH | os.O_CLOEXEC)
    if opened < 0:
        return ctypes.get_errno() == errno.ESTALE
    try:
        # (Still there for a while once unlinked: the overlay keeps a reference to the file it copied.)
        return os.fstat(opened).st_nlink == 0
    finally:
        os.close(opened)


def _origin(upper_fd: int, parts: tuple[str, ...]) -> _FileHandle | None:
    """The host file handle overlayfs recorded on the upper file `parts` (struct ovl_fb), if any."""
    fd = open_file_at(upper_fd, parts)
    if fd is None:
        return None
    try:
        record = os.getxattr(fd, _ORIGIN)
    except OSError:
        return None
    finally:
        os.close(fd)
    fid = record[_OVL_FH_HEAD : record[2]] if len(record) > _OVL_FH_HEAD else b""
    if not 0 < len(fid) <= 128 or record[1] != _OVL_FH_MAGIC or record[3] & _OVL_FH_FLAG_PATH_UPPER:
        return None
    handle = _FileHandle(len(fid), record[4])
    ctypes.memmove(handle.f_handle, fid, len(fid))
    return handle


def open_file(dir_fd: int, name: str) -> int | None:
    """A regular file `name` in `dir_fd` opened for reading without following a link; None otherwise."""
    try:
        fd = os.open(name, O_FILE, dir_fd=dir_fd)
    except OSError:
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def open_file_at(root_fd: int, parts: tuple[str, ...]) -> int | None:
    """The regular file `parts` beneath `root_fd` opened for reading, no link followed; None otherwise."""
    parent = open_dir(root_fd, parts[:-1])
    if parent is None:
        return None
    try:
        return open_file(parent, parts[-1])
    finally:
        os.close(parent)


def read_at(root_fd: int, parts: tuple[str, ...], limit: int) -> bytes | None:
    """Up to `limit` bytes of the regular file `parts` beneath `root_fd`; None if it is not one."""
    fd = open_file_at(root_fd, parts)
    if fd is None:
        return None
    try:
        return _read(fd, limit)
    finally:
        os.close(fd)


def _read(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit:
        chunk = os.read(fd, min(_CHUNK, limit - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


class Budget:
    """What one walk may still spend, and which directories it enters (`descend(path)`; None: all)."""

    def __init__(self, descend: Callable[[str], bool] | None = None) -> None:
        self.descend = descend
        self.entries = MAX_ENTRIES
        self.path_bytes = MAX_PATH_BYTES
        self.compare_bytes = MAX_COMPARE_BYTES
        self.truncated = False


def _same_file(upper_dir: int, lower_dir: int, name: str, size: int, budget: Budget) -> bool:
    """Whether upper and lower `name` (both regular, both `size` bytes) hold the same bytes."""
    if size > budget.compare_bytes:
        return False
    first, second = open_file(upper_dir, name), open_file(lower_dir, name)
    try:
        if first is None or second is None:
            return False
        budget.compare_bytes -= size
        while True:
            a, b = os.read(first, _CHUNK), os.read(second, _CHUNK)
            if a != b:
                return False
            if not a:
                return True
    finally:
        for fd in (first, second):
            if fd is not None:
                os.close(fd)


def _entry_change(
    upper_dir: int, lower_dir: int | None, name: str, path: str, st: os.stat_result, budget: Budget
) -> Found | None:
    """The change one non-directory upper entry stands for, if any."""
    low = None
    if lower_dir is not None:
        with contextlib.suppress(OSError):
            low = os.stat(name, dir_fd=lower_dir, follow_symlinks=False)
    if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:  # a whiteout
        return None if low is None else Found(path + ("/" if stat.S_ISDIR(low.st_mode) else ""), "deleted")
    kind: Kind = "added" if low is None else "modified"
    if stat.S_ISREG(st.st_mode):
        unchanged = (
            low is not None
            and lower_dir is not None
            and stat.S_ISREG(low.st_mode)
            and low.st_size == st.st_size
            and _same_file(upper_dir, lower_dir, name, st.st_size, budget)
        )
        return None if unchanged else Found(path, kind)
    if stat.S_ISLNK(st.st_mode):
        return _link_change(upper_dir, lower_dir if low is not None and stat.S_ISLNK(low.st_mode) else None, name, path)
    return None  # fifos, sockets, devices: not something a workspace carries


def _link_change(upper_dir: int, lower_dir: int | None, name: str, path: str) -> Found | None:
    """A symlink in the upper: a change unless the lower has the same link (`lower_dir`: it has a link)."""
    try:
        target = os.readlink(name, dir_fd=upper_dir)
    except OSError:
        return None
    if lower_dir is not None:
        with contextlib.suppress(OSError):
            if os.readlink(name, dir_fd=lower_dir) == target:
                return None
    return Found(path, "added" if lower_dir is None else "modified", "symlink", target)


def _opaque(fd: int) -> bool:
    try:
        return os.getxattr(fd, _OPAQUE) == b"y"
    except OSError:
        return False


def walk_upper(upper_fd: int, lower_fd: int, descend: Callable[[str], bool] | None = None) -> tuple[list[Found], bool]:
    """Every change the upper dir holds against the lower, sorted by path; True if the walk was cut short.
    With `descend`, only the directories (paths) it accepts are walked into: the bounds then go to them."""
    budget = Budget(descend)
    found = list(_walk(upper_fd, lower_fd, budget))
    found.sort(key=lambda change: change.path)
    return found, budget.truncated


def _walk(upper_fd: int, lower_fd: int, budget: Budget) -> Iterator[Found]:
    pending: list[tuple[tuple[str, ...], bool]] = [((), False)]  # (a directory, below an opaque one)
    while pending:
        parts, below_opaque = pending.pop()
        upper_dir = open_dir(upper_fd, parts)
        if upper_dir is None:
            continue  # swapped away by the session meanwhile
        lower_dir = open_dir(lower_fd, parts)
        try:
            yield from _walk_dir(upper_dir, lower_dir, parts, below_opaque, pending, budget)
        finally:
            os.close(upper_dir)
            if lower_dir is not None:
                os.close(lower_dir)


def _walk_dir(
    upper_dir: int,
    lower_dir: int | None,
    parts: tuple[str, ...],
    below_opaque: bool,
    pending: list[tuple[tuple[str, ...], bool]],
    budget: Budget,
) -> Iterator[Found]:
    """The changes of one upper directory; its subdirectories go on `pending`."""
    prefix = "/".join(parts) + "/" if parts else ""
    with os.scandir(upper_dir) as scan:
        entries = list(_bounded(scan, budget, len(prefix)))
    opaque = bool(parts) and (below_opaque or _opaque(upper_dir))
    if lower_dir is not None and opaque:
        yield from _deleted(lower_dir, set(os.listdir(lower_dir)) - {entry.name for entry in entries}, prefix)
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode):
            change = _entry_change(upper_dir, lower_dir, entry.name, prefix + entry.name, st, budget)
            if change is not None and change.kind != "deleted" and _lower_is_dir(lower_dir, entry.name):
                # A directory the session replaced by a file or link: the host's goes first (apply
                # deletes before it writes), as no file is ever renamed over a directory.
                yield Found(change.path + "/", "deleted")
                change.kind = "added"
            if change is not None:
                yield change
        elif len(parts) >= MAX_DEPTH:
            budget.truncated = True
        else:
            if lower_dir is not None:
                with contextlib.suppress(OSError):
                    low = os.stat(entry.name, dir_fd=lower_dir, follow_symlinks=False)
                    if not stat.S_ISDIR(low.st_mode):  # a file the session replaced by a directory
                        yield Found(prefix + entry.name, "deleted")
            if budget.descend is None or budget.descend(prefix + entry.name):
                pending.append(((*parts, entry.name), opaque))


def _lower_is_dir(lower_dir: int | None, name: str) -> bool:
    if lower_dir is None:
        return False
    try:
        return stat.S_ISDIR(os.stat(name, dir_fd=lower_dir, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _deleted(lower_dir: int, names: set[str], prefix: str) -> Iterator[Found]:
    """The lower's `names` as deleted (an opaque directory hides them); a directory's with a trailing '/'."""
    for name in sorted(names):
        with contextlib.suppress(OSError):
            low = os.stat(name, dir_fd=lower_dir, follow_symlinks=False)
            yield Found(prefix + name + ("/" if stat.S_ISDIR(low.st_mode) else ""), "deleted")


def _bounded(scan: Iterator[os.DirEntry[str]], budget: Budget, prefix_bytes: int) -> Iterator[os.DirEntry[str]]:
    for entry in scan:
        budget.entries -= 1
        budget.path_bytes -= prefix_bytes + len(entry.name)
        if budget.entries < 0 or budget.path_bytes < 0:
            budget.truncated = True
            return
        yield entry
