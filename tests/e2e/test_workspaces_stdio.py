"""Workspaces through the real stdio server: the operator's configuration, the tools, and a SIGKILLed
server whose sessions (and their mounts of the project) the next server reaps without touching it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client

from agentbay_mcp.backends.local.disk_quota import _mount_points
from agentbay_mcp.testing.calls import call, call_error
from agentbay_mcp.testing.servers import server_env, session_dirs, stdio_params
from agentbay_mcp.testing.stdio import RawStdioServer
from tests.e2e.test_workspaces import make_project, snapshot

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="workspaces need a root server (id-mapped mounts)")


def mounts_under(path: Path) -> list[str]:
    root = os.path.realpath(path)
    return [point for point in _mount_points() if point.startswith(root + "/")]


def serve_error(state_dir: Path, *flags: str, **env: str) -> str:
    """stderr of a server that refuses to start with these settings."""
    done = subprocess.run(
        [sys.executable, "-m", "agentbay_mcp", *flags],
        env=server_env(state_dir, **env),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0, done.stdout
    return done.stderr


def test_bad_workspace_settings_stop_the_server_saying_why(state_dir: Path, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    state_dir.mkdir(parents=True, exist_ok=True)
    cases = {
        f"--workspace=proj={tmp_path}/missing": "not an existing directory",
        "--workspace=proj=relative/path": "must be absolute",
        f"--workspace=bad/name={project}": "workspace name",
        f"--workspace=inside={state_dir}": "inside the state dir",
        f"--workspace=around={tmp_path}": "inside the state dir",
        f"--workspace=noequals{project}": "expected NAME=",
    }
    for flag, message in cases.items():
        assert message in serve_error(state_dir, "serve", flag), flag
    twice = serve_error(state_dir, "serve", f"--workspace=a={project}", f"--workspace=a={project}:ro")
    assert "given twice" in twice
    assert "not an existing directory" in serve_error(
        state_dir, "serve", AGENTBAY_MCP_WORKSPACES=f"a={project}:ro,b={tmp_path}/nope"
    )


@pytest.mark.anyio
async def test_the_tools_over_stdio(state_dir: Path, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    env = {"AGENTBAY_MCP_WORKSPACES": f"proj={project},docs={project}:ro"}
    async with Client(stdio_params(state_dir, **env)) as client:
        plain = (await call(client, "create_session", image_id="code_latest"))["session_id"]
        listed = await call(client, "execute_command", session_id=plain, command="ls -d /workspace || echo absent")
        assert "absent" in str(listed)
        error = await call_error(client, "create_session", image_id="code_latest", workspaces=["nope"])
        assert "docs, proj" in error
        sid = (await call(client, "create_session", image_id="code_latest", workspaces=["proj"]))["session_id"]
        await call(client, "execute_command", session_id=sid, command="echo hi >> /workspace/proj/README.md")
        diff = await client.call_tool("workspace_diff", {"session_id": sid, "name": "proj"})
        text = diff.content[0].text  # type: ignore[union-attr]
        assert "modified README.md" in text, text
        assert "+hi" in text, text
        assert "has no workspace 'docs'" in await call_error(client, "workspace_diff", session_id=sid, name="docs")
        assert "not a relative path" in await call_error(
            client, "workspace_apply", session_id=sid, name="proj", paths=["../x"]
        )
        applied = await client.call_tool("workspace_apply", {"session_id": sid, "name": "proj"})
        assert applied.structured_content == {
            "name": "proj",
            "applied": ["README.md"],
            "conflicts": [],
            "refused": [],
        }
        assert (project / "README.md").read_text() == "hello\nworld\nhi\n"


def test_a_sigkilled_servers_workspace_sessions_are_reaped_leaving_the_projects(
    state_dir: Path, tmp_path: Path
) -> None:
    projects = {mode: make_project(tmp_path / mode) for mode in ("ro", "rw", "overlay")}
    before = {mode: snapshot(path) for mode, path in projects.items()}
    env = {"AGENTBAY_MCP_WORKSPACES": ",".join(f"{mode}={path}:{mode}" for mode, path in projects.items())}
    with RawStdioServer(state_dir, **env) as server:
        server.initialize()
        sid = server.call_tool("create_session", image_id="code_latest", workspaces=["ro", "rw", "overlay"])[
            "session_id"
        ]
        server.call_tool("execute_command", session_id=sid, command="echo x > /workspace/overlay/new")
        server.kill()
    assert session_dirs(state_dir) == [sid]
    assert len(mounts_under(state_dir)) >= 4, "the killed server's mounts are still there"
    # The next server reaps the session: unmounts first, and removes nothing of the projects.
    with RawStdioServer(state_dir, **env) as server:
        server.initialize()
        server.call_tool("list_sessions")
        assert session_dirs(state_dir) == []
        assert mounts_under(state_dir) == []
        server.stop()
    assert {mode: snapshot(path) for mode, path in projects.items()} == before


@pytest.mark.anyio
async def test_names_that_are_not_utf8_are_shown_replaced_and_applied_as_they_are(
    state_dir: Path, tmp_path: Path
) -> None:
    # A file name (or link target) with bytes that are not UTF-8 once took the server down: its
    # answer could not be encoded.
    project = make_project(tmp_path / "project")
    async with Client(stdio_params(state_dir, AGENTBAY_MCP_WORKSPACES=f"proj={project}")) as client:
        sid = (await call(client, "create_session", image_id="code_latest", workspaces=["proj"]))["session_id"]
        command = "cd /workspace/proj && printf x > \"$(printf 'a\\377b')\" && ln -s \"$(printf 't\\376')\" lnk"
        await call(client, "execute_command", session_id=sid, command=command)
        diff = await client.call_tool("workspace_diff", {"session_id": sid, "name": "proj"})
        assert diff.structured_content is not None
        assert [(c["path"], c["symlink"]) for c in diff.structured_content["changes"]] == [
            ("a\ufffdb", None),
            ("lnk", "t\ufffd"),
        ]
        applied = await client.call_tool("workspace_apply", {"session_id": sid, "name": "proj"})
        assert applied.structured_content is not None
        assert applied.structured_content["applied"] == ["a\ufffdb", "lnk"]
        await call(client, "list_sessions")  # the server is still up
    assert os.listdir(bytes(project)).count(b"a\xffb") == 1
    assert os.readlink(bytes(project) + b"/lnk") == b"t\xfe"
