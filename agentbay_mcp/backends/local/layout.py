"""Where things live in a local state dir, and the small file-system moves the backend relies on.

    <state_dir>/
      servers/<server_id>.lock                  held (flock) by each live server
      sessions/<session_id>/meta.json           the session record; its mtime is the last use
      sessions/<session_id>/home/               /home/user inside the sandbox (read-write)
      sessions/<session_id>/tmp/                /tmp inside the sandbox
        (with a disk quota, home and tmp are symlinks into disk/, the session's own file system
        mounted from disk.img: see disk_quota.py)
      sessions/<session_id>/ws/NAME/            its workspaces' mounts (workspaces.py)
      disk-templates/                           the empty file systems session images are copied from
      sessions/.staging-<server_id>-<id>/       a session being created (renamed into place when whole)
      sessions/.trash-<id>-<random>/            a session being deleted (renamed out first, then removed)

Creation and deletion are a single `rename` each, so nobody ever sees half a session. A mount
inside moves with its directory; `remove_tree` unmounts before it removes anything.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from agentbay_mcp.backends.local.disk_quota import unmount_under
from agentbay_mcp.backends.local.sandbox import UNPRIVILEGED_UID
from agentbay_mcp.backends.records import NetworkPolicy, SessionRecord
from agentbay_mcp.errors import BackendUnavailableError

logger = logging.getLogger(__name__)

SESSION_ID_RE = re.compile(r"^session-[0-9a-f]{24}$")
STAGING_PREFIX = ".staging-"
#: Where a session's workspace mounts live (workspaces.py): never removed while one is mounted.
WORKSPACE_MOUNTS = "ws"
TRASH_PREFIX = ".trash-"


def check_reachable(path: Path) -> None:
    """Refuse a state dir the unprivileged sandbox uid cannot traverse to (root servers only)."""
    for parent in [path, *path.parents]:
        if parent.stat().st_mode & 0o001 == 0:
            raise BackendUnavailableError(
                f"The sandbox user (uid {UNPRIVILEGED_UID}) cannot reach the state dir {path}: {parent} "
                f"is not traversable by others. Run 'chmod o+x {parent}', or use a state dir such as "
                "/var/lib/agentbay-mcp (the default for root)."
            )


def new_session_id() -> str:
    """An unguessable session id (96 random bits), shaped like AgentBay's `session-...` ids."""
    return "session-" + secrets.token_hex(12)


def is_session_id(text: str) -> bool:
    """Whether `text` has the shape of a local session id (so it is safe to use as a path part)."""
    return bool(SESSION_ID_RE.match(text))


class StateDir:
    """Paths inside one state dir."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.servers = root / "servers"
        self.sessions = root / "sessions"

    def ensure(self) -> None:
        """Create the skeleton (private to this user: session ids are capabilities)."""
        for path in (self.root, self.servers, self.sessions):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)

    def session_dir(self, session_id: str) -> Path:
        """The directory of a session id that passed `is_session_id`."""
        return self.sessions / session_id

    def meta_path(self, session_id: str) -> Path:
        """The session's record."""
        return self.session_dir(session_id) / "meta.json"

    def staging_dir(self, server_id: str, session_id: str) -> Path:
        """Where `server_id` assembles a new session."""
        return self.sessions / f"{STAGING_PREFIX}{server_id}-{session_id}"

    def unusable(self, exc: OSError) -> BackendUnavailableError:
        """The error of a state dir this user cannot use."""
        return BackendUnavailableError(
            f"State dir {self.root} is not usable ({exc.strerror or exc}). Make it writable by "
            "this user, or point AGENTBAY_MCP_STATE_DIR / --state-dir at a writable directory."
        )

    def last_used(self, session_id: str) -> datetime | None:
        """When the session was last used, from its record's mtime."""
        try:
            mtime = self.meta_path(session_id).stat().st_mtime
        except OSError:
            return None
        return datetime.fromtimestamp(mtime, UTC)

    def session_ids(self) -> list[str]:
        """The ids of the published sessions (not staging or trash), sorted."""
        try:
            return sorted(name for name in os.listdir(self.sessions) if is_session_id(name))
        except FileNotFoundError:
            return []


def write_record(path: Path, record: SessionRecord) -> None:
    """Write a record atomically (temp file + rename in the same directory)."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(record.model_dump_json(indent=1))
    tmp.replace(path)


def read_record(path: Path) -> SessionRecord:
    """Read a record; raises OSError or ValueError if it is missing or damaged."""
    return SessionRecord.model_validate_json(path.read_bytes())


def save_network(state: StateDir, session_id: str, policy: NetworkPolicy) -> None:
    """Keep a changed egress policy in the session's record (what get_session and a restart see)."""
    if is_session_id(session_id):
        with contextlib.suppress(OSError, ValueError):
            record = read_record(state.meta_path(session_id)).model_copy(update={"network": policy})
            write_record(state.meta_path(session_id), record)


def _make_writable_and_retry(func: object, path: str, _exc: object) -> None:
    # A sandboxed program may leave read-only directories behind; the owner can always chmod them.
    parent = os.path.dirname(path)
    with contextlib.suppress(OSError):
        os.chmod(parent, stat.S_IRWXU)
        if os.path.isdir(path) and not os.path.islink(path):
            os.chmod(path, stat.S_IRWXU)
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)


def remove_tree(path: Path) -> None:
    """Remove a directory tree that may contain read-only parts and mounts; missing is fine.

    Mounts inside (a session's disk) are unmounted first, so nothing is removed file by file from
    a session's file system and nothing ever crosses into a mount. If one cannot be unmounted, only
    `rm --one-file-system` runs, which leaves it (and the directories above it) in place.
    A session can build a tree thousands of levels deep, on which shutil.rmtree (recursive in
    Python 3.11) raises RecursionError: then `rm -rf` (iterative, GNU fts) finishes the job.
    """
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_symlink() and (left := unmount_under(path)):
        root = os.path.realpath(path)
        if any(os.path.relpath(point, root).split("/")[0] == WORKSPACE_MOUNTS for point in left):
            # A host directory is mounted there, maybe on this very file system (rm's
            # --one-file-system would not stop at a bind mount): remove nothing, the user's project is in it.
            logger.error("%s still has a workspace mounted; leaving it in place", path)
            return
        _rm_one_file_system(path)
        return
    with contextlib.suppress(RecursionError):
        _rmtree(path)
    if path.exists() or path.is_symlink():
        _rm_one_file_system(path)


def _rm_one_file_system(path: Path) -> None:
    subprocess.run(
        ["rm", "-rf", "--one-file-system", "--", str(path)],
        check=False,
        timeout=600,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _rmtree(path: Path) -> None:
    if sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=_make_writable_and_retry)
    else:
        shutil.rmtree(path, onerror=_make_writable_and_retry)


def discard(state: StateDir, path: Path, name: str) -> None:
    """Rename `path` out of sight, then remove it (so no one sees it half-deleted)."""
    trash = state.sessions / f"{TRASH_PREFIX}{name}-{secrets.token_hex(4)}"
    try:
        path.rename(trash)
    except FileNotFoundError:
        return
    remove_tree(trash)
