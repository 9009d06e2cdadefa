"""Moving a context between the store and a session: copied in at creation, copied back by a sync.

Copying in happens before the session's sandbox runs anything (a pooled session's agent runs, but no
command yet), into a tree only we have touched, so `cp -a` does it (fast, in C). Copying back reads a
tree the session wrote, so tree_copy's walker does it, never following a symlink. Each mount's base
version (the version it was given or last synced) is kept in the session dir's contexts.json, where
the sandbox cannot write: a sync finding the context at another version says whose sync it replaced
(the last sync wins, for the whole tree).

A sync that fails (over a bound, unreadable, I/O) leaves the context as it was and says why in its
`notice` until a later sync works. A mount path missing in the session syncs an empty context.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import posixpath
import secrets
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from agentbay_mcp.backends.common.session_paths import SESSION_HOME, SESSION_TMP
from agentbay_mcp.backends.local.context_store import ContextStore, StoredContext
from agentbay_mcp.backends.local.layout import remove_tree
from agentbay_mcp.backends.local.tree_copy import TreeLimitError, TreeLimits, TreeStats, copy_tree, open_beneath
from agentbay_mcp.backends.records_contexts import ContextMount, ContextSynced
from agentbay_mcp.errors import (
    AgentBayMCPError,
    BackendError,
    ContextNotFoundError,
    InvalidArgumentError,
    QuotaExceededError,
)

logger = logging.getLogger(__name__)

MOUNTS_FILE = "contexts.json"
_COPY_TIMEOUT_SECONDS = 600
_MB = 1024 * 1024


def session_parts(path: str) -> tuple[str, list[str]]:
    """('home' or 'tmp', the parts below it) of a mount path (checked again: it becomes a host path)."""
    for top, name in ((SESSION_HOME, "home"), (SESSION_TMP, "tmp")):
        if path == top or path.startswith(f"{top}/"):
            parts = path[len(top) :].split("/")[1:]
            if posixpath.normpath(path) == path and "\0" not in path and all(p not in ("", ".", "..") for p in parts):
                return name, parts
    raise InvalidArgumentError(f"Context path {path[:200]!r} must be a normalised path under /home/user or /tmp.")


@dataclass(frozen=True)
class Mounted:
    """A mount of a session and the context version it was last given or synced."""

    mount: ContextMount
    base: int


def read_mounted(session_dir: Path) -> list[Mounted]:
    """The session's mounts that were copied in (a session whose copy failed has none to sync)."""
    try:
        document = json.loads((session_dir / MOUNTS_FILE).read_bytes())
        return [Mounted(ContextMount.model_validate(item["mount"]), int(item["base"])) for item in document]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def write_mounted(session_dir: Path, mounted: list[Mounted]) -> None:
    """Save the mounts and their bases atomically (a temporary file of its own: never one another writer truncates)."""
    tmp = session_dir / f".{MOUNTS_FILE}.{secrets.token_hex(4)}.tmp"
    tmp.write_text(json.dumps([{"mount": item.mount.model_dump(), "base": item.base} for item in mounted]))
    tmp.replace(session_dir / MOUNTS_FILE)


def _checked(store: ContextStore, mount: ContextMount) -> StoredContext:
    context = store.read(mount.owner, mount.name)
    if context is None or context.context_id != mount.context_id:  # deleted, or deleted and made anew
        raise ContextNotFoundError(mount.name)
    return context


def copy_in(store: ContextStore, mount: ContextMount, session_dir: Path, uid: int | None, disk: int | None) -> int:
    """Copy the context's current version to its path in a session not yet running anything; its version.

    `uid`: who the copy must belong to (None: us). `disk`: the bytes left on the session's disk quota."""
    top, parts = session_parts(mount.path)
    with store.locked(mount.owner, mount.name):
        context = _checked(store, mount)
        if disk is not None and context.disk_bytes > disk:
            raise _too_big(mount, context.disk_bytes, disk)
        # Our own entry (with a quota, a symlink into the session's disk): resolved, so chown reaches the files.
        target = Path(os.path.realpath(session_dir / top))
        for part in parts:  # make the path's missing directories, the session's own
            target = target / part
            if not target.is_dir() or target.is_symlink():
                target.mkdir(mode=0o755)
                if uid is not None:
                    os.chown(target, uid, uid)
        # cp -a keeps the store's holes (--sparse=auto) and hard links: the copy takes disk_bytes.
        _run(["cp", "-a", "--", f"{context.content()}/.", f"{target}/"], mount, context.disk_bytes, disk)
        if uid is not None and uid != os.geteuid():
            _run(["chown", "-R", "-h", "-P", f"{uid}:{uid}", "--", str(target)], mount, context.disk_bytes, disk)
        store.update_meta(context, last_used_at=datetime.now(UTC))
        return context.version


