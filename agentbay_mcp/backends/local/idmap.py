"""Mounts for workspaces: an id-mapped clone of a host directory, and an overlay over it.

The sandbox runs as host uid 65534 (sandbox.UNPRIVILEGED_UID), so a project owned by another uid is
not writable for it. An id-mapped mount shows the directory with its owner's uid and gid mapped to
65534 (and 65534's writes stored as the owner's), without touching a file on the host:

    open_tree(dir, OPEN_TREE_CLONE)                a detached copy of the directory's mount (not of
                                                   mounts below it: those stay out of the sandbox)
    mount_setattr(MOUNT_ATTR_IDMAP, userns)        the mapping, from a user namespace made for it
    move_mount(..., <session dir>/ws/NAME/lower)   attached under the session dir, host-side

The user namespace comes from a short-lived `unshare --user sleep` whose maps we write; the mount
keeps its own reference, so the helper process is killed at once. `overlay` mounts overlayfs on the
host over that lower with the session's upper and work dirs. Every mount lives under the session dir,
so `disk_quota.unmount_under` (every ending of a session, reaping included) takes them down before
anything is removed. Needs root and Linux >= 5.19 (id-mapped lower layers of overlayfs).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path

# x86_64 and aarch64 share these (the "new" syscall table numbers, 424 and up).
_SYS_OPEN_TREE = 428
_SYS_MOVE_MOUNT = 429
_SYS_MOUNT_SETATTR = 442
_OPEN_TREE_CLONE = 1
_OPEN_TREE_CLOEXEC = 0o2000000
_AT_EMPTY_PATH = 0x1000
_MOVE_MOUNT_F_EMPTY_PATH = 0x4
_MOUNT_ATTR_RDONLY = 0x1
_MOUNT_ATTR_NOSUID = 0x2
_MOUNT_ATTR_NODEV = 0x4
_MOUNT_ATTR_IDMAP = 0x00100000
_MS_NOSUID = 2
_MS_NODEV = 4
_USERNS_TIMEOUT_SECONDS = 5.0

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
_MNT_DETACH = 2


class _MountAttr(ctypes.Structure):
    _fields_ = (
        ("attr_set", ctypes.c_uint64),
        ("attr_clr", ctypes.c_uint64),
        ("propagation", ctypes.c_uint64),
        ("userns_fd", ctypes.c_uint64),
    )


def supported_arch() -> bool:
    """Whether the syscall numbers above are this machine's."""
    return platform.machine() in ("x86_64", "aarch64")


def _check(result: int, what: str) -> int:
    if result < 0:
        code = ctypes.get_errno()
        raise OSError(code, f"{what}: {os.strerror(code)}")
    return result


