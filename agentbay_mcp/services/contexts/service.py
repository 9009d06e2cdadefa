"""ContextService: the principal's contexts, their quotas, and syncing a session's. Never imports mcp.

A context belongs to a principal, not a conversation: every conversation of one user sees the same
contexts, and another principal's are answered like unknown ones (the backend looks names up only
among the owner's). Counting is here; bytes are the backend's (it measures them as it copies).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import anyio

from agentbay_mcp.backends.protocols import Contexts
from agentbay_mcp.backends.records import Capabilities
from agentbay_mcp.backends.records_contexts import ContextMount, ContextRecord
from agentbay_mcp.errors import BackendUnavailableError, ContextNotFoundError, InvalidArgumentError, QuotaExceededError
from agentbay_mcp.services.contexts.models import (
    ContextInfo,
    ContextList,
    ContextsSynced,
    DeletedContext,
    SyncedContext,
)
from agentbay_mcp.services.contexts.mounts import check_mounts, check_name
from agentbay_mcp.services.sessions.service import SessionService


class ContextService:
    """Contexts of the callers' principals."""

    def __init__(
        self,
        sessions: SessionService,
        contexts: Contexts | None,
        capabilities: Capabilities,
        *,
        max_contexts_per_principal: int,
    ) -> None:
        self.sessions = sessions
        self.contexts = contexts
        self.capabilities = capabilities
        self.max_contexts = max_contexts_per_principal
        # Per principal: counting and creating are one step, so parallel creates cannot pass the quota.
        self._locks: dict[str, anyio.Lock] = {}

    async def create_context(self, conversation: str, name: str) -> ContextInfo:
        """The principal's context `name`, made empty if it does not exist yet (within the count quota)."""
        backend, owner = self._backend(), self._owner(conversation)
        created = await self._get_or_create(backend, owner, check_name(name))
        return self._info(created[0], created=created[1])

    async def list_contexts(self, conversation: str) -> ContextList:
        """The principal's contexts."""
        found = await self._backend().list_contexts(self._owner(conversation))
        return ContextList(contexts=[self._info(record) for record in found], limit=self.max_contexts)

    async def get_context(self, conversation: str, name: str) -> ContextInfo:
        """One of the principal's contexts."""
        record = await self._backend().get_context(self._owner(conversation), check_name(name), create=False)
        return self._info(record)

    async def delete_context(self, conversation: str, name: str) -> DeletedContext:
        """Delete the context and its content (refused while a live session has it)."""
        await self._backend().delete_context(self._owner(conversation), check_name(name))
        return DeletedContext(name=name)

    async def sync_context(self, conversation: str, session_id: str, name: str | None) -> ContextsSynced:
        """Write the session's contexts (or only `name`) back now."""
        backend = self._backend()
        if name is not None:
            check_name(name)
        async with self.sessions.in_use(conversation, session_id) as record:
            if not record.contexts:
                raise InvalidArgumentError(
                    f"Session {session_id} shows no context: pass contexts to create_session to have one."
                )
            if name is not None and all(mount.name != name for mount in record.contexts):
                shown = ", ".join(mount.name for mount in record.contexts)
                raise InvalidArgumentError(f"Session {session_id} shows no context {name!r} (it shows: {shown}).")
            synced = await backend.sync_context(session_id, name)
        return ContextsSynced(
            session_id=session_id, synced=[SyncedContext.model_validate(item.model_dump()) for item in synced]
        )

    async def mounts(self, conversation: str, requested: Sequence[Mapping[str, object]] | None) -> list[ContextMount]:
        """create_session's `contexts`, checked and resolved (each made if it does not exist yet)."""
        if not requested:
            return []
        pairs = check_mounts(requested)
        backend, owner = self._backend(), self._owner(conversation)
        resolved: list[ContextMount] = []
        for name, path in pairs:
            record, _ = await self._get_or_create(backend, owner, name)
            resolved.append(ContextMount(context_id=record.context_id, name=name, owner=owner, path=path))
        return resolved

    # ---- inside -------------------------------------------------------------------------------

    async def _get_or_create(self, backend: Contexts, owner: str, name: str) -> tuple[ContextRecord, bool]:
        try:
            return await backend.get_context(owner, name, create=False), False
        except ContextNotFoundError:
            pass
        async with self._locks.setdefault(owner, anyio.Lock()):
            try:  # made meanwhile by a parallel call
                return await backend.get_context(owner, name, create=False), False
            except ContextNotFoundError:
                pass
            if len(await backend.list_contexts(owner)) >= self.max_contexts:
                raise QuotaExceededError(
                    f"You already have {self.max_contexts} contexts (the limit): delete_context one you no "
                    "longer need, or reuse one."
                )
            return await backend.get_context(owner, name, create=True), True

    def _owner(self, conversation: str) -> str:
        return self.sessions.registry.principal_of(conversation)

    def _backend(self) -> Contexts:
        if self.contexts is None or not self.capabilities.contexts:
            raise BackendUnavailableError(
                self.capabilities.unsupported.get("contexts", "Contexts are not available on this backend.")
            )
        return self.contexts

    @staticmethod
    def _info(record: ContextRecord, *, created: bool = False) -> ContextInfo:
        return ContextInfo(
            name=record.name,
            size_bytes=record.size_bytes,
            file_count=record.file_count,
            created_at=record.created_at,
            last_used_at=record.last_used_at,
            in_use_by=list(record.in_use_by),
            notice=record.notice,
            created=created,
        )