def _too_big(mount: ContextMount, size: int, disk: int) -> QuotaExceededError:
    return QuotaExceededError(
        f"Context {mount.name!r} takes {size / _MB:.1f} MB of disk, more than the {disk / _MB:.0f} MB left on the "
        "session's disk quota: the session was not created. Mount fewer contexts in one session, "
        "delete_context it if you no longer need it, or ask the operator for a larger --disk-limit-mb."
    )


def _run(argv: list[str], mount: ContextMount, size: int, disk: int | None) -> None:
    """Run cp or chown. The details (which name host paths: the store's, the session dir's) go to the log;
    the error says what failed in the session's terms."""
    failed = f"Could not copy context {mount.name!r} into the session"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_COPY_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired as exc:
        logger.warning("%s: %s", failed, exc)
        raise BackendError(f"{failed}: it took longer than {_COPY_TIMEOUT_SECONDS:g} s.") from exc
    except OSError as exc:
        logger.warning("%s: %s", failed, exc)
        raise BackendError(f"{failed}: {argv[0]} could not run ({exc.strerror or exc}).") from exc
    if done.returncode != 0:
        logger.warning("%s: %s", failed, done.stderr.strip()[-2000:])
        if "No space left" in done.stderr:
            if disk is not None:
                raise _too_big(mount, size, disk)
            raise BackendError(f"{failed}: the server's disk is full.")
        raise BackendError(f"{failed}: {argv[0]} failed (exit {done.returncode}; the server's log says why).")


def sync_one(
    store: ContextStore,
    session_dir: Path,
    item: Mounted,
    *,
    session_id: str,
    quota: int | None,
    limits: TreeLimits,
) -> tuple[ContextSynced, int]:
    """Copy the session's tree at the mount path into a new version and make it current; (result, version).

    On failure the context is kept as it was, its notice says why, and the error is raised."""
    mount = item.mount
    with store.locked(mount.owner, mount.name):
        context = _checked(store, mount)
        budget = None if quota is None else max(0, quota - store.used_bytes(mount.owner, besides=mount.name))
        staging = store.new_version_dir(context)
        try:
            bounds = TreeLimits(limits.max_entries, limits.max_depth, budget)
            stats, missing = _copy_out(session_dir, mount.path, staging / "content", bounds, context.content())
        except (TreeLimitError, OSError) as exc:
            remove_tree(staging)
            raise _failed(store, mount, context, session_id, exc, quota) from exc
        except BaseException:
            remove_tree(staging)
            raise
        warnings = []
        if context.version != item.base and context.synced_by not in (None, session_id):
            when = context.synced_at.strftime("%Y-%m-%d %H:%M:%S UTC") if context.synced_at else "an unknown time"
            warnings.append(
                f"This sync replaced what session {context.synced_by} synced at {when} (the last sync wins)."
            )
        if missing:
            warnings.append(f"{mount.path} did not exist in the session: the context is now empty.")
        if stats.skipped:
            warnings.append(f"{stats.skipped} entries that are not files, directories or symlinks were skipped.")
        with store.owner_locked(mount.owner):
            # Measured again: another context's sync may have committed since `budget` was taken.
            if quota is not None and stats.charged + store.used_bytes(mount.owner, besides=mount.name) > quota:
                remove_tree(staging)
                over = TreeLimitError("bytes", quota, f"more than {quota} bytes")
                raise _failed(store, mount, context, session_id, over, quota)
            committed = store.commit(context, staging, stats.bytes, stats.disk, stats.files, session_id)
    synced = ContextSynced(
        name=mount.name, path=mount.path, size_bytes=stats.bytes, file_count=stats.files, warning=" ".join(warnings)
    )
    return synced, committed.version


