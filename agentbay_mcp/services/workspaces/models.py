"""The workspace tools' output models (the backend's records, with the session they belong to)."""

from __future__ import annotations

from pydantic import Field

from agentbay_mcp.backends import records_workspaces
from agentbay_mcp.services.model_base import OutputModel


class WorkspaceChangeInfo(records_workspaces.WorkspaceChange, OutputModel):
    """One path the session changed, relative to the workspace root."""


class WorkspaceDiffInfo(records_workspaces.WorkspaceDiff, OutputModel):
    """What a session changed in a workspace."""

    session_id: str = Field(exclude=True)
    changes: list[WorkspaceChangeInfo]  # type: ignore[assignment]
    diff: str = Field(description="Unified diff of the changed text files.")
    truncated: bool = Field(default=False, description="The diff or the list was cut at the server's cap.")


class WorkspaceAppliedInfo(records_workspaces.WorkspaceApplied, OutputModel):
    """What workspace_apply wrote to the host."""

    session_id: str = Field(exclude=True)
    applied: list[str]  # type: ignore[assignment]
    conflicts: list[str] = Field(description="Changed on the host too since the session started: left alone.")  # type: ignore[assignment]
    refused: list[str] = Field(description="'path: why' of changes that cannot be applied safely.")  # type: ignore[assignment]
