"""The context tools' output models."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from agentbay_mcp.services.model_base import OutputModel


class ContextInfo(OutputModel):
    """One of the principal's contexts."""

    name: str
    size_bytes: int | None = Field(description="Bytes of content; null where the backend cannot tell cheaply.")
    file_count: int | None
    created_at: datetime
    last_used_at: datetime | None
    in_use_by: list[str] = Field(description="Live sessions that have it (yours and your other conversations').")
    notice: str | None = Field(default=None, description="The last sync's problem: what was not saved, and why.")
    created: bool = Field(default=False, exclude=True)


class ContextList(OutputModel):
    """The principal's contexts (text only: one line each)."""

    contexts: list[ContextInfo]
    limit: int = Field(exclude=True)


class DeletedContext(OutputModel):
    """The outcome of delete_context."""

    name: str


class SyncedContext(OutputModel):
    """One context written back from a session."""

    name: str
    path: str
    size_bytes: int | None
    file_count: int | None
    warning: str = ""


class ContextsSynced(OutputModel):
    """The outcome of sync_context."""

    session_id: str
    synced: list[SyncedContext]
