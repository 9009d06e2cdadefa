"""The TypeScript SDK client (as Claude Code uses it) calls every tool over stdio and accepts every answer.

That client validates each `structuredContent` against the tool's `outputSchema` with ajv and throws on a
mismatch, and throws when a tool that declares a schema answers without structured content: so a
result that strays from its published schema fails here, in a real client, not just in our checks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agentbay_mcp.testing.servers import server_env
from agentbay_mcp.testing.tool_names import ALL_TOOLS, WORKSPACE_TOOLS

JS_DIR = Path(__file__).parent.parent / "js"


def test_typescript_client_accepts_every_answer(state_dir: Path) -> None:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the TypeScript SDK client cannot run (CI has node)")
    if not (JS_DIR / "node_modules" / "@modelcontextprotocol" / "sdk").is_dir():
        pytest.fail("tests/js/node_modules is missing: run `bash scripts/setup.sh --dev` (it runs npm ci)")
    env = {**os.environ, **server_env(state_dir)}
    workspace_tools: set[str] = set()
    if os.geteuid() == 0:  # workspaces need a root server: offer one, and every_tool.mjs uses it
        project = state_dir.parent / "project"
        project.mkdir()
        (project / "a.txt").write_text("original\n")
        env["AGENTBAY_MCP_WORKSPACES"] = f"proj={project}"
        workspace_tools = WORKSPACE_TOOLS
    done = subprocess.run(
        [node, str(JS_DIR / "every_tool.mjs"), sys.executable],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert lines[-1] == {"done": True}, lines[-1]
    listed = dict(lines[0]["tools"])
    called = {line["tool"] for line in lines[1:-1]}
    assert called == (ALL_TOOLS - WORKSPACE_TOOLS) | workspace_tools, "every tool is called once at least"
    for line in lines[1:-1]:
        assert line["text"], f"{line['tool']} answered no text"
        assert (line["structured"] is not None) == listed[line["tool"]], line
    command = next(line for line in lines if line.get("tool") == "execute_command")
    assert command["text"] == "Exited with code 3 after {ms} ms.\nout\n\n--- stderr ---\nerr\n".format(
        ms=command["structured"]["duration_ms"]
    )
    assert "stdout" not in command["structured"], "command output travels once, in the text"
    if workspace_tools:
        assert (state_dir.parent / "project" / "a.txt").read_text() == "changed\n"