def mapping_userns(uid: int, gid: int, to_id: int) -> int:
    """An fd of a new user namespace mapping `uid`/`gid` (as stored on disk) to `to_id` (as seen)."""
    child = subprocess.Popen(
        ["unshare", "--user", "sleep", "30"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        ours = os.readlink("/proc/self/ns/user")
        deadline = time.monotonic() + _USERNS_TIMEOUT_SECONDS
        while True:  # until unshare(CLONE_NEWUSER) has happened in the child
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{child.pid}/ns/user") != ours:
                    break
            if child.poll() is not None or time.monotonic() > deadline:
                raise OSError(f"unshare --user did not make a user namespace (exit {child.poll()})")
            time.sleep(0.0005)
        Path(f"/proc/{child.pid}/uid_map").write_text(f"{uid} {to_id} 1\n")
        Path(f"/proc/{child.pid}/setgroups").write_text("deny\n")
        Path(f"/proc/{child.pid}/gid_map").write_text(f"{gid} {to_id} 1\n")
        return os.open(f"/proc/{child.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        child.kill()
        child.wait(timeout=_USERNS_TIMEOUT_SECONDS)


def mount_idmapped(source: Path | int, target: Path, userns_fd: int, *, read_only: bool) -> None:
    """Attach an id-mapped (nosuid, nodev; read-only if asked) clone of `source`'s mount at `target`;
    `source` is a path or the fd of a directory (then no path is resolved again)."""
    at, name, flags = (source, b"", _AT_EMPTY_PATH) if isinstance(source, int) else (-100, os.fsencode(source), 0)
    tree = _check(
        _libc.syscall(
            _SYS_OPEN_TREE,
            ctypes.c_int(at),  # -100: AT_FDCWD
            ctypes.c_char_p(name),
            ctypes.c_uint(_OPEN_TREE_CLONE | _OPEN_TREE_CLOEXEC | flags),
        ),
        f"open_tree of {source}",
    )
    try:
        attr = _MountAttr(
            attr_set=_MOUNT_ATTR_IDMAP
            | _MOUNT_ATTR_NOSUID
            | _MOUNT_ATTR_NODEV
            | (_MOUNT_ATTR_RDONLY if read_only else 0),
            userns_fd=userns_fd,
        )
        _check(
            _libc.syscall(
                _SYS_MOUNT_SETATTR,
                ctypes.c_int(tree),
                ctypes.c_char_p(b""),
                ctypes.c_uint(_AT_EMPTY_PATH),
                ctypes.byref(attr),
                ctypes.c_size_t(ctypes.sizeof(attr)),
            ),
            f"id-mapping {source}",
        )
        _check(
            _libc.syscall(
                _SYS_MOVE_MOUNT,
                ctypes.c_int(tree),
                ctypes.c_char_p(b""),
                ctypes.c_int(-100),
                ctypes.c_char_p(os.fsencode(target)),
                ctypes.c_uint(_MOVE_MOUNT_F_EMPTY_PATH),
            ),
            f"attaching {source} at {target}",
        )
    finally:
        os.close(tree)


def mount_overlay(lower: Path, upper: Path, work: Path, merged: Path) -> None:
    """overlayfs at `merged`. No redirects, metacopy or index: the upper then holds whole files,
    whiteouts and opaque dirs only, which is all workspace_diff reads."""
    for path in (lower, upper, work):
        if any(c in str(path) for c in ",:\\"):
            raise OSError(f"overlay cannot take the path {path} (',', ':' or '\\' in it)")
    options = f"lowerdir={lower},upperdir={upper},workdir={work},redirect_dir=off,metacopy=off,index=off,xino=off"
    if _libc.mount(b"overlay", os.fsencode(merged), b"overlay", _MS_NOSUID | _MS_NODEV, options.encode()) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"overlay mount at {merged}: {os.strerror(code)}")


def probe(work_dir: Path, uid: int) -> str | None:
    """None if id-mapped mounts work here (tried on a scratch dir under `work_dir`), else why not."""
    if os.geteuid() != 0:
        return "the server is not root (id-mapped mounts need root)"
    if not supported_arch():
        return f"this machine ({platform.machine()}) is not x86_64 or aarch64"
    try:
        # A fresh name (mkdtemp): `work_dir` is the shared /tmp, where a guessable name (the pid) let
        # another user plant a link and have root mount over, then rmdir, directories of their choice.
        scratch = Path(tempfile.mkdtemp(prefix=".ws-probe-", dir=work_dir))
    except OSError as exc:
        return f"id-mapped mounts could not be tried in {work_dir} ({exc.strerror})"
    source, target = scratch / "source", scratch / "target"
    try:
        source.mkdir()
        target.mkdir()
        userns = mapping_userns(0, 0, uid)
        try:
            mount_idmapped(source, target, userns, read_only=True)
        finally:
            os.close(userns)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"id-mapped mounts do not work here ({exc}); Linux >= 5.19 and root are needed"
    finally:
        with contextlib.suppress(OSError):
            _libc.umount2(os.fsencode(target), _MNT_DETACH)
            target.rmdir()
            source.rmdir()
            scratch.rmdir()
    return None
