"""A per-session disk quota: an ext4 file system in a sparse image on a loop device.

    <state_dir>/disk-templates/ext4-v1-<bytes>.img     one freshly made file system per size (sparse)
    sessions/<id>/disk.img                           a copy of it (sparse: ~2 MB on the host)
    sessions/<id>/disk/                              the image, loop-mounted (nosuid, nodev, discard, nobarrier)
    sessions/<id>/home -> disk/home, tmp -> disk/tmp the sandbox binds these, so home, /tmp and the
                                                     agent's output spill files share one quota

Past the quota a write inside fails with ENOSPC (the file system is full, not the host's disk), `df`
inside shows the quota, and with `discard` deleting files punches holes in the image so the host
file shrinks again. Nothing here spawns a process: the template is made once (mkfs.ext4, with the
inode tables zeroed up front so the kernel's lazy-init thread never writes into the images later)
and copied extent by extent; the loop device is set up with one ioctl (LOOP_CONFIGURE, with
autoclear, so it detaches by itself when the file system is unmounted) and mounted with mount(2).

Unmounting is `unmount_under`: every ending of a session (delete, shutdown, reaping, staging or
trash litter) goes through `layout.remove_tree`, which calls it before removing anything, so a
removal never crosses into a mounted file system.

It needs root and loop devices; where it cannot work `probe` says why and how to fix it, and the
backend runs sessions without a quota (with one warning in the log, and `doctor` saying so).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import logging
import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from agentbay_mcp.backends.common.session_paths import SESSION_HOME, SESSION_TMP

logger = logging.getLogger(__name__)

IMAGE_NAME = "disk.img"
MOUNT_NAME = "disk"
TEMPLATE_DIR = "disk-templates"
#: Bump when the mkfs options change, so servers never copy a template made with other ones.
TEMPLATE_VERSION = "v1"

_LOOP_CTL_GET_FREE = 0x4C82
_LOOP_CONFIGURE = 0x4C0A
_LO_FLAGS_AUTOCLEAR = 4
_MS_NOSUID = 2
_MS_NODEV = 4
_MNT_DETACH = 2
_MKFS_TIMEOUT_SECONDS = 30
_OCTAL_ESCAPE = re.compile(rb"\\([0-7]{3})")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


class DiskQuotaError(OSError):
    """The session's quota file system could not be made or mounted."""


@dataclass(frozen=True)
class DiskQuota:
    """Makes, mounts and unmounts the quota file systems of one state dir."""

    size_bytes: int
    template: Path

    @property
    def size_mb(self) -> int:
        """The quota in MB, as operators set it."""
        return self.size_bytes // (1024 * 1024)

    @classmethod
    def prepare(cls, state_root: Path, size_bytes: int) -> DiskQuota:
        """Make (or reuse) the template for this size and check one copy mounts; raises DiskQuotaError."""
        problem = unavailable_reason()
        if problem is not None:
            raise DiskQuotaError(errno.EPERM, f"{problem[0]} (fix: {problem[1]})")
        templates = state_root / TEMPLATE_DIR
        templates.mkdir(mode=0o700, exist_ok=True)
        template = templates / f"ext4-{TEMPLATE_VERSION}-{size_bytes}.img"
        if not template.exists():
            _make_template(template, size_bytes)
        quota = cls(size_bytes, template)
        quota._check_mount(templates)
        return quota

    def provision(self, session_dir: Path, owner_uid: int) -> None:
        """Give a (staging) session dir its image, mounted at disk/, with home and tmp on it."""
        image = session_dir / IMAGE_NAME
        mount_point = session_dir / MOUNT_NAME
        copy_sparse(self.template, image)
        mount_point.mkdir(mode=0o711)
        mount_image(image, mount_point)
        # The sandbox uid must traverse the file system's root to its home and tmp, but not list it.
        mount_point.chmod(0o711)
        for name in ("home", "tmp"):
            (mount_point / name).mkdir(mode=0o700)
            os.chown(mount_point / name, owner_uid, owner_uid)
            (session_dir / name).symlink_to(f"{MOUNT_NAME}/{name}")

    def _check_mount(self, work_dir: Path) -> None:
        probe = work_dir / f".probe-{os.getpid()}"
        remove_probe(probe)
        probe.mkdir(mode=0o700)
        try:
            copy_sparse(self.template, probe / IMAGE_NAME)
            (probe / MOUNT_NAME).mkdir()
            mount_image(probe / IMAGE_NAME, probe / MOUNT_NAME)
        finally:
            remove_probe(probe)


