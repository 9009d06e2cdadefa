"""The local backend's contexts (protocols.Contexts): directories under the state dir, copied into a
session at its creation and copied back by every sync and every ending (see context_store.py for the
layout, context_sync.py for the copies).

Two live sessions may mount one context: each works on its own copy, and the last sync wins for the
whole tree (its `warning` names the sync it replaced). Every operation on a context holds its
cross-process lock (several servers may share a state dir), taken in a thread, behind an in-process
lock so that waiting costs no thread. The owner's byte quota (`quota_bytes`) bounds what a sync may
store; count quotas are the service's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import anyio

from agentbay_mcp.backends.local.context_store import ContextStore, StoredContext, check_name, owner_key
from agentbay_mcp.backends.local.context_sync import Mounted, copy_in, read_mounted, sync_all, write_mounted
from agentbay_mcp.backends.local.layout import StateDir, is_session_id, read_record, write_record
from agentbay_mcp.backends.local.tree_copy import TreeLimits
from agentbay_mcp.backends.records import SessionRecord
from agentbay_mcp.backends.records_contexts import ContextMount, ContextRecord, ContextSynced
from agentbay_mcp.errors import (
    BackendError,
    ContextNotFoundError,
    InvalidArgumentError,
    SessionNotFoundError,
)

logger = logging.getLogger(__name__)


class LocalContexts:
    """Contexts of one state dir. `session_uid`: who a session's files belong to (None: this process's
    user); `disk_bytes`: the per-session disk quota in force, read at each creation (None: none)."""

    def __init__(
        self,
        state: StateDir,
        *,
        quota: int | None = None,
        session_uid: int | None = None,
        disk_bytes: Callable[[], int | None] = lambda: None,
        limits: TreeLimits | None = None,
    ) -> None:
        self._state = state
        self.store = ContextStore(state.root / "contexts")
        self.quota_bytes = quota
        self._uid = session_uid
        self._disk_bytes = disk_bytes
        self._limits = limits or TreeLimits()
        self._locks: dict[tuple[str, str], anyio.Lock] = {}

    @contextlib.asynccontextmanager
    async def _turn(self, owner: str, name: str) -> AsyncIterator[None]:
        """This process's turn at a context (the store's flock is the cross-process part)."""
        async with self._locks.setdefault((owner_key(owner), check_name(name)), anyio.Lock()):
            yield

    @contextlib.asynccontextmanager
    async def _turns(self, mounted: list[Mounted]) -> AsyncIterator[None]:
        """This process's turn at each context of `mounted`, each once, in one order (no deadlock)."""
        async with contextlib.AsyncExitStack() as stack:
            for owner, name in sorted({(item.mount.owner, item.mount.name) for item in mounted}):
                await stack.enter_async_context(self._turn(owner, name))
            yield

    # The protocol -----------------------------------------------------------------------------

    async def get_context(self, owner: str, name: str, *, create: bool) -> ContextRecord:
        """The owner's context `name`, made empty first if missing and `create`."""
        check_name(name)
        context = await anyio.to_thread.run_sync(self.store.read, owner, name)
        if context is None and create:
            async with self._turn(owner, name):
                context = await anyio.to_thread.run_sync(self._get_or_create, owner, name)
        if context is None:
            raise ContextNotFoundError(name)
        return context.record(await self._in_use_by(owner, name))

    def _get_or_create(self, owner: str, name: str) -> StoredContext:
        with self.store.locked(owner, name) as directory:
            return self.store.read(owner, name) or self.store.create(owner, name, directory)

    async def list_contexts(self, owner: str) -> list[ContextRecord]:
        """The owner's contexts by name (meta files only, no walk)."""
        users = await self._users(owner)
        records = []
        for name in await anyio.to_thread.run_sync(self.store.names, owner):
            context = await anyio.to_thread.run_sync(self.store.read, owner, name)
            if context is not None:
                records.append(context.record(tuple(users.get(name, ()))))
        return records

    async def delete_context(self, owner: str, name: str) -> None:
        """Delete the context, refused while a live session of this state dir has it mounted."""
        check_name(name)

        def delete() -> bool:
            with self.store.locked(owner, name) as directory:
                # Looked up under the lock: another server's create publishes its session before it
                # takes the lock to copy in, so a session published by now is seen here.
                users = self._scan_users(owner).get(name, ())
                if users:
                    raise InvalidArgumentError(
                        f"Context {name!r} is mounted in session(s) {', '.join(users)}: delete them first (their "
                        "content is synced to the context when they end)."
                    )
                return self.store.delete(directory)

        # Looked up first, without a lock: the name is the caller's pick, and taking a context's lock makes its
        # lock file (and an in-memory lock), which an unknown name must not leave behind.
        if await anyio.to_thread.run_sync(self.store.read, owner, name) is None:
            raise ContextNotFoundError(name)
        async with self._turn(owner, name):
            if not await anyio.to_thread.run_sync(delete):
                raise ContextNotFoundError(name)
        # Forgotten with the context (its store lock file is gone too). A task still waiting on this lock
        # may then run beside one that makes a new one: the store's flock keeps them apart.
        self._locks.pop((owner_key(owner), name), None)

    async def sync_context(self, session_id: str, name: str | None = None) -> list[ContextSynced]:
        """Write the session's contexts (or only `name`) back now, while it runs."""
        session_dir = self._session_dir(session_id)
        mounted = await anyio.to_thread.run_sync(read_mounted, session_dir)
        chosen = [item for item in mounted if name is None or item.mount.name == name]
        if name is not None and not chosen:
            names = ", ".join(sorted({item.mount.name for item in mounted})) or "none"
            raise InvalidArgumentError(f"Session {session_id} has no context {name!r} mounted (it has: {names}).")
        # The turns of all the session's contexts, not only those synced: every sync rewrites the session's
        # contexts.json whole (the bases of all its mounts), so two on one session must not overlap.
        async with self._turns(mounted):
            return await anyio.to_thread.run_sync(self._sync_sync, session_dir, session_id, name, True)

    # What the backend calls -------------------------------------------------------------------

    async def mount(self, record: SessionRecord, session_dir: Path, contexts: Sequence[ContextMount]) -> SessionRecord:
        """Record `contexts` in the session's record, then copy each in (the session runs no command yet);
        the updated record. Raises if one cannot be copied: the caller deletes the session, and nothing
        is synced back from it, as the bases are saved only once every copy is done."""
        if not contexts:
            return record
        record = record.model_copy(update={"contexts": tuple(contexts)})
        # First the record: from now on delete_context sees the context in use.
        await anyio.to_thread.run_sync(write_record, self._state.meta_path(record.session_id), record)
        left = self._disk_bytes()
        mounted: list[Mounted] = []
        for mount in contexts:
            async with self._turn(mount.owner, mount.name):
                try:
                    version = await anyio.to_thread.run_sync(copy_in, self.store, mount, session_dir, self._uid, left)
                except OSError as exc:
                    raise BackendError(
                        f"Could not copy context {mount.name!r} into the session: {exc.strerror or exc}"
                    ) from exc
            mounted.append(Mounted(mount, version))
            if left is not None:
                context = await anyio.to_thread.run_sync(self.store.read, mount.owner, mount.name)
                left -= context.disk_bytes if context is not None else 0
        await anyio.to_thread.run_sync(write_mounted, session_dir, mounted)
        return record

    async def sync_ending(self, session_id: str) -> None:
        """Sync an ending session's contexts (its sandbox stopped); failures are kept in notices, never raised."""
        if not is_session_id(session_id):
            return
        session_dir = self._state.session_dir(session_id)
        mounted = await anyio.to_thread.run_sync(read_mounted, session_dir)
        async with self._turns(mounted):
            await anyio.to_thread.run_sync(self._sync_sync, session_dir, session_id, None, False)

    def sync_orphan(self, session_dir: Path) -> None:
        """Blocking: sync a dead server's session (its leftover processes killed) before it is reaped."""
        self._sync_sync(session_dir, session_dir.name, None, False)

    def _sync_sync(
        self, session_dir: Path, session_id: str, only: str | None, raise_errors: bool
    ) -> list[ContextSynced]:
        return sync_all(
            self.store,
            session_dir,
            session_id,
            quota=self.quota_bytes,
            limits=self._limits,
            only=only,
            raise_errors=raise_errors,
        )

    # Helpers ----------------------------------------------------------------------------------

    def _session_dir(self, session_id: str) -> Path:
        if not is_session_id(session_id) or not self._state.meta_path(session_id).exists():
            raise SessionNotFoundError(session_id)
        return self._state.session_dir(session_id)

    async def _in_use_by(self, owner: str, name: str) -> tuple[str, ...]:
        return tuple((await self._users(owner)).get(name, ()))

    async def _users(self, owner: str) -> dict[str, list[str]]:
        return await anyio.to_thread.run_sync(self._scan_users, owner)

    def _scan_users(self, owner: str) -> dict[str, list[str]]:
        """Context name -> the live sessions (published records in this state dir) that mount it."""
        users: dict[str, list[str]] = {}
        for session_id in self._state.session_ids():
            try:
                record = read_record(self._state.meta_path(session_id))
            except (OSError, ValueError):
                continue
            for mount in record.contexts:
                if mount.owner == owner and session_id not in users.get(mount.name, []):
                    users.setdefault(mount.name, []).append(session_id)
        return users
