"""SessionService: every operation the tools offer, with ownership, leases, quotas and paging.

This layer never imports `mcp`: the MCP tools are thin wrappers that resolve the caller's
conversation and call a method here. Backends only do primitives; the rules live here.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import anyio
from anyio.abc import TaskGroup

from agentbay_mcp.backends.protocols import Sessions
from agentbay_mcp.backends.records import SessionRecord
from agentbay_mcp.errors import (
    AgentBayMCPError,
    InvalidArgumentError,
    QuotaExceededError,
    SandboxLostError,
    SessionNotFoundError,
)
from agentbay_mcp.services.network.policy import NetworkRequest, OperatorMode, requested_policy
from agentbay_mcp.services.sessions.labels import matches, validate_labels
from agentbay_mcp.services.sessions.models import DeletedSession, SessionInfo, SessionLabels, SessionList
from agentbay_mcp.services.sessions.paging import PageTokens
from agentbay_mcp.services.sessions.registry import ANONYMOUS, Entry, Registry

logger = logging.getLogger(__name__)

MAX_PAGE_SIZE = 100
#: How often a busy session's use is passed on to the backend (a cloud keep-alive is an API call).
KEEP_ALIVE_INTERVAL_SECONDS = 10.0
#: Upper bound for releasing everything at shutdown: MCP clients SIGKILL about 2 s after SIGTERM.
RELEASE_ALL_TIMEOUT_SECONDS = 1.5


def _page_key(record: SessionRecord) -> tuple[str, str]:
    """The listing order as a comparable key (fixed-width timestamps sort like the datetimes)."""
    return (record.created_at.astimezone(UTC).isoformat(timespec="microseconds"), record.session_id)


class SessionService:
    """The operations on sessions, for one server process."""

    def __init__(
        self,
        backend: Sessions,
        registry: Registry,
        *,
        lease_seconds: float,
        max_sessions_per_conversation: int,
        page_tokens: PageTokens | None = None,
        network_policy: OperatorMode = "off",
        max_sessions_per_principal: int | None = None,
        max_commands_per_principal: int | None = None,
    ) -> None:
        self.backend = backend
        self.max_sessions_per_principal = max_sessions_per_principal
        self.max_commands_per_principal = max_commands_per_principal
        self._running_commands: Counter[str] = Counter()
        self.network_policy = network_policy
        self.registry = registry
        self.lease_seconds = lease_seconds
        self.max_sessions_per_conversation = max_sessions_per_conversation
        self._tokens = page_tokens or PageTokens()

    # Lifecycle ------------------------------------------------------------------------------

    async def start(self, task_group: TaskGroup) -> None:
        """Start the backend (which reaps orphans left by dead servers) in the server's task group."""
        reaped = await self.backend.start(task_group)
        if reaped:
            logger.info("start-up: reaped %d orphaned session(s)", len(reaped))

    async def close(self) -> None:
        """Release every session this process holds, then the backend. Bounded in time."""
        with anyio.CancelScope(shield=True):
            await self.release_all()
            await self.backend.close()

    async def run_lease_expiry(self) -> None:
        """Forever: delete sessions whose idle lease ran out. Run it in the server's task group."""
        interval = min(max(self.lease_seconds / 4, 0.05), 30.0)
        while True:
            await anyio.sleep(interval)
            await self.expire_idle()

    async def expire_idle(self) -> list[str]:
        """Delete every session idle for longer than the lease; returns their ids."""
        expired = self.registry.expired(self.lease_seconds)
        if not expired:
            return []
        logger.info("idle lease ran out for %d session(s); deleting them", len(expired))
        entries = [self.registry.entry(session_id) for session_id in expired]
        for entry in entries:
            entry.deleting = True
        failed = await self._delete_many(expired)
        for entry in entries:
            entry.deleting = False
            if entry.record.session_id not in failed:
                self.registry.remove(entry.record.session_id)
        # A failed one stays registered (and expired): the next round retries it.
        return [session_id for session_id in expired if session_id not in failed]

    async def release_conversation(self, conversation: str) -> list[str]:
        """The conversation ended: delete everything it owned. Safe to call twice."""
        session_ids = self.registry.close_conversation(conversation)
        if session_ids:
            logger.info("conversation ended: releasing %d session(s)", len(session_ids))
            with anyio.CancelScope(shield=True):
                await self._delete_many(session_ids)
        return session_ids

    async def release_all(self) -> int:
        """Delete every session of every conversation (server shutdown), within a time bound."""
        session_ids: list[str] = []
        for conversation in self.registry.conversations():
            session_ids.extend(self.registry.close_conversation(conversation))
        if session_ids:
            logger.info("shutting down: releasing %d session(s)", len(session_ids))
            with anyio.move_on_after(RELEASE_ALL_TIMEOUT_SECONDS, shield=True) as scope:
                await self._delete_many(session_ids)
            if scope.cancelled_caught:
                logger.warning("release did not finish in time; the next start-up will reap the rest")
        return len(session_ids)

    # Callers --------------------------------------------------------------------------------

    def enter(self, conversation: str, principal: str) -> None:
        """Bind `conversation` to `principal` on its first call; a later call by another principal is refused."""
        self.registry.open_conversation(conversation, principal)

    def _principal_limit(self, conversation: str) -> int | None:
        # Principal quotas are for authenticated users: `anonymous` is everyone on an unauthenticated
        # server (every stdio chat, every local HTTP client), where the per-conversation limit applies.
        anonymous = self.registry.principal_of(conversation) == ANONYMOUS
        return None if anonymous else self.max_sessions_per_principal

    def live_sessions(self) -> int:
        """How many sessions this process holds (for metrics)."""
        return len(self.registry)

    @asynccontextmanager
    async def command_slot(self, conversation: str) -> AsyncIterator[None]:
        """Count one running command against its principal's limit, or raise QuotaExceededError."""
        principal = self.registry.principal_of(conversation)
        limit = None if principal == ANONYMOUS else self.max_commands_per_principal
        if limit is not None and self._running_commands[principal] >= limit:
            raise QuotaExceededError(
                f"Principal {principal!r} already has {limit} commands running at once (the limit). Wait for "
                "one to finish and retry, or use start_process for long-running work."
            )
        self._running_commands[principal] += 1
        try:
            yield
        finally:
            self._running_commands[principal] -= 1
            if not self._running_commands[principal]:
                del self._running_commands[principal]

    # Sessions -------------------------------------------------------------------------------

    async def create_session(
        self,
        conversation: str,
        image_id: str,
        labels: Mapping[str, str] | None,
        network: NetworkRequest = None,
        workspaces: Sequence[str] | None = None,
    ) -> SessionInfo:
        """Create a session owned by `conversation` (with the network asked for, if the operator allows it)."""
        clean = validate_labels(labels)
        policy = requested_policy(network, self.network_policy)
        if not isinstance(image_id, str) or not image_id.strip():
            raise InvalidArgumentError("image_id must be a non-empty string such as 'linux_latest'")
        self.registry.reserve(conversation, self.max_sessions_per_conversation, self._principal_limit(conversation))
        try:
            record = await self.backend.create_session(
                image_id=image_id, labels=clean, owner=conversation, network=policy, workspaces=tuple(workspaces or ())
            )
        finally:
            self.registry.unreserve(conversation)
        if not self.registry.is_open(conversation):
            # The conversation ended while we were creating: nobody may ever own this session.
            with anyio.CancelScope(shield=True):
                await self.backend.delete_session(record.session_id)
            raise SessionNotFoundError(record.session_id)
        return self._info(self.registry.add(conversation, record))

    async def get_session(self, conversation: str, session_id: str) -> SessionInfo:
        """The session's details, fresh from the backend (a cloud may have released it)."""
        entry = await self._use(conversation, session_id)
        async with self._forgotten_if_gone(session_id):
            self.registry.update(await self.backend.get_session(session_id))
        return self._info(entry)

    async def delete_session(self, conversation: str, session_id: str) -> DeletedSession:
        """Delete one of the conversation's sessions. If the backend fails, the session stays known (and
        can be deleted again); the error says why."""
        entry = self.registry.lookup(conversation, session_id)
        entry.deleting = True
        try:
            with anyio.CancelScope(shield=True):
                await self.backend.delete_session(session_id)
        except SessionNotFoundError:
            self.registry.remove(session_id)  # the backend had already lost it (a cloud release)
            raise
        finally:
            entry.deleting = False
        self.registry.remove(session_id)
        return DeletedSession(session_id=session_id)

    async def list_sessions(
        self,
        conversation: str,
        labels: Mapping[str, str] | None = None,
        max_results: int = 10,
        next_token: str | None = None,
    ) -> SessionList:
        """A page of the conversation's sessions that carry all the given labels, oldest first."""
        wanted = validate_labels(labels, allow_reserved=True)
        if not 1 <= max_results <= MAX_PAGE_SIZE:
            raise InvalidArgumentError(f"max_results must be between 1 and {MAX_PAGE_SIZE}, got {max_results}")
        entries = [e for e in self.registry.owned(conversation) if matches(e.record.labels, wanted)]
        total = len(entries)
        if next_token:
            after = self._tokens.check("sessions", wanted, next_token)
            entries = [e for e in entries if _page_key(e.record) > after]
        page = entries[:max_results]
        token = None
        if len(entries) > max_results:
            last = page[-1].record
            token = self._tokens.issue("sessions", wanted, _page_key(last))
        return SessionList(
            sessions=[self._info(e) for e in page],
            total_count=total,
            max_results=max_results,
            next_token=token,
        )

    def owned_sessions(self, conversation: str) -> list[SessionInfo]:
        """Every session of the conversation, oldest first (no paging, no lease renewal: for resources)."""
        return [self._info(entry) for entry in self.registry.owned(conversation)]

    async def set_session_labels(self, conversation: str, session_id: str, labels: Mapping[str, str]) -> SessionLabels:
        """Replace the session's whole label map."""
        clean = validate_labels(labels)
        await self._use(conversation, session_id)
        async with self._forgotten_if_gone(session_id):
            record = await self.backend.set_labels(session_id, clean)
        self.registry.update(record)
        return SessionLabels(session_id=session_id, labels=dict(record.labels))

    async def get_session_labels(self, conversation: str, session_id: str) -> SessionLabels:
        """The session's label map."""
        entry = await self._use(conversation, session_id)
        return SessionLabels(session_id=session_id, labels=dict(entry.record.labels))

    # Internals ------------------------------------------------------------------------------

    @asynccontextmanager
    async def in_use(self, conversation: str, session_id: str) -> AsyncIterator[SessionRecord]:
        """Hold a session for one operation: owned by `conversation`, lease renewed before and after,
        never expired while the operation runs."""
        entry = await self._use(conversation, session_id)
        entry.active_calls += 1
        try:
            async with self._forgotten_if_gone(session_id):
                yield entry.record
        except SandboxLostError:
            # Reported to the caller now, and the sandbox is running again: get_session stops saying so.
            entry.record = entry.record.model_copy(update={"status": "RUNNING", "notice": None})
            raise
        finally:
            entry.active_calls -= 1
            self.registry.touch(entry)

    @asynccontextmanager
    async def _forgotten_if_gone(self, session_id: str) -> AsyncIterator[None]:
        """If the backend says the session is gone (a cloud released it behind our back), forget it too,
        so the registry holds no entry that can never work again; the model gets the not-found error."""
        try:
            yield
        except SessionNotFoundError as exc:
            if exc.session_id == session_id and self.registry.remove(session_id) is not None:
                logger.info("session %s was released by the backend; forgetting it", session_id)
            raise

    async def _use(self, conversation: str, session_id: str) -> Entry:
        """Look the session up for `conversation`, renew its lease and tell the backend."""
        entry = self.registry.lookup(conversation, session_id)
        if entry.deleting:
            raise SessionNotFoundError(session_id)  # being deleted: as good as gone for new work
        self.registry.touch(entry)
        if entry.last_used - entry.last_keep_alive >= KEEP_ALIVE_INTERVAL_SECONDS:
            entry.last_keep_alive = entry.last_used
            await self.backend.keep_alive(session_id)
        return entry

    def _info(self, entry: Entry) -> SessionInfo:
        record: SessionRecord = entry.record
        remaining = self.lease_seconds - (self.registry.now() - entry.last_used)
        expires = datetime.now(UTC) + timedelta(seconds=max(0.0, remaining) if math.isfinite(remaining) else 0)
        return SessionInfo(
            session_id=record.session_id,
            image_id=record.image_id,
            status=record.status,
            labels=dict(record.labels),
            network=record.network.describe(),
            created_at=record.created_at,
            idle_expires_at=expires.replace(microsecond=0),
            notice=record.notice,
        )

    async def _delete_many(self, session_ids: list[str]) -> set[str]:
        """Delete the sessions concurrently; returns the ids that could not be deleted."""
        failed: set[str] = set()

        async def delete(session_id: str) -> None:
            try:
                await self.backend.delete_session(session_id)
            except SessionNotFoundError:
                pass
            except AgentBayMCPError as exc:
                # Keep going: one stuck session must not keep the others alive. Start-up reaps leftovers.
                failed.add(session_id)
                logger.warning("could not delete session %s: %s", session_id, exc)
            except Exception:
                failed.add(session_id)
                logger.exception("unexpected failure deleting session %s", session_id)

        async with anyio.create_task_group() as tg:
            for session_id in session_ids:
                tg.start_soon(delete, session_id)
        return failed
