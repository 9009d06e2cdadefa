"""The workspace tools' output models."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agentbay_mcp.services.model_base import OutputModel


class WorkspaceChangeInfo(OutputModel):
    """One path the session changed, relative to the workspace root."""

    path: str
    kind: Literal["added", "modified", "deleted"]
    binary: bool = False
    conflict: bool = Field(default=False, description="The host file changed too since the session started.")
    symlink: str | None = Field(default=None, description="The target, when the change is a symbolic link.")


class WorkspaceDiffInfo(OutputModel):
    """What a session changed in a workspace."""

    session_id: str = Field(exclude=True)
    name: str
    mode: Literal["ro", "rw", "overlay"]
    changes: list[WorkspaceChangeInfo]
    diff: str = Field(description="Unified diff of the changed text files.")
    truncated: bool = Field(default=False, description="The diff or the list was cut at the server's cap.")


class WorkspaceAppliedInfo(OutputModel):
    """What workspace_apply wrote to the host."""

    session_id: str = Field(exclude=True)
    name: str
    applied: list[str]
    conflicts: list[str] = Field(description="Changed on the host too since the session started: left alone.")
    refused: list[str] = Field(description="'path: why' of changes that cannot be applied safely.")