def on_quota_disk(session_path: str) -> bool:
    """Whether a session path (as the session gives it) is under home or /tmp, the quota's file system."""
    if not session_path.startswith("/"):
        return True  # relative to the home
    return any(session_path == top or session_path.startswith(f"{top}/") for top in (SESSION_HOME, SESSION_TMP))


def remove_probe(path: Path) -> None:
    """Unmount and remove a probe directory (never crossing into a mount)."""
    if not unmount_under(path) and path.exists():
        shutil.rmtree(path, ignore_errors=True)


def unavailable_reason() -> tuple[str, str] | None:
    """(why this host cannot enforce quotas, the fix); None when it can, as far as can be seen without trying."""
    if os.geteuid() != 0:
        return (
            "the server is not root, and loop mounts need root",
            "run the server as root, or give the state dir a file system of its own sized for all sessions",
        )
    if not Path("/dev/loop-control").exists():
        return "no /dev/loop-control", "load the loop module ('modprobe loop'), or give the container loop devices"
    if shutil.which("mkfs.ext4") is None:
        return "mkfs.ext4 is not installed", "apt-get install e2fsprogs"
    return None


def _make_template(template: Path, size_bytes: int) -> None:
    """A fresh ext4 image, written beside `template` and renamed into place (servers may race)."""
    partial = template.with_name(f".{template.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.ftruncate(fd, size_bytes)
    finally:
        os.close(fd)
    # -m 0: no blocks reserved for root (the quota is all the session's); no journal: a session
    # never outlives a crash of its server, so there is nothing to recover; lazy_itable_init=0:
    # zero the inode tables now (mkfs punches holes for that, so the image stays sparse) instead
    # of the kernel writing them into every session's image after its mount.
    argv = [
        "mkfs.ext4", "-q", "-F", "-m", "0", "-O", "^has_journal",
        "-E", "lazy_itable_init=0,root_owner=0:0", str(partial),
    ]  # fmt: skip
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_MKFS_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        partial.unlink(missing_ok=True)
        raise DiskQuotaError(errno.EIO, f"mkfs.ext4 could not run: {exc}") from exc
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise DiskQuotaError(errno.EIO, f"mkfs.ext4 failed: {done.stderr.strip()[-300:]}")
    partial.replace(template)


def copy_sparse(source: Path, target: Path) -> None:
    """Copy only the data extents of a sparse file (a 4 GB template holds about 2 MB of them)."""
    src = os.open(source, os.O_RDONLY | os.O_CLOEXEC)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            size = os.fstat(src).st_size
            position = 0
            while position < size:
                try:
                    start = os.lseek(src, position, os.SEEK_DATA)
                except OSError as exc:
                    if exc.errno == errno.ENXIO:  # only a hole is left
                        break
                    raise
                end = os.lseek(src, start, os.SEEK_HOLE)
                offset = start
                while offset < end:
                    copied = os.copy_file_range(src, dst, end - offset, offset, offset)
                    if copied == 0:
                        raise DiskQuotaError(errno.EIO, f"{source} shrank while being copied")
                    offset += copied
                position = end
            os.ftruncate(dst, size)
        finally:
            os.close(dst)
    finally:
        os.close(src)


def _loop_config(backing_fd: int, name: str) -> bytes:
    # struct loop_config { u32 fd; u32 block_size; struct loop_info64 info; u64 reserved[8]; }
    # struct loop_info64 { u64 device, inode, rdevice, offset, sizelimit; u32 number, encrypt_type,
    #   encrypt_key_size, flags; u8 file_name[64], crypt_name[64], encrypt_key[32]; u64 init[2]; }
    info = struct.pack(
        "=5Q4I64s64s32s2Q", 0, 0, 0, 0, 0, 0, 0, 0, _LO_FLAGS_AUTOCLEAR, name.encode()[-63:], b"", b"", 0, 0
    )
    return struct.pack("=II", backing_fd, 0) + info + bytes(64)


def mount_image(image: Path, mount_point: Path) -> None:
    """Attach `image` to a free loop device (autoclear) and mount it at `mount_point`."""
    backing = os.open(image, os.O_RDWR | os.O_CLOEXEC)
    try:
        loop = _attach_loop(backing, str(image))
    finally:
        os.close(backing)
    try:
        device = f"/dev/loop{loop[0]}".encode()
        flags = _MS_NOSUID | _MS_NODEV
        # nobarrier: a session's files never outlive its server, so nothing needs them on stable
        # storage; without it every fsync inside (and every mount and unmount) would fsync the image
        # on the host's disk, costing ~10 ms per create and delete on a busy host.
        if _libc.mount(device, str(mount_point).encode(), b"ext4", flags, b"discard,nobarrier") != 0:
            code = ctypes.get_errno()
            raise DiskQuotaError(code, f"mount of {image} failed: {os.strerror(code)}")
    finally:
        os.close(loop[1])  # autoclear: without a mount holding it, this detaches the device


def _attach_loop(backing_fd: int, name: str) -> tuple[int, int]:
    """(number, open fd) of a loop device now backed by `backing_fd`; retries races for free devices."""
    control = os.open("/dev/loop-control", os.O_RDWR | os.O_CLOEXEC)
    try:
        for _ in range(64):
            number = fcntl.ioctl(control, _LOOP_CTL_GET_FREE)
            try:
                fd = os.open(f"/dev/loop{number}", os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError as exc:
                raise DiskQuotaError(
                    errno.ENODEV, f"/dev/loop{number} does not exist: give this host (or container) loop devices"
                ) from exc
            try:
                fcntl.ioctl(fd, _LOOP_CONFIGURE, _loop_config(backing_fd, name))
            except OSError as exc:
                os.close(fd)
                if exc.errno == errno.EBUSY:  # another mount took it between the two calls
                    continue
                raise DiskQuotaError(exc.errno or errno.EIO, f"could not set up a loop device: {exc.strerror}") from exc
            return number, fd
    finally:
        os.close(control)
    raise DiskQuotaError(errno.EBUSY, "no free loop device after 64 attempts")


def _mount_points() -> list[str]:
    """Mount points of this mount namespace (mountinfo escapes space, tab, newline, backslash in octal)."""
    points = []
    with open("/proc/self/mountinfo", "rb") as handle:
        for line in handle:
            fields = line.split(b" ")
            if len(fields) > 4:
                points.append(os.fsdecode(_OCTAL_ESCAPE.sub(lambda m: bytes([int(m[1], 8)]), fields[4])))
    return points


def unmount_under(path: Path) -> list[str]:
    """Unmount every mount at or below `path`, deepest first; returns the ones that stay mounted.

    A busy mount (a process of the host sitting in it) is detached lazily: it vanishes from the
    tree at once, so nothing removing the directory can reach into it, and its loop device
    detaches once the last user lets go.
    """
    root = os.path.realpath(path)
    prefix = root.rstrip("/") + "/"
    inside = [p for p in _mount_points() if p == root or p.startswith(prefix)]
    if not inside:
        return []
    for point in sorted(set(inside), key=len, reverse=True):
        target = point.encode()
        if _libc.umount2(target, 0) != 0 and ctypes.get_errno() in (errno.EBUSY,):
            _libc.umount2(target, _MNT_DETACH)
    left = [p for p in _mount_points() if p == root or p.startswith(prefix)]
    if left:
        logger.warning("could not unmount %s (is this server root?)", ", ".join(left))
    return left


def prepare_quota(state_root: Path, size_bytes: int, bwrap: bool) -> DiskQuota | None:
    """The per-session disk quota of a server, or None (with a warning saying why it is not enforced)."""
    if size_bytes <= 0:
        return None
    if not bwrap:
        logger.warning(
            "the per-session disk quota (%d MB) is not enforced without bubblewrap isolation: "
            "sessions can fill this host's disk",
            size_bytes // 2**20,
        )
        return None
    try:
        return DiskQuota.prepare(state_root, size_bytes)
    except OSError as exc:
        logger.warning(
            "the per-session disk quota (%d MB) is NOT enforced: %s. Sessions can fill this host's disk; "
            "'agentbay-mcp doctor' checks this.",
            size_bytes // 2**20,
            exc.strerror or exc,
        )
        return None


def provision_home(staging: Path, disk: DiskQuota | None, sandbox_uid: int, *, chown_plain: bool) -> None:
    """A new session's home and /tmp: on its quota disk, owned by `sandbox_uid`, or plain directories (owned
    by it only with `chown_plain`: a confined root server's). Private to the sandbox user: on a root server
    the session dirs are reachable (o+x) by every local user, and their paths are visible in bwrap's
    command line."""
    if disk is not None:
        disk.provision(staging, sandbox_uid)
        return
    for name in ("home", "tmp"):
        (staging / name).mkdir(mode=0o700)
        if chown_plain:
            os.chown(staging / name, sandbox_uid, sandbox_uid)
