"""doctor's line on contexts and workspaces: the bounds in force and the workspaces offered (a bad
--workspace never gets this far: Settings refuses it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentbay_mcp.cli.doctor import check_storage
from agentbay_mcp.settings import Settings


def test_without_workspaces_it_states_the_context_bounds(tmp_path: Path) -> None:
    found = check_storage(Settings(state_dir=tmp_path / "state", max_contexts_per_principal=7, context_quota_mb=0))
    assert found.status == "OK"
    assert "7 per principal, no byte limit" in found.detail
    assert "no workspaces" in found.detail


@pytest.mark.skipif(os.geteuid() != 0, reason="workspaces are OK only for a root server")
def test_a_good_workspace_is_shown_with_its_mode(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    found = check_storage(Settings(state_dir=tmp_path / "state", workspaces=(f"app={project}:ro",)))
    assert (found.status, found.detail.endswith(f"workspaces app={project}:ro")) == ("OK", True)
