"""The emulator's sessions: cloud-side state (labels, status, token) over local-backend sandboxes."""

from __future__ import annotations

import base64
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import anyio
from anyio.abc import TaskGroup

from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.records_contexts import ContextMount
from agentbay_mcp.emulator.desktop_tools import DesktopState
from agentbay_mcp.errors import (
    AgentBayMCPError,
    BackendUnavailableError,
    InvalidArgumentError,
    QuotaExceededError,
    UnknownImageError,
)

if TYPE_CHECKING:
    from agentbay_mcp.emulator.contexts import EmulatorContexts

logger = logging.getLogger(__name__)

#: How long a DeleteSessionAsync'd session shows DELETING before it is gone (so pollers poll).
DELETE_DELAY_SECONDS = 0.05


class ApiFaultError(Exception):
    """An API error reply: HTTP status, AgentBay-style code, message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Paged(NamedTuple):
    """A listing's Data and the paging fields that go at the top of the envelope."""

    data: list[dict[str, Any]]
    top: dict[str, Any]


@dataclass
class EmulatedSession:
    """One session as the cloud sees it."""

    session_id: str
    image_id: str
    labels: dict[str, str]
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    status: str = "RUNNING"
    mounts: list[ContextMount] = field(default_factory=list)  # its PersistenceDataList, as local mounts


class Sessions:
    """Every session of the emulator, in creation order."""

    def __init__(
        self, backend: LocalBackend, task_group: TaskGroup, *, link_url: bool, contexts: EmulatorContexts | None = None
    ) -> None:
        self.backend = backend
        self.contexts = contexts
        self.link_url = link_url
        self._task_group = task_group
        self._sessions: dict[str, EmulatedSession] = {}
        self.desktop = DesktopState()  # pointer positions and system_screenshot captures

    async def create(
        self, image_id: str, labels: dict[str, str], mounts: Sequence[ContextMount] = ()
    ) -> EmulatedSession:
        """Start a local sandbox for a new session, its contexts copied in."""
        try:
            record = await self.backend.create_session(image_id=image_id, labels={}, owner="emulator", contexts=mounts)
        except UnknownImageError as exc:
            offered = ", ".join(i.image_id for i in self.backend.images())
            raise ApiFaultError(
                400, "InvalidImageId.NotFound", f"Image {image_id[:80]!r} not found; the emulator offers {offered}"
            ) from exc
        except (InvalidArgumentError, QuotaExceededError) as exc:
            raise ApiFaultError(400, "InvalidParameter.PersistenceDataList", str(exc)[:300]) from exc
        except BackendUnavailableError as exc:
            raise ApiFaultError(501, "NotImplemented", str(exc)[:300]) from exc
        except AgentBayMCPError as exc:
            logger.warning("emulator: creating a session failed: %s", exc)
            raise ApiFaultError(500, "InternalError", "The session could not be started.") from exc
        session = EmulatedSession(record.session_id, image_id, dict(labels), mounts=list(mounts))
        self._sessions[session.session_id] = session
        if mounts and self.contexts is not None:
            self.contexts.downloaded(session.session_id, list(mounts))
        return session

    def get(self, session_id: str, *, deleting_too: bool = False) -> EmulatedSession:
        """A live session (or also a deleting one), else the NotFound fault."""
        session = self._sessions.get(session_id)
        if session is None or (session.status != "RUNNING" and not deleting_too):
            raise ApiFaultError(400, "InvalidMcpSession.NotFound", f"Session {session_id[:80]!r} not found")
        return session

    def page(
        self, labels: dict[str, str], limit: int, token: str, image_id: str | None
    ) -> tuple[list[EmulatedSession], str, int]:
        """Running sessions carrying every label pair, from the token's position: (page, next token, total)."""
        if not 1 <= limit <= 100:
            raise ApiFaultError(400, "InvalidParameter.MaxResults", "MaxResults must be 1..100")
        matching = [
            s
            for s in self._sessions.values()
            if s.status == "RUNNING"
            and all(s.labels.get(k) == v for k, v in labels.items())
            and (not image_id or s.image_id == image_id)
        ]
        start = 0
        if token:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except (ValueError, UnicodeDecodeError) as exc:
                raise ApiFaultError(400, "InvalidParameter.NextToken", "NextToken is not valid") from exc
            ids = [s.session_id for s in matching]
            start = ids.index(after) + 1 if after in ids else len([i for i in ids if i <= after])
        page = matching[start : start + limit]
        more = start + limit < len(matching)
        next_token = base64.urlsafe_b64encode(page[-1].session_id.encode()).decode() if more and page else ""
        return page, next_token, len(matching)

    def delete_soon(self, session_id: str) -> None:
        """Mark DELETING now; remove in the background (DeleteSessionAsync)."""
        session = self.get(session_id, deleting_too=True)
        if session.status == "RUNNING":
            session.status = "DELETING"
            self._task_group.start_soon(self._delete_later, session_id)

    async def _delete_later(self, session_id: str) -> None:
        await anyio.sleep(DELETE_DELAY_SECONDS)
        with anyio.CancelScope(shield=True):
            await self.delete(session_id)

    async def delete(self, session_id: str) -> None:
        """Remove the session and its sandbox."""
        self.get(session_id, deleting_too=True)
        await self.backend.delete_session(session_id)  # writes its contexts back (upload before release)
        self._sessions.pop(session_id, None)
        if self.contexts is not None:
            self.contexts.tasks.pop(session_id, None)

    async def close(self) -> None:
        """Delete every session (emulator shutdown)."""
        for session_id in list(self._sessions):
            try:
                await self.delete(session_id)
            except ApiFaultError:
                continue