def _copy_out(session_dir: Path, path: str, dest: Path, limits: TreeLimits, previous: Path) -> tuple[TreeStats, bool]:
    """Copy the session's tree at `path` into `dest`; (stats, whether the path was missing).

    The session dir's own entries (home, tmp, with a quota their symlinks into the mounted disk) are
    ours; everything below them is the session's and is walked without following symlinks. If home
    or tmp cannot be opened (say, a quota disk no longer mounted) that is an error, never an empty sync."""
    top, parts = session_parts(path)
    root_fd = os.open(session_dir / top, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        source = open_beneath(root_fd, parts)
    finally:
        os.close(root_fd)
    if source is None:
        return TreeStats(), True
    try:
        target = os.open(dest, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        old = os.open(previous, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            return copy_tree(source, target, limits, old), False
        finally:
            os.close(old)
            os.close(target)
    finally:
        os.close(source)


def _failed(
    store: ContextStore,
    mount: ContextMount,
    context: StoredContext,
    session_id: str,
    exc: BaseException,
    quota: int | None,
) -> AgentBayMCPError:
    """The error of a sync that failed, kept as the context's notice too (under the context's lock)."""
    error = _failure(mount, context, session_id, exc, quota)
    with contextlib.suppress(OSError):  # a store that cannot take the notice: the log says it
        store.update_meta(context, notice=str(error))
    return error


def _failure(
    mount: ContextMount, context: StoredContext, session_id: str, exc: BaseException, quota: int | None
) -> AgentBayMCPError:
    """The error (and notice) of a sync that failed: what was lost and why."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    kept = f"version {context.version}" + (f", synced by session {context.synced_by}" if context.synced_by else "")
    lost = f"What session {session_id} left at {mount.path} was not saved at {when}"
    if isinstance(exc, TreeLimitError) and exc.what == "bytes":
        limit = f"{quota / _MB:.0f} MB" if quota is not None else f"{exc.limit} bytes"
        return QuotaExceededError(
            f"{lost}: the owner's contexts together would exceed their quota of {limit}. Context "
            f"{mount.name!r} keeps {kept}. Delete files or other contexts, then sync again."
        )
    if isinstance(exc, TreeLimitError):
        return QuotaExceededError(f"{lost}: it has {exc}. Context {mount.name!r} keeps {kept}.")
    reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return BackendError(
        f"{lost}: it could not be read or stored safely ({reason}). Context {mount.name!r} keeps {kept}."
    )


def sync_all(
    store: ContextStore,
    session_dir: Path,
    session_id: str,
    *,
    quota: int | None,
    limits: TreeLimits,
    only: str | None = None,
    raise_errors: bool = False,
) -> list[ContextSynced]:
    """Sync the session's mounts (or only those of context `only`), saving the new bases.

    A failure is logged (its notice is set) and the others still sync; with `raise_errors` the first
    failure is raised after all were tried."""
    mounted = read_mounted(session_dir)
    results: list[ContextSynced] = []
    first_error: AgentBayMCPError | None = None
    for index, item in enumerate(mounted):
        if only is not None and item.mount.name != only:
            continue
        try:
            synced, version = sync_one(store, session_dir, item, session_id=session_id, quota=quota, limits=limits)
        except AgentBayMCPError as exc:
            logger.warning("session %s: context %r not synced: %s", session_id, item.mount.name, exc)
            first_error = first_error or exc
            continue
        except OSError as exc:  # the store itself failed (e.g. a read-only state dir)
            logger.warning("session %s: context %r not synced: %s", session_id, item.mount.name, exc.strerror or exc)
            first_error = first_error or BackendError(
                f"Context {item.mount.name!r} could not be synced: its store failed ({exc.strerror or exc})."
            )
            continue
        results.append(synced)
        mounted[index] = Mounted(item.mount, version)
        try:
            write_mounted(session_dir, mounted)
        except OSError as exc:
            logger.warning("session %s: could not save its context bases: %s", session_id, exc.strerror or exc)
    if raise_errors and first_error is not None:
        raise first_error
    return results
