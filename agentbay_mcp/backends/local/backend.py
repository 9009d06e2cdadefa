"""The local backend's session lifecycle: directory trees under the state dir.

A session is born in a staging directory and renamed into `sessions/` only when whole, and leaves
by being renamed into the trash first, so a crash at any point leaves either a whole session or
litter the reaper recognises, never half a session that looks live.
"""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import anyio

from agentbay_mcp.backends.base import ImageInfo, SessionRecord
from agentbay_mcp.backends.local.layout import (
    STAGING_PREFIX,
    TRASH_PREFIX,
    StateDir,
    discard,
    is_session_id,
    new_session_id,
    read_record,
    remove_tree,
    write_record,
)
from agentbay_mcp.backends.local.server_lock import ServerLock, new_server_id, server_alive
from agentbay_mcp.errors import BackendError, BackendUnavailableError, SessionNotFoundError, UnknownImageError

logger = logging.getLogger(__name__)

IMAGES: tuple[ImageInfo, ...] = (
    ImageInfo(
        image_id="linux_latest",
        description="Linux with a desktop: shell, files, applications, windows, screenshots.",
        desktop=True,
    ),
    ImageInfo(
        image_id="code_latest", description="Linux for code: shell and files, no desktop.", desktop=False
    ),
)


class LocalBackend:
    """Sessions on this host. One instance per server process."""

    def __init__(self, state_dir: Path, *, server_id: str | None = None) -> None:
        self._state = StateDir(state_dir)
        self._server_id = server_id or new_server_id()
        self._lock = ServerLock(self._state.servers, self._server_id)
        self._images = {image.image_id: image for image in IMAGES}

    @property
    def name(self) -> str:
        """Backend name."""
        return "local"

    @property
    def server_id(self) -> str:
        """This server instance's id."""
        return self._server_id

    @property
    def state_dir(self) -> Path:
        """The state dir this backend works in."""
        return self._state.root

    def images(self) -> list[ImageInfo]:
        """Images the local backend offers."""
        return list(IMAGES)

    async def start(self) -> list[str]:
        """Claim this server's lock and reap what dead servers left behind."""
        try:
            self._state.ensure()
            self._lock.acquire()
        except OSError as exc:
            raise BackendUnavailableError(
                f"State dir {self._state.root} is not usable ({exc.strerror or exc}). Make it writable by "
                "this user, or point AGENTBAY_MCP_STATE_DIR / --state-dir at a writable directory."
            ) from exc
        return await self.reap_orphans()

    async def close(self) -> None:
        """Give up the server lock (after the service has deleted this server's sessions)."""
        self._lock.release()

    async def create_session(self, *, image_id: str, labels: dict[str, str], owner: str) -> SessionRecord:
        """Assemble a session in staging, then publish it with one rename."""
        if image_id not in self._images:
            raise UnknownImageError(
                f"Unknown image_id {image_id!r}. The local backend offers: {', '.join(self._images)}."
            )
        session_id = new_session_id()
        record = SessionRecord(
            session_id=session_id,
            image_id=image_id,
            labels=dict(labels),
            owner=owner,
            server_id=self._server_id,
            created_at=datetime.now(UTC),
        )
        staging = self._state.staging_dir(self._server_id, session_id)
        try:
            staging.mkdir(mode=0o700)
            (staging / "home").mkdir(mode=0o755)
            (staging / "tmp").mkdir(mode=0o1777)
            write_record(staging / "meta.json", record)
            staging.rename(self._state.session_dir(session_id))
        except OSError as exc:
            remove_tree(staging)
            raise BackendUnavailableError(
                f"Could not create the session's directory under {self._state.sessions} "
                f"({exc.strerror or exc}). Check the state dir is writable and the disk is not full."
            ) from exc
        return record

    async def get_session(self, session_id: str) -> SessionRecord:
        """Read the session's record."""
        return self._read(session_id)

    async def set_labels(self, session_id: str, labels: dict[str, str]) -> SessionRecord:
        """Rewrite the record with the new label map."""
        record = self._read(session_id).model_copy(update={"labels": dict(labels)})
        try:
            write_record(self._state.meta_path(session_id), record)
        except FileNotFoundError as exc:
            raise SessionNotFoundError(session_id) from exc
        except OSError as exc:
            raise BackendError(f"Could not save labels of {session_id}: {exc.strerror or exc}") from exc
        return record

    async def keep_alive(self, session_id: str) -> None:
        """Record a use: the record's mtime is the last-use time operators see."""
        if is_session_id(session_id):
            with contextlib.suppress(OSError):
                os.utime(self._state.meta_path(session_id))

    async def delete_session(self, session_id: str) -> None:
        """Remove the session's tree; unknown ids are fine (idempotent)."""
        if not is_session_id(session_id):
            return
        await anyio.to_thread.run_sync(discard, self._state, self._state.session_dir(session_id), session_id)

    async def reap_orphans(self) -> list[str]:
        """Delete sessions (and staging/trash litter) whose server is no longer alive."""
        return await anyio.to_thread.run_sync(self._reap_orphans_sync)

    async def list_all(self) -> list[SessionRecord]:
        """Every readable session record in the state dir, any server's."""
        records: list[SessionRecord] = []
        for session_id in self._session_ids():
            with contextlib.suppress(SessionNotFoundError):
                records.append(self._read(session_id))
        return records

    def last_used(self, session_id: str) -> datetime | None:
        """When the session was last used, from its record's mtime."""
        try:
            mtime = self._state.meta_path(session_id).stat().st_mtime
        except OSError:
            return None
        return datetime.fromtimestamp(mtime, UTC)

    def _read(self, session_id: str) -> SessionRecord:
        if not is_session_id(session_id):
            raise SessionNotFoundError(session_id)
        try:
            return read_record(self._state.meta_path(session_id))
        except (OSError, ValueError) as exc:
            raise SessionNotFoundError(session_id) from exc

    def _session_ids(self) -> list[str]:
        try:
            return sorted(name for name in os.listdir(self._state.sessions) if is_session_id(name))
        except FileNotFoundError:
            return []

    def _reap_orphans_sync(self) -> list[str]:
        reaped: list[str] = []
        alive: dict[str, bool] = {self._server_id: True}

        def is_alive(server_id: str) -> bool:
            if server_id not in alive:
                alive[server_id] = server_alive(self._state.servers, server_id)
            return alive[server_id]

        try:
            names = os.listdir(self._state.sessions)
        except FileNotFoundError:
            return reaped
        for name in names:
            path = self._state.sessions / name
            if name.startswith(TRASH_PREFIX):
                remove_tree(path)  # half-removed by a server that died mid-delete
            elif name.startswith(STAGING_PREFIX):
                server_id = name[len(STAGING_PREFIX) :].rsplit("-session-", 1)[0]
                if not is_alive(server_id):
                    remove_tree(path)
            elif is_session_id(name):
                try:
                    owner_server = read_record(path / "meta.json").server_id
                except (OSError, ValueError):
                    owner_server = None  # a damaged record can only be reaped
                if owner_server is None or not is_alive(owner_server):
                    discard(self._state, path, name)
                    reaped.append(name)
        if reaped:
            logger.info("reaped %d orphaned session(s) left by servers that are gone", len(reaped))
        return reaped
