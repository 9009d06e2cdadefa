"""Writing a session's workspace changes to the host directory: untrusted paths and content, host-side.

Every path is resolved beneath the workspace root's fd one component at a time with
O_NOFOLLOW|O_DIRECTORY (a missing directory is made, owned by the workspace's owner), so a link in
the way - the session's or the project's own - stops the write instead of leading out of the tree.
A file is read from the upper dir the same way (O_NOFOLLOW: the session may swap it for a link
during the apply), written to a temporary name beside its target, given the owner's uid/gid and the
file's permission bits (never set-id), and renamed over the target; a deletion unlinks (or removes a
directory with shutil.rmtree's fd-based walk, which follows no link). A symlink the session made is
applied only if its target is relative and stays inside the workspace.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import posixpath
import secrets
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field

from agentbay_mcp.backends.local.ws_tree import O_DIR, Found, open_dir, open_file, shown, split_path

_CHUNK = 1024 * 1024
#: What apply writes, at most, in one call.
MAX_APPLY_BYTES = 8 * 1024**3


@dataclass
class Outcome:
    """What one apply did."""

    applied: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # "path: why"
    #: Host ctime_ns of what it wrote, and of the directories it wrote in ('/'-ended paths): a deletion
    #: of one of them later is no conflict unless the host changed it after.
    ctimes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Target:
    """The host side of an apply: the workspace root's fd and who owns what is written."""

    root_fd: int
    uid: int
    gid: int


def _host_parent(target: Target, parts: tuple[str, ...], dir_modes: Sequence[int], ctimes: dict[str, int]) -> int:
    """The fd of the host directory `parts`, made (owned by the owner) where missing; OSError if a
    component is a link or not a directory. The ctimes of directories it adds to go in `ctimes`."""
    fd = os.open(".", O_DIR, dir_fd=target.root_fd)
    try:
        for index, part in enumerate(parts):
            try:
                next_fd = os.open(part, O_DIR, dir_fd=fd)
            except FileNotFoundError:
                os.mkdir(part, dir_modes[index] & 0o777, dir_fd=fd)
                if index:
                    ctimes["/".join(parts[:index]) + "/"] = os.fstat(fd).st_ctime_ns
                next_fd = os.open(part, O_DIR, dir_fd=fd)
                os.fchown(next_fd, target.uid, target.gid)
            os.close(fd)
            fd = next_fd
    except BaseException:
        os.close(fd)
        raise
    return fd


def _upper_dir_modes(upper_fd: int, parts: tuple[str, ...]) -> list[int]:
    """Permission bits of the upper's directories along `parts` (for the ones the host lacks)."""
    modes, fd = [], os.open(".", O_DIR, dir_fd=upper_fd)
    try:
        for part in parts:
            next_fd = os.open(part, O_DIR, dir_fd=fd)
            os.close(fd)
            fd = next_fd
            modes.append(os.fstat(fd).st_mode)
    finally:
        os.close(fd)
    return modes


def _write_file(target: Target, parent: int, name: str, upper_parent: int, budget: list[int]) -> None:
    source = open_file(upper_parent, name)
    if source is None:
        raise OSError("no longer a regular file in the session")
    temp = f".agentbay-apply-{secrets.token_hex(6)}"
    try:
        info = os.fstat(source)
        if info.st_size > MAX_APPLY_BYTES:
            raise OSError("past the size one workspace_apply writes")
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=parent)
        try:
            _copy_data(source, out, budget)
            os.fchown(out, target.uid, target.gid)
            os.fchmod(out, info.st_mode & 0o777)
        finally:
            os.close(out)
        _replace(parent, temp, name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=parent)
        raise
    finally:
        os.close(source)


def _copy_data(source: int, out: int, budget: list[int]) -> None:
    """Copy what `source` holds to `out`, its holes left holes; its data counts against `budget`.

    A session's sparse file costs it nothing of its disk quota: written out whole, it filled the
    host's disk with zeros (8 GiB an apply, as many applies as asked). Terminates whatever the
    session does to the file meanwhile: each round starts past the last one's end.
    """
    offset = 0
    while True:
        try:
            start = os.lseek(source, offset, os.SEEK_DATA)
        except OSError as exc:
            if exc.errno == errno.ENXIO:  # no data past `offset`
                break
            raise
        end = os.lseek(source, start, os.SEEK_HOLE)
        position = start
        while position < end and (chunk := os.pread(source, min(_CHUNK, end - position), position)):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise OSError("past the size one workspace_apply writes")
            view = memoryview(chunk)
            while view:
                written = os.pwrite(out, view, position)
                view, position = view[written:], position + written
        offset = max(end, offset + 1)
    size = os.fstat(source).st_size
    if size > MAX_APPLY_BYTES:
        raise OSError("past the size one workspace_apply writes")
    os.ftruncate(out, size)


