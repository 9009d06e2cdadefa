"""The AgentBay backend's contexts: the cloud's own context API (GetContext, ListContexts, DeleteContext,
SyncContext + GetContextInfo), with ownership by cloud name (context_wire.py).

A session's mounts are kept here in memory for the sessions this process created (`mounted`), and
rebuilt from the session's `agentbay-mcp.contexts` label otherwise (a reaped orphan, another
server's session). Writing back is the cloud's: `SyncContext(Mode=upload)` per mount, then
`GetContextInfo` is polled until its upload task is Success or Failed (bounded in time). Before a
session is released its mounts are written back the same way (what the SDK's
`session.delete(sync_context=True)` does); a write-back that fails leaves the cloud context as it
was, logs a warning and becomes the context's `notice` until a later sync works (kept in the state dir,
`agentbay-context-notices.json`, so that a restarted server still reports what its reaping or its
predecessor could not write back).
Sizes and file counts are left None: the cloud offers them only by listing every file.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from agentbay_mcp.backends.agentbay import context_wire as wire
from agentbay_mcp.backends.agentbay.client import AgentBayClient
from agentbay_mcp.backends.records import SessionRecord
from agentbay_mcp.backends.records_contexts import ContextMount, ContextRecord, ContextSynced
from agentbay_mcp.errors import (
    AgentBayMCPError,
    BackendError,
    CloudAPIError,
    ContextNotFoundError,
    InvalidArgumentError,
    SessionNotFoundError,
)

logger = logging.getLogger(__name__)

#: ListContexts page size, and how many pages at most (a broken cloud may hand out tokens forever).
PAGE_SIZE = 100
MAX_PAGES = 100
_DONE = {"Success", "Failed"}
MAX_NOTICES_BYTES = 1 << 20


class Notices:
    """Each context's last failed write-back, by cloud name, in a JSON file (None: in memory only). Read on
    every use, since the servers of one state dir share it; a file that is not ours reads as empty."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._memory: dict[str, str] = {}

    def get(self, owner: str, name: str, loaded: dict[str, str] | None = None) -> str | None:
        """The context's notice (from `loaded`, one `snapshot`, when many are looked up at once)."""
        return (self._load() if loaded is None else loaded).get(wire.cloud_name(owner, name))

    def snapshot(self) -> dict[str, str]:
        return self._load()

    def set(self, owner: str, name: str, reason: str) -> None:
        items = self._load()
        items[wire.cloud_name(owner, name)] = reason[:1000]
        self._save(items)

    def clear(self, owner: str, name: str) -> None:
        items = self._load()
        if items.pop(wire.cloud_name(owner, name), None) is not None:
            self._save(items)

    def _load(self) -> dict[str, str]:
        if self._path is None:
            return dict(self._memory)
        try:
            with self._path.open("rb") as file:
                loaded = json.loads(file.read(MAX_NOTICES_BYTES + 1)[:MAX_NOTICES_BYTES])
        except (OSError, ValueError):
            return {}
        if not isinstance(loaded, dict):
            return {}
        return {k: v for k, v in loaded.items() if isinstance(k, str) and isinstance(v, str)}

    def _save(self, items: dict[str, str]) -> None:
        self._memory = items
        if self._path is None:
            return
        temporary = self._path.with_name(f"{self._path.name}.{os.getpid()}.tmp")
        try:
            temporary.write_text(json.dumps(items))
            os.replace(temporary, self._path)
        except OSError as exc:
            logger.warning("could not keep context notices in %s: %s", self._path, exc)


