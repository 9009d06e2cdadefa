"""The `SandboxBackend` contract every backend implements, and the record it deals in.

Backends do primitives only: create, look up, relabel and delete sessions, and reap what dead
servers left behind. Ownership, leases, quotas, paging and truncation belong to the service layer.
Every backend runs the shared contract suite in `tests/contract/`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from agentbay_mcp.models import SessionStatus


class SessionRecord(BaseModel):
    """What a backend knows about one session."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    image_id: str
    labels: dict[str, str] = Field(default_factory=dict)
    owner: str = Field(description="The conversation that created the session.")
    server_id: str = Field(description="The server instance that created the session (for reaping).")
    created_at: datetime
    status: SessionStatus = "RUNNING"


class ImageInfo(BaseModel):
    """An image a backend can start sessions from."""

    model_config = ConfigDict(frozen=True)

    image_id: str
    description: str
    desktop: bool


@runtime_checkable
class SandboxBackend(Protocol):
    """Primitives a backend offers. Implementations raise only `agentbay_mcp.errors` exceptions."""

    @property
    def name(self) -> str:
        """Short backend name, e.g. `local`."""
        ...

    @property
    def server_id(self) -> str:
        """This server instance's id, stamped on every session it creates."""
        ...

    def images(self) -> list[ImageInfo]:
        """Images this backend can create sessions from."""
        ...

    async def start(self) -> list[str]:
        """Prepare for use (claim the server identity, reap orphans); returns the ids reaped."""
        ...

    async def close(self) -> None:
        """Release what `start` claimed. Does not delete live sessions: the service does that first."""
        ...

    async def create_session(self, *, image_id: str, labels: dict[str, str], owner: str) -> SessionRecord:
        """Create a session. Never leaves a half-created session behind on failure."""
        ...

    async def get_session(self, session_id: str) -> SessionRecord:
        """The session's record, or `SessionNotFoundError`."""
        ...

    async def set_labels(self, session_id: str, labels: dict[str, str]) -> SessionRecord:
        """Replace the session's label map; returns the updated record."""
        ...

    async def keep_alive(self, session_id: str) -> None:
        """Tell the backend the session is in use (renews backend-side idle timers). Best effort."""
        ...

    async def delete_session(self, session_id: str) -> None:
        """Delete the session and everything in it. Idempotent: an unknown id is not an error."""
        ...

    async def reap_orphans(self) -> list[str]:
        """Delete sessions whose creating server is gone; returns their ids."""
        ...

    async def list_all(self) -> list[SessionRecord]:
        """Every session this backend can see, from any server (for operators, not for tools)."""
        ...
