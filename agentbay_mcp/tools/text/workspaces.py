"""Workspace results as text: one line per change, then the unified diff; what an apply wrote and left."""

from __future__ import annotations

from agentbay_mcp.services.workspaces.models import WorkspaceAppliedInfo, WorkspaceChangeInfo, WorkspaceDiffInfo
from agentbay_mcp.tools.shape import Shape
from agentbay_mcp.tools.text.common import join_body, lines, name, plural

_NOTHING = {
    "ro": "read-only: the session cannot change it",
    "rw": "read-write: the session's changes are on the host already",
}


def _change(change: WorkspaceChangeInfo) -> str:
    line = f"{change.kind} {name(change.path)}"
    if change.symlink is not None:
        line += f" -> {name(change.symlink)}"
    if change.binary:
        line += " (binary)"
    return line + (" CONFLICT: changed on the host too" if change.conflict else "")


def _diff(found: WorkspaceDiffInfo) -> str:
    if found.mode != "overlay":
        return f"Workspace {found.name} of {found.session_id} is {_NOTHING[found.mode]}."
    head = f"Workspace {found.name} of {found.session_id}: {plural(len(found.changes), 'change')}"
    if found.truncated:
        head += " (cut at the server's cap)"
    listed = lines(head, map(_change, found.changes))
    return join_body(listed, found.diff)


def _applied(done: WorkspaceAppliedInfo) -> str:
    head = f"Applied {plural(len(done.applied), 'change')} of {done.session_id} to workspace {done.name}"
    parts = [lines(head, map(name, done.applied))]
    if done.conflicts:
        parts.append(
            lines("Left alone, changed on the host too (overwrite=true replaces them):", map(name, done.conflicts))
        )
    if done.refused:
        parts.append(lines("Refused:", done.refused))
    return "\n".join(parts)


DIFF = Shape(WorkspaceDiffInfo, _diff, text_only=("diff",))
APPLIED = Shape(WorkspaceAppliedInfo, _applied)