class CloudContexts:
    """Contexts of one server instance's principals, in the cloud account. "In use" means mounted in a live
    session of this server process (the refusal to delete, and `in_use_by`)."""

    def __init__(
        self,
        client: AgentBayClient,
        lookup: Callable[[str], Awaitable[SessionRecord]],
        *,
        sync_wait_seconds: float = 300.0,
        page_size: int = PAGE_SIZE,
        notices_file: Path | None = None,
    ) -> None:
        self._client = client
        self._lookup = lookup  # a session's record (its mounts from labels) for sessions not made here
        self.sync_wait_seconds = sync_wait_seconds
        self.page_size = page_size
        #: session id -> its mounts, for the live sessions this process created
        self.mounts: dict[str, tuple[ContextMount, ...]] = {}
        #: the last failed write-back's reason of each context, until a sync works
        self.notices = Notices(notices_file)
        # Last sync wins: a counter, the last sync of each context, each (session, context)'s own last one.
        self._clock = 0
        self._last_sync: dict[str, tuple[str, int]] = {}
        self._own_sync: dict[tuple[str, str], int] = {}

    # Contexts --------------------------------------------------------------------------------

    async def get_context(self, owner: str, name: str, *, create: bool) -> ContextRecord:
        """GetContext(Name=<owner's cloud name>, AllowCreate)."""
        data = await self._get(owner, name, create=create)
        record = wire.record_of(owner, data, expect_name=name)
        if record is None:  # an answer about some other context is no answer
            raise BackendError("AgentBay's GetContext reply describes another context; refused.")
        return self._decorated(record)

    async def list_contexts(self, owner: str) -> list[ContextRecord]:
        """ListContexts, every page (bounded), keeping only the owner's (by cloud-name prefix)."""
        found: dict[str, ContextRecord] = {}
        notices = self.notices.snapshot()
        token = ""
        for _ in range(MAX_PAGES):
            params: dict[str, str | int | bool | None] = {"MaxResults": self.page_size, "NextToken": token or None}
            reply = await self._client.call("ListContexts", params, idempotent=True)
            items = reply.data if isinstance(reply.data, list) else []
            if len(items) > self.page_size:
                raise BackendError(
                    f"AgentBay's ListContexts reply holds {len(items)} contexts for a page of {self.page_size}; "
                    "refused."
                )
            for item in items:
                record = wire.record_of(owner, item)
                if record is not None:
                    found.setdefault(record.name, self._decorated(record, notices))
            token = reply.body.get("NextToken") or ""
            if not isinstance(token, str) or len(token) > 1024:
                raise BackendError("AgentBay's ListContexts reply holds a NextToken that is not one; refused.")
            if not token:
                return [found[name] for name in sorted(found)]
        raise BackendError(
            f"AgentBay's ListContexts still had more after {MAX_PAGES} pages of {self.page_size}; refused "
            "(the account holds too many contexts, or the service keeps handing out page tokens)."
        )

    async def delete_context(self, owner: str, name: str) -> None:
        """DeleteContext(Id), refused while a live session of this server has it mounted."""
        context_id = wire.context_id_of(await self._get(owner, name, create=False), "GetContext")
        users = self._users(context_id)
        if users:
            raise InvalidArgumentError(
                f"Context {name!r} is mounted in live session {users[0]}: delete that session first (its "
                "content is written back to the context when it ends), then delete the context."
            )
        try:
            await self._client.call("DeleteContext", {"Id": context_id}, idempotent=True)
        except CloudAPIError as exc:
            if "NotFound" in exc.code:
                raise ContextNotFoundError(name) from exc
            raise
        self.notices.clear(owner, name)

    async def sync_context(self, session_id: str, name: str | None = None) -> list[ContextSynced]:
        """SyncContext(upload) for the session's mounts (or only `name`), each waited for."""
        mounts = await self._mounts_of(session_id)
        chosen = [m for m in mounts if name is None or m.name == name]
        if name is not None and not chosen:
            shown = ", ".join(m.name for m in mounts) or "none"
            raise InvalidArgumentError(
                f"Context {name!r} is not mounted in session {session_id} (its contexts: {shown})."
            )
        synced = []
        for mount in chosen:
            try:
                await self.upload(session_id, mount)
            except SessionNotFoundError:
                raise  # the session is gone, not the context's write-back broken
            except AgentBayMCPError as exc:
                self.notices.set(mount.owner, mount.name, f"The last write-back (session {session_id}) failed: {exc}")
                raise
            synced.append(ContextSynced(name=mount.name, path=mount.path, warning=self._after_sync(session_id, mount)))
        return synced

    # Sessions' mounts ----------------------------------------------------------------------------

    async def mounted(self, session_id: str, mounts: tuple[ContextMount, ...]) -> None:
        """A new session has `mounts`: remember them and wait for their content to arrive (the download
        tasks CreateMcpSession started); a failed download is an error (the caller deletes the session)."""
        self.mounts[session_id] = mounts
        self._clock += 1
        for mount in mounts:
            self._own_sync[(session_id, mount.context_id)] = self._clock
        for mount in mounts:
            await self._wait(session_id, mount, "download")

    async def write_back(self, session_id: str) -> None:
        """Before a session is released: write each mount back; a failure is logged and kept as the
        context's notice (the cloud context keeps what it held), never raised."""
        mounts = self.mounts.pop(session_id, None)
        if mounts is None:
            try:
                mounts = (await self._lookup(session_id)).contexts
            except SessionNotFoundError:
                return
            except AgentBayMCPError as exc:
                logger.warning("could not read session %s's contexts before deleting it: %s", session_id, exc)
                return
        for mount in mounts:
            try:
                await self.upload(session_id, mount)
                self._after_sync(session_id, mount)
            except AgentBayMCPError as exc:
                reason = (
                    f"Writing back session {session_id}'s {mount.path} failed ({exc}); the context keeps what it "
                    "held before."
                )
                logger.warning("context %s: %s", mount.name, reason)
                self.notices.set(mount.owner, mount.name, reason)
        for key in [k for k in self._own_sync if k[0] == session_id]:
            del self._own_sync[key]

    async def upload(self, session_id: str, mount: ContextMount) -> None:
        """SyncContext(Mode=upload) for one mount, then wait for its upload task."""
        params: dict[str, str | int | bool | None] = {
            "SessionId": session_id,
            "ContextId": mount.context_id,
            "Path": mount.path,
            "Mode": "upload",
        }
        await self._client.call("SyncContext", params, idempotent=True)
        await self._wait(session_id, mount, "upload")

    async def _wait(self, session_id: str, mount: ContextMount, task_type: str) -> None:
        """Poll GetContextInfo until the mount's `task_type` task is done (no such task counts as done, as
        the SDK counts it); Failed or the deadline is a BackendError naming the context."""
        deadline = time.monotonic() + self.sync_wait_seconds
        pause = 0.05
        params: dict[str, str | int | bool | None] = {
            "SessionId": session_id,
            "ContextId": mount.context_id,
            "Path": mount.path,
            "TaskType": task_type,
        }
        while True:
            reply = await self._client.call("GetContextInfo", params, idempotent=True)
            tasks = [
                t
                for t in wire.sync_tasks(reply.data)
                if t.context_id == mount.context_id and t.path == mount.path and t.task_type == task_type
            ]
            failed = [t for t in tasks if t.status == "Failed"]
            if failed:
                why = failed[0].error or "no reason given"
                raise BackendError(f"AgentBay could not {task_type} context {mount.name!r} at {mount.path}: {why}")
            if all(t.status in _DONE for t in tasks):
                return
            if time.monotonic() >= deadline:
                raise BackendError(
                    f"AgentBay's {task_type} of context {mount.name!r} at {mount.path} did not finish within "
                    f"{self.sync_wait_seconds:g} s."
                )
            await anyio.sleep(pause)
            pause = min(pause * 1.5, 2.0)

    # Helpers -----------------------------------------------------------------------------------

    async def _get(self, owner: str, name: str, *, create: bool) -> object:
        params: dict[str, str | int | bool | None] = {"Name": wire.cloud_name(owner, name), "AllowCreate": create}
        try:
            reply = await self._client.call("GetContext", params, idempotent=True)
        except CloudAPIError as exc:
            if "NotFound" in exc.code:
                raise ContextNotFoundError(name) from exc
            raise
        if not isinstance(reply.data, dict) or not reply.data.get("Id"):
            raise ContextNotFoundError(name)  # the cloud answers an unknown name without create with no Data
        return reply.data

    async def _mounts_of(self, session_id: str) -> tuple[ContextMount, ...]:
        if session_id in self.mounts:
            return self.mounts[session_id]
        return (await self._lookup(session_id)).contexts

    def _users(self, context_id: str) -> list[str]:
        return sorted(sid for sid, mounts in self.mounts.items() if any(m.context_id == context_id for m in mounts))

    def _decorated(self, record: ContextRecord, notices: dict[str, str] | None = None) -> ContextRecord:
        """The record with its users (this process's live sessions: others' are not known without asking
        the cloud about every session) and its notice."""
        return record.model_copy(
            update={
                "in_use_by": tuple(self._users(record.context_id)),
                "notice": self.notices.get(record.owner, record.name, notices),
            }
        )

    def _after_sync(self, session_id: str, mount: ContextMount) -> str:
        """Record this sync; the warning if another session synced the context since this one last did."""
        self._clock += 1
        previous = self._last_sync.get(mount.context_id)
        own = self._own_sync.get((session_id, mount.context_id), 0)
        self._last_sync[mount.context_id] = (session_id, self._clock)
        self._own_sync[(session_id, mount.context_id)] = self._clock
        self.notices.clear(mount.owner, mount.name)
        if previous is not None and previous[0] != session_id and previous[1] > own:
            return (
                f"Session {previous[0]} synced context {mount.name!r} since this session last did: this sync "
                "replaced what it wrote (the later sync wins)."
            )
        return ""
