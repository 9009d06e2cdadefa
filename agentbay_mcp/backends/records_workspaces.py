"""Records of workspaces: host directories the operator offers, shown in a session at /workspace/NAME
(see records.py for the rules records follow)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: A workspace's name (the operator's `--workspace NAME=...`).
WORKSPACE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")  # \Z: "$" would let "x\n" through
WORKSPACE_ROOT = "/workspace"

WorkspaceMode = Literal["ro", "rw", "overlay"]


class Record(BaseModel):
    """Frozen, like records.Record."""

    model_config = ConfigDict(frozen=True)


class WorkspaceInfo(Record):
    """A host directory the operator offers to sessions (`--workspace NAME=/host/path[:mode]`)."""

    name: str
    mode: WorkspaceMode


class WorkspaceChange(Record):
    """One path the session changed, relative to the workspace root."""

    path: str
    kind: Literal["added", "modified", "deleted"]
    binary: bool = False
    conflict: bool = Field(default=False, description="The host file changed too since the session started.")
    symlink: str | None = Field(default=None, description="A symbolic link's target (the change is that link).")


class WorkspaceDiff(Record):
    """What a session changed in a workspace: the changes, and a unified diff of the text ones."""

    name: str
    mode: WorkspaceMode
    changes: tuple[WorkspaceChange, ...]
    diff: str
    truncated: bool = False


class WorkspaceApplied(Record):
    """What workspace_apply wrote back to the host, and what it left because the host changed too."""

    name: str
    applied: tuple[str, ...]
    conflicts: tuple[str, ...] = ()
    refused: tuple[str, ...] = Field(default=(), description="'path: why' of changes that cannot be applied safely.")
