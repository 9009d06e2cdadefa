"""Protocol mistakes get the JSON-RPC error code that names them, in both eras, without a traceback.

* `prompts/get` of an unknown prompt, or without a required argument: -32602 (invalid params);
* a stdio line that is not JSON: -32700 (parse error); JSON that is not JSON-RPC: -32600.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS, INVALID_REQUEST, PARSE_ERROR

from agentbay_mcp.server.wiring import build_server, prompts
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import ERAS, INITIALIZE
from agentbay_mcp.testing.servers import server_env

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.exc_info or record.levelno >= logging.ERROR]


@pytest.mark.parametrize("era", ERAS)
async def test_unknown_prompt_is_invalid_params(state_dir: Path, era: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with Client(build_server(Settings(state_dir=state_dir)), mode=era) as client:
        with pytest.raises(MCPError) as raised:
            await client.get_prompt("no_such_prompt", {})
        # The real prompt still renders.
        rendered = await client.get_prompt("work_with_sandbox_sessions", {"task": "demo"})
        assert "demo" in str(rendered.messages[0].content)
    assert raised.value.code == INVALID_PARAMS
    assert "Unknown prompt 'no_such_prompt'" in raised.value.message
    assert "work_with_sandbox_sessions" in raised.value.message  # says what exists
    assert tracebacks(caplog) == []


@pytest.mark.parametrize("era", ERAS)
async def test_missing_required_prompt_argument_is_invalid_params(
    tmp_path: Path, era: str, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "p.md").write_text(
        "---\nname: needs_task\ndescription: d\nargument: task | the task | required\n---\nDo {{task}}.\n"
    )
    files = prompts.load(tmp_path)
    server: MCPServer[Any] = MCPServer("probe", middleware=[prompts.PromptCheck(files)])
    prompts.register(server, files)
    caplog.set_level(logging.DEBUG)
    async with Client(server, mode=era) as client:
        with pytest.raises(MCPError) as raised:
            await client.get_prompt("needs_task", {})
        assert "Do it." in str((await client.get_prompt("needs_task", {"task": "it"})).messages[0].content)
    assert raised.value.code == INVALID_PARAMS
    assert "task" in raised.value.message
    assert tracebacks(caplog) == []


def stdio_replies(state_dir: Path, lines: list[str], tmp_path: Path, *, stdin_file: bool) -> list[dict[str, Any]]:
    """Feed `lines` to a real stdio server (through a pipe or a regular file) and read every reply."""
    data = "".join(line + "\n" for line in lines).encode()
    command = [sys.executable, "-m", "agentbay_mcp", "--log-level", "WARNING"]
    source = tmp_path / "stdin.jsonl"
    source.write_bytes(data)
    with source.open("rb") as stdin:
        done = subprocess.run(
            command,
            stdin=stdin if stdin_file else None,
            input=None if stdin_file else data,
            capture_output=True,
            env=server_env(state_dir),
            timeout=30,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    assert b"Traceback" not in done.stderr, done.stderr.decode()
    return [json.loads(line) for line in done.stdout.decode().splitlines() if line.strip()]


@pytest.mark.parametrize("stdin_file", [False, True], ids=["pipe", "regular-file"])
def test_malformed_stdio_lines_are_answered(state_dir: Path, tmp_path: Path, stdin_file: bool) -> None:
    replies = stdio_replies(
        state_dir,
        [json.dumps(INITIALIZE), '{"jsonrpc": "2.0", "id": 2, "method": ', '{"hello": "world"}'],
        tmp_path,
        stdin_file=stdin_file,
    )
    # Replies may come in any order (JSON-RPC promises none): the initialize runs concurrently.
    (initialized,) = [reply for reply in replies if reply.get("id") == 1]
    assert initialized["result"]["protocolVersion"] == "2025-11-25"
    errors = {reply["error"]["code"]: reply for reply in replies if reply.get("id", "absent") is None}
    assert len(replies) == 3, replies
    assert sorted(errors) == sorted([PARSE_ERROR, INVALID_REQUEST]), replies
    assert "not valid JSON" in errors[PARSE_ERROR]["error"]["message"]
    assert "hello" not in json.dumps(errors[INVALID_REQUEST])  # the line itself is never echoed
