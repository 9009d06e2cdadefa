"""WorkspaceService: the diff of a session's workspace and applying it to the host. Never imports mcp.

Ownership and leases are the session service's (`in_use`); the backend does the file-system work.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentbay_mcp.backends.protocols import Workspaces
from agentbay_mcp.backends.records import Capabilities
from agentbay_mcp.errors import BackendUnavailableError, InvalidArgumentError
from agentbay_mcp.services.model_base import from_records
from agentbay_mcp.services.sessions.service import SessionService
from agentbay_mcp.services.workspaces.models import WorkspaceAppliedInfo, WorkspaceDiffInfo

#: The unified diff workspace_diff returns, at most, and the bytes of paths its change list names.
DIFF_CAP_BYTES = 200_000
#: Paths one workspace_apply may name.
MAX_PATHS = 1000


class WorkspaceService:
    """Workspaces of sessions."""

    def __init__(
        self,
        sessions: SessionService,
        workspaces: Workspaces | None,
        capabilities: Capabilities,
        *,
        diff_cap_bytes: int = DIFF_CAP_BYTES,
    ) -> None:
        self.sessions = sessions
        self.workspaces = workspaces
        self.capabilities = capabilities
        self.diff_cap_bytes = diff_cap_bytes

    async def workspace_diff(self, conversation: str, session_id: str, name: str) -> WorkspaceDiffInfo:
        """What the session changed in workspace `name` (overlay mode; ro and rw have nothing to apply)."""
        backend = self._needs()
        _check_name(name)
        async with self.sessions.in_use(conversation, session_id):
            diff = await backend.diff(session_id, name, self.diff_cap_bytes)
        return from_records(WorkspaceDiffInfo, {**dict(diff), "session_id": session_id})

    async def workspace_apply(
        self, conversation: str, session_id: str, name: str, paths: Sequence[str] | None, overwrite: bool
    ) -> WorkspaceAppliedInfo:
        """Write the session's changes (or those at or under `paths`) to the host directory."""
        backend = self._needs()
        _check_name(name)
        if paths is not None:
            if isinstance(paths, str) or not all(isinstance(path, str) for path in paths):
                raise InvalidArgumentError("paths must be a list of paths relative to the workspace root.")
            if not paths or len(paths) > MAX_PATHS:
                raise InvalidArgumentError(f"paths: give 1 to {MAX_PATHS} paths, or omit it to apply every change.")
        async with self.sessions.in_use(conversation, session_id):
            applied = await backend.apply(session_id, name, None if paths is None else list(paths), bool(overwrite))
        return from_records(WorkspaceAppliedInfo, {**dict(applied), "session_id": session_id})

    def _needs(self) -> Workspaces:
        if self.workspaces is None or not self.capabilities.workspaces:
            reason = self.capabilities.unsupported.get("workspaces", "Workspaces are not available on this backend.")
            raise BackendUnavailableError(reason)
        return self.workspaces


def _check_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise InvalidArgumentError("name must be the name of one of the session's workspaces.")
