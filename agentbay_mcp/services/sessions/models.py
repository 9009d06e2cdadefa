"""The sessions tools' output models (what the model reads, as structured content)."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from agentbay_mcp.backends.records import SessionStatus
from agentbay_mcp.services.model_base import OutputModel


class SessionInfo(OutputModel):
    """A session as a conversation sees it."""

    session_id: str = Field(description="Pass this to every other tool.")
    image_id: str = Field(description="The image the session was created from, e.g. linux_latest.")
    status: SessionStatus
    labels: dict[str, str] = Field(description="The session's labels (the whole map).")
    network: str = Field(default="off", description="What commands may reach: off, on, or the allow-list.")
    created_at: datetime
    idle_expires_at: datetime = Field(
        description="When the session is deleted if no tool touches it before then; any call renews it."
    )
    notice: str | None = Field(
        default=None, description="What happened to the session that you should know (e.g. its sandbox died)."
    )
    contexts: list[str] = Field(default_factory=list, description="name:path of each context it shows.")
    workspaces: list[str] = Field(default_factory=list, description="Workspaces it shows at /workspace/NAME.")


class SessionList(OutputModel):
    """One page of a conversation's sessions."""

    sessions: list[SessionInfo]
    total_count: int = Field(description="How many of your sessions match the filter, across all pages.")
    max_results: int
    next_token: str | None = Field(
        description="Pass to list_sessions to get the next page; null when this is the last page."
    )


class SessionLabels(OutputModel):
    """The label map of one session."""

    session_id: str
    labels: dict[str, str]


class DeletedSession(OutputModel):
    """The outcome of delete_session."""

    session_id: str
    status: SessionStatus = "DELETED"
    message: str = "Session deleted; its sandbox, files and processes are gone."
    contexts: list[str] = Field(default_factory=list, description="Its contexts, written back before it went.")
