"""The operator's workspaces: `--workspace NAME=/host/path[:ro|rw|overlay]`, parsed and checked at start.

In the environment, AGENTBAY_MCP_WORKSPACES holds several, comma-separated
(`src=/srv/src:overlay,docs=/srv/docs:ro`); a path with a comma cannot be given there (nor used by
overlayfs at all).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast, get_args

from agentbay_mcp.backends.records_workspaces import WORKSPACE_NAME, WorkspaceMode

DEFAULT_MODE: WorkspaceMode = "overlay"


@dataclass(frozen=True)
class WorkspaceSpec:
    """One host directory the operator offers, and how sessions see it."""

    name: str
    path: Path
    mode: WorkspaceMode = DEFAULT_MODE


def parse_workspace(text: str) -> WorkspaceSpec:
    """`NAME=/host/path[:mode]` (ValueError saying what is wrong); the path is not checked here."""
    name, sep, rest = text.strip().partition("=")
    if not sep or not rest:
        raise ValueError(f"workspace {text!r}: expected NAME=/host/path[:ro|rw|overlay]")
    if not WORKSPACE_NAME.match(name):
        raise ValueError(
            f"workspace name {name!r}: use letters, digits, '.', '_' or '-' (at most 64, not starting with a symbol)"
        )
    path, mode = rest, DEFAULT_MODE
    head, colon, tail = rest.rpartition(":")
    if colon and tail in get_args(WorkspaceMode):
        path, mode = head, cast(WorkspaceMode, tail)
    if not path.startswith("/"):
        raise ValueError(f"workspace {name}: the host path must be absolute (got {path!r})")
    return WorkspaceSpec(name, Path(os.path.normpath(path)), mode)


def _related(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_workspaces(texts: Sequence[str], state_dir: Path) -> tuple[WorkspaceSpec, ...]:
    """Parse every `--workspace` and check them: existing directories, unique names, and none inside
    the state dir or containing it (a session's files must never be a workspace, nor the reverse)."""
    # Resolved now: a symlink the operator named cannot be pointed elsewhere later.
    specs = tuple(
        WorkspaceSpec(spec.name, Path(os.path.realpath(spec.path)), spec.mode)
        for spec in (parse_workspace(text) for text in texts if text.strip())
    )
    seen: set[str] = set()
    state = Path(os.path.realpath(state_dir))
    for spec in specs:
        if spec.name in seen:
            raise ValueError(f"workspace {spec.name} is given twice")
        seen.add(spec.name)
        if not spec.path.is_dir():
            raise ValueError(f"workspace {spec.name}: {spec.path} is not an existing directory")
        if _related(spec.path, state):
            raise ValueError(f"workspace {spec.name}: {spec.path} is inside the state dir {state} or contains it")
    return specs
