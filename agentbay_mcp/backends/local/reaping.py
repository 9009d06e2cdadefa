"""Reaping what dead servers left in a state dir: their sessions, half-made and half-deleted trees, cgroups.

A server holds a lock file while it lives (server_lock.py). At start-up, and on
`agentbay-mcp sessions reap`, every entry of sessions/ whose server no longer holds its lock is
removed: a session (after killing a sandbox that outlived its server, see leftovers.py), a staging
tree (a creation cut short), or trash (a deletion cut short). Runs in a thread: it is file-system work.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from agentbay_mcp.backends.common.server_lock import server_alive
from agentbay_mcp.backends.local.cgroups import Cgroups
from agentbay_mcp.backends.local.disk_quota import unmount_under
from agentbay_mcp.backends.local.layout import (
    STAGING_PREFIX,
    TRASH_PREFIX,
    StateDir,
    discard,
    is_session_id,
    read_record,
    remove_tree,
)
from agentbay_mcp.backends.local.leftovers import kill_leftover_sandbox

logger = logging.getLogger(__name__)


def reap_orphans_sync(
    state: StateDir, server_id: str, cgroups: Cgroups | None, *, sync: Callable[[Path], None] = lambda _: None
) -> list[str]:
    """Reap every entry whose server is gone (never `server_id`'s own); the ids of the sessions reaped.

    `sync` writes an orphan's contexts back (its leftover sandbox killed first), before it is removed."""
    reaped: list[str] = []
    alive: dict[str, bool] = {server_id: True}

    def is_alive(other: str) -> bool:
        if other not in alive:
            alive[other] = server_alive(state.servers, other)
        return alive[other]

    try:
        names = os.listdir(state.sessions)
    except FileNotFoundError:
        return reaped
    for name in names:
        try:
            if _reap_entry(state, name, is_alive, cgroups, sync):
                reaped.append(name)
        except OSError as exc:  # e.g. a read-only or full state dir: say so in one line
            logger.warning("could not reap %s (%s); leaving it for the next reap", name, exc.strerror or exc)
        except Exception:  # one bad entry must never stop a server from starting
            logger.exception("could not reap %s; leaving it for the next start-up", name)
    if cgroups is not None:
        live = set(state.session_ids())
        for name in cgroups.leftover_sessions() - live:
            cgroups.remove(name)
    if reaped:
        logger.info("reaped %d orphaned session(s) left by servers that are gone", len(reaped))
    return reaped


def unmount_own(state: StateDir, server_id: str) -> None:
    """Unmount what the sessions of `server_id` still here have mounted (disks, workspaces) at shutdown,
    after a release that ran out of time; the next start-up reaps their trees."""
    for session_id in state.session_ids():
        with contextlib.suppress(OSError, ValueError):
            if read_record(state.meta_path(session_id)).server_id == server_id:
                unmount_under(state.session_dir(session_id))


def _reap_entry(
    state: StateDir, name: str, is_alive: Callable[[str], bool], cgroups: Cgroups | None, sync: Callable[[Path], None]
) -> bool:
    """Reap one entry of sessions/ if it is litter or its server is gone; True for a session."""
    path = state.sessions / name
    if name.startswith(TRASH_PREFIX):
        remove_tree(path)  # half-removed by a server that died mid-delete
        return False
    if name.startswith(STAGING_PREFIX):
        server_id = name[len(STAGING_PREFIX) :].rsplit("-session-", 1)[0]
        if not is_alive(server_id):
            remove_tree(path)
        return False
    if not is_session_id(name):
        return False
    try:
        owner_server: str | None = read_record(path / "meta.json").server_id
    except (OSError, ValueError):
        owner_server = None  # a damaged record can only be reaped
    if owner_server is not None and is_alive(owner_server):
        return False
    kill_leftover_sandbox(path)
    if cgroups is not None:
        cgroups.remove(name)  # kills what is left in the session's cgroups
    sync(path)
    discard(state, path, name)
    return True
