"""The start-up probe of id-mapped mounts works in the shared temporary directory, as root: a name
another user could guess and plant a link at must neither lead it anywhere nor make it fail (which
turned workspaces off for the server's life)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentbay_mcp.backends.local import idmap
from agentbay_mcp.backends.local.sandbox import UNPRIVILEGED_UID
from tests.e2e.test_workspaces import snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the probe needs root")


def test_a_link_planted_at_the_probes_name_leads_nowhere(tmp_path: Path) -> None:
    shared, elsewhere = tmp_path / "tmp", tmp_path / "elsewhere"
    shared.mkdir()
    (elsewhere / "target").mkdir(parents=True)
    # The name the probe once used: known to anyone who knows the server's pid.
    os.symlink(elsewhere, shared / f".ws-probe-{os.getpid()}")
    assert idmap.probe(shared, UNPRIVILEGED_UID) is None
    assert snapshot(elsewhere) == {"target": "dir"}
    assert os.listdir(shared) == [f".ws-probe-{os.getpid()}"]