def _replace(parent: int, temp: str, name: str) -> None:
    """Rename `temp` over `name`, unless `name` is a directory (never replaced by a file)."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISDIR(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode):
            # (Not naming `name`: the session made it, and the refusal is shown as a line of text.)
            raise IsADirectoryError(errno.EISDIR, "a directory on the host has that name")
    os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)


def link_stays_inside(parts: tuple[str, ...], link: str) -> bool:
    """Whether a link at `parts` pointing at `link` resolves inside the workspace.

    Read as text only if every '..' comes first: a '..' after a name climbs from wherever that name
    leads, which may be another link (d -> . makes d/d/d/../../.. three levels above the root, though
    it normalizes to '.'). The leading '..' climb the link's own directories, real ones (apply makes
    them, following no link), and the names after them are held to the same rule by their own links.
    """
    if not link or link.startswith("/") or "\0" in link:
        return False
    names = [name for name in link.split("/") if name not in ("", ".")]
    ups = len(list(itertools.takewhile(lambda name: name == "..", names)))
    if ".." in names[ups:]:
        return False
    resolved = posixpath.normpath(posixpath.join("/".join(parts[:-1]), link))
    return not (resolved == ".." or resolved.startswith("../") or resolved.startswith("/"))


def _write_link(target: Target, parent: int, name: str, link: str) -> None:
    temp = f".agentbay-apply-{secrets.token_hex(6)}"
    os.symlink(link, temp, dir_fd=parent)
    try:
        os.chown(temp, target.uid, target.gid, dir_fd=parent, follow_symlinks=False)
        _replace(parent, temp, name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=parent)
        raise


def _delete(parent: int, name: str) -> None:
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(info.st_mode):
        shutil.rmtree(name, dir_fd=parent)  # the fd-based walk: follows no link
    else:
        os.unlink(name, dir_fd=parent)


def apply_one(target: Target, upper_fd: int, change: Found, budget: list[int], ctimes: dict[str, int]) -> None:
    """Apply one change, putting the new host ctime_ns of what it wrote (and of the directories it
    wrote in) in `ctimes`. OSError/ValueError if refused."""
    parts = split_path(change.path.rstrip("/"))
    parent_path = "/".join(parts[:-1]) + "/" if len(parts) > 1 else None
    if change.what == "symlink" and not link_stays_inside(parts, change.target or ""):
        raise ValueError(f"a link to {change.target!r} would lead outside the workspace")
    if change.kind == "deleted":
        parent = open_dir(target.root_fd, parts[:-1])
        if parent is not None:  # else already gone
            try:
                _delete(parent, parts[-1])
                if parent_path is not None:
                    ctimes[parent_path] = os.fstat(parent).st_ctime_ns
            finally:
                os.close(parent)
        return
    upper_parent = open_dir(upper_fd, parts[:-1])
    if upper_parent is None:
        raise OSError("the session no longer has it")
    try:
        parent = _host_parent(target, parts[:-1], _upper_dir_modes(upper_fd, parts[:-1]), ctimes)
        try:
            if change.what == "symlink":
                _write_link(target, parent, parts[-1], change.target or "")
            else:
                _write_file(target, parent, parts[-1], upper_parent, budget)
            ctimes[change.path] = os.stat(parts[-1], dir_fd=parent, follow_symlinks=False).st_ctime_ns
            if parent_path is not None:
                ctimes[parent_path] = os.fstat(parent).st_ctime_ns
        finally:
            os.close(parent)
    finally:
        os.close(upper_parent)


def apply_changes(target: Target, upper_fd: int, changes: Sequence[Found]) -> Outcome:
    """Apply `changes` (the caller filtered conflicts out), each on its own: one refused does not stop the rest.
    Deletions go first, so what the session put where the host had something else finds the place free."""
    outcome, budget = Outcome(), [MAX_APPLY_BYTES]
    for change in sorted(changes, key=lambda change: change.kind != "deleted"):
        try:
            apply_one(target, upper_fd, change, budget, outcome.ctimes)
        except (OSError, ValueError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            if isinstance(exc, OSError) and exc.errno in (errno.ELOOP, errno.ENOTDIR):  # a link in the way
                reason = "a symlink or file is in the way on the host"
            outcome.refused.append(f"{shown(change.path)}: {reason}")
            continue
        outcome.applied.append(change.path)
    return outcome
