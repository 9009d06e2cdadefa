"""The session registry: which conversation owns which session, and when each was last used.

A conversation is the unit of ownership and cleanup (see docs/conversations.md): an MCP
connection with a handshake (stdio, or HTTP with `Mcp-Session-Id`), or the principal of sessionless
2026-07-28 requests. The registry is plain in-memory bookkeeping for one server process: it never
talks to a backend (the service does), so every rule here is cheap and synchronous.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agentbay_mcp.backends.records import SessionRecord
from agentbay_mcp.errors import AccessDeniedError, QuotaExceededError, SessionNotFoundError

ANONYMOUS = "anonymous"


@dataclass
class Entry:
    """One live session and its bookkeeping."""

    record: SessionRecord
    conversation: str
    last_used: float
    last_keep_alive: float
    active_calls: int = 0  # a session busy with a long command never expires mid-command
    deleting: bool = False  # a delete is under way: no new use; kept (and retryable) if it fails


@dataclass
class _Conversation:
    principal: str = ANONYMOUS
    sessions: set[str] = field(default_factory=set)
    pending_creates: int = 0


class Registry:
    """Ownership and leases for the sessions of one server process."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._entries: dict[str, Entry] = {}
        self._conversations: dict[str, _Conversation] = {}

    def now(self) -> float:
        """The registry's clock (monotonic seconds)."""
        return self._clock()

    # Conversations -------------------------------------------------------------------------

    def open_conversation(self, conversation: str, principal: str = ANONYMOUS) -> None:
        """Make sure `conversation` exists, owned by `principal` (idempotent).

        A conversation belongs to one principal for its whole life; a request of another principal
        naming it is answered like an unknown session, whatever the transport let through.
        """
        state = self._conversations.setdefault(conversation, _Conversation(principal))
        if state.principal != principal:
            raise AccessDeniedError("This MCP session belongs to another principal: open a new one.")

    def principal_of(self, conversation: str) -> str:
        """The principal a conversation belongs to (`anonymous` if it was never opened)."""
        state = self._conversations.get(conversation)
        return state.principal if state else ANONYMOUS

    def is_open(self, conversation: str) -> bool:
        """False once `close_conversation` ran (a create still in flight must then undo itself)."""
        return conversation in self._conversations

    def close_conversation(self, conversation: str) -> list[str]:
        """Forget the conversation; returns the session ids it owned (the caller deletes them)."""
        state = self._conversations.pop(conversation, None)
        if state is None:
            return []
        for session_id in state.sessions:
            self._entries.pop(session_id, None)
        return sorted(state.sessions)

    def conversations(self) -> list[str]:
        """Every open conversation."""
        return list(self._conversations)

    # Quota ---------------------------------------------------------------------------------

    def reserve(self, conversation: str, limit: int, principal_limit: int | None = None) -> None:
        """Hold a slot for a session about to be created, or raise `QuotaExceededError`.

        `limit` counts the conversation's sessions; `principal_limit` those of every conversation
        of the same principal (all of a user's HTTP connections and sessionless calls together).
        """
        state = self._conversations.setdefault(conversation, _Conversation())
        if len(state.sessions) + state.pending_creates >= limit:
            raise QuotaExceededError(
                f"This conversation already has {len(state.sessions)} live session(s) "
                f"(limit {limit}). Delete sessions you no longer need with delete_session, "
                "or reuse one found with list_sessions."
            )
        if principal_limit is not None:
            held = sum(
                len(other.sessions) + other.pending_creates
                for other in self._conversations.values()
                if other.principal == state.principal
            )
            if held >= principal_limit:
                raise QuotaExceededError(
                    f"Principal {state.principal!r} already has {held} live session(s) across all its "
                    f"conversations (limit {principal_limit}). Delete sessions you no longer need with "
                    "delete_session (in the conversation that created them), or ask the operator to raise "
                    "--max-sessions-per-principal."
                )
        state.pending_creates += 1

    def unreserve(self, conversation: str) -> None:
        """Give back a slot taken by `reserve` (the create finished or failed)."""
        state = self._conversations.get(conversation)
        if state is not None and state.pending_creates > 0:
            state.pending_creates -= 1

    # Sessions ------------------------------------------------------------------------------

    def add(self, conversation: str, record: SessionRecord) -> Entry:
        """Register a freshly created session as owned by `conversation`."""
        now = self._clock()
        entry = Entry(record=record, conversation=conversation, last_used=now, last_keep_alive=now)
        self._entries[record.session_id] = entry
        self._conversations.setdefault(conversation, _Conversation()).sessions.add(record.session_id)
        return entry

    def lookup(self, conversation: str, session_id: str) -> Entry:
        """The entry if `conversation` owns `session_id`; otherwise exactly "not found"."""
        entry = self._entries.get(session_id)
        if entry is None or entry.conversation != conversation:
            raise SessionNotFoundError(session_id)
        return entry

    def entry(self, session_id: str) -> Entry:
        """The entry of a registered session, whoever owns it (for the service's own bookkeeping)."""
        entry = self._entries.get(session_id)
        if entry is None:
            raise SessionNotFoundError(session_id)
        return entry

    def touch(self, entry: Entry) -> None:
        """Renew the session's idle lease."""
        entry.last_used = self._clock()

    def update(self, record: SessionRecord) -> None:
        """Store a newer record of a registered session."""
        entry = self._entries.get(record.session_id)
        if entry is not None:
            entry.record = record

    def remove(self, session_id: str) -> Entry | None:
        """Forget a session; returns its entry if it was registered."""
        entry = self._entries.pop(session_id, None)
        if entry is not None:
            state = self._conversations.get(entry.conversation)
            if state is not None:
                state.sessions.discard(session_id)
        return entry

    def owned(self, conversation: str) -> list[Entry]:
        """The conversation's sessions, oldest first (ties broken by id, so the order is total)."""
        state = self._conversations.get(conversation)
        if state is None:
            return []
        entries = [self._entries[sid] for sid in state.sessions if sid in self._entries]
        entries.sort(key=lambda e: (e.record.created_at, e.record.session_id))
        return entries

    def expired(self, lease_seconds: float) -> list[str]:
        """Ids of sessions unused for longer than the lease."""
        deadline = self._clock() - lease_seconds
        return [
            sid
            for sid, entry in self._entries.items()
            if entry.last_used < deadline and entry.active_calls == 0 and not entry.deleting
        ]

    def session_ids(self) -> list[str]:
        """Every registered session id."""
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
