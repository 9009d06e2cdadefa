"""Pydantic models shared by the service layer and the MCP tools (the tools' structured output)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

SessionStatus = Literal["RUNNING", "DELETING", "DELETED"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class SessionInfo(_Model):
    """A session as a conversation sees it."""

    session_id: str = Field(description="Pass this to every other tool.")
    image_id: str = Field(description="The image the session was created from, e.g. linux_latest.")
    status: SessionStatus
    labels: dict[str, str] = Field(description="The session's labels (the whole map).")
    created_at: datetime
    idle_expires_at: datetime = Field(
        description="When the session is deleted if no tool touches it before then; any call renews it."
    )


class SessionList(_Model):
    """One page of a conversation's sessions."""

    sessions: list[SessionInfo]
    total_count: int = Field(description="How many of your sessions match the filter, across all pages.")
    max_results: int
    next_token: str | None = Field(
        description="Pass to list_sessions to get the next page; null when this is the last page."
    )


class SessionLabels(_Model):
    """The label map of one session."""

    session_id: str
    labels: dict[str, str]


class DeletedSession(_Model):
    """The outcome of delete_session."""

    session_id: str
    status: SessionStatus = "DELETED"
    message: str = "Session deleted; its sandbox, files and processes are gone."
