"""The real stdio server: a `python -m agentbay_mcp` subprocess, its protocol eras, and how it ends.

MCP clients end a stdio server by closing its stdin, then SIGTERM about 2 s later, then SIGKILL.
Every way out must leave no session behind, well inside that window.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import mcp_types
import pytest
from mcp import Client

from agentbay_mcp.testing.calls import call
from agentbay_mcp.testing.servers import session_dirs, stdio_params
from agentbay_mcp.testing.stdio import CLIENT_GRACE_SECONDS, RawStdioServer, lock_files, sessions_dir_entries

#: The default per-conversation quota, and the load the shutdown paths are measured with.
MANY_SESSIONS = 50


# Happy path, both eras ------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("mode", "protocol_version"), [("legacy", "2025-11-25"), ("auto", "2026-07-28")])
async def test_real_stdio_conversation_in_both_eras(state_dir: Path, mode: str, protocol_version: str) -> None:
    async with Client(stdio_params(state_dir), mode=mode) as client:
        assert client.protocol_version == protocol_version
        first = await call(client, "create_session", labels={"project": "demo"})
        second = await call(client, "create_session", image_id="code_latest")
        ids = [first["session_id"], second["session_id"]]
        assert session_dirs(state_dir) == sorted(ids)

        listed = await call(client, "list_sessions")
        assert listed["total_count"] == 2
        assert [s["session_id"] for s in listed["sessions"]] == ids
        assert [s["image_id"] for s in listed["sessions"]] == ["linux_latest", "code_latest"]

        relabelled = await call(client, "set_session_labels", session_id=ids[1], labels={"purpose": "build"})
        assert relabelled == {"session_id": ids[1], "labels": {"purpose": "build"}}
        by_label = await call(client, "list_sessions", labels={"purpose": "build"})
        assert [s["session_id"] for s in by_label["sessions"]] == [ids[1]]
        labels = await call(client, "get_session_labels", session_id=ids[0])
        assert labels["labels"] == {"project": "demo"}
        on_disk = json.loads((state_dir / "sessions" / ids[1] / "meta.json").read_text())
        assert on_disk["labels"] == {"purpose": "build"}
        leaving = time.monotonic()
    took = time.monotonic() - leaving

    assert session_dirs(state_dir) == []
    assert sessions_dir_entries(state_dir) == [], "staging/trash litter left behind"
    assert lock_files(state_dir) == [], "the server did not release its lock"
    # The client SIGTERMs only after 2 s: quicker means the server ended on stdin EOF by itself.
    assert took < CLIENT_GRACE_SECONDS, f"leaving the client took {took:.2f} s"


# Shutdown with many live sessions -------------------------------------------------------------


def test_stdin_eof_with_50_sessions_exits_and_releases_within_2s(state_dir: Path) -> None:
    with RawStdioServer(state_dir) as server:
        server.initialize()
        ids = server.create_sessions(MANY_SESSIONS)
        assert session_dirs(state_dir) == sorted(ids)

        started = time.monotonic()
        server.close_stdin()
        code = server.wait_exit(timeout=CLIENT_GRACE_SECONDS)
        took = time.monotonic() - started

        assert code is not None, f"still running {CLIENT_GRACE_SECONDS} s after stdin EOF\n{server.stderr_text}"
        assert code == 0, server.stderr_text
        assert session_dirs(state_dir) == []
        assert sessions_dir_entries(state_dir) == []
        assert lock_files(state_dir) == []
        assert f"releasing {MANY_SESSIONS} session(s)" in server.stderr_text
        print(f"stdin EOF -> exit with {MANY_SESSIONS} sessions: {took:.3f} s")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_with_50_sessions_exits_and_releases_within_2s(state_dir: Path, signum: signal.Signals) -> None:
    with RawStdioServer(state_dir) as server:
        server.initialize()
        ids = server.create_sessions(MANY_SESSIONS)
        assert session_dirs(state_dir) == sorted(ids)

        started = time.monotonic()
        server.send_signal(signum)  # stdin stays open: the signal alone must end the server
        code = server.wait_exit(timeout=CLIENT_GRACE_SECONDS)
        took = time.monotonic() - started

        assert code is not None, (
            f"still running {CLIENT_GRACE_SECONDS} s after {signum.name} with stdin open "
            f"({len(session_dirs(state_dir))} session(s) left)\n{server.stderr_text}"
        )
        assert code in (0, -signum), f"exit {code}\n{server.stderr_text}"
        assert session_dirs(state_dir) == []
        assert sessions_dir_entries(state_dir) == []
        assert lock_files(state_dir) == []
        assert f"received {signum.name}" in server.stderr_text
        print(f"{signum.name} -> exit {code} with {MANY_SESSIONS} sessions: {took:.3f} s")


def _handshake_then_create() -> bytes:
    """A whole conversation as a file: handshake, then one create_session."""
    messages: list[dict[str, Any]] = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "f", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "create_session", "arguments": {}},
        },
    ]
    return b"".join(json.dumps(message).encode() + b"\n" for message in messages)


@pytest.mark.parametrize(
    "stdin_kind",
    [
        "dev-null",
        "regular-file",
    ],
)
def test_stdin_that_is_not_a_pipe_ends_cleanly(state_dir: Path, tmp_path: Path, stdin_kind: str) -> None:
    """Supervisors start servers with stdin on /dev/null or a file: that is EOF, not a crash."""
    if stdin_kind == "dev-null":
        stdin_path = Path("/dev/null")
    else:
        stdin_path = tmp_path / "conversation.jsonl"
        stdin_path.write_bytes(_handshake_then_create())
    params = stdio_params(state_dir)
    with stdin_path.open("rb") as stdin:
        process = subprocess.Popen(
            [params.command, *params.args],
            env=params.env,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            stdout, stderr = process.communicate(timeout=20)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate(timeout=10)
    assert process.returncode == 0, stderr.decode(errors="replace")
    assert b"Traceback" not in stderr, stderr.decode(errors="replace")
    lines = stdout.splitlines()
    for line in lines:
        mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
    if stdin_kind == "regular-file":
        assert json.loads(lines[0])["id"] == 1, "the handshake was not answered"
    else:
        assert lines == []
    assert session_dirs(state_dir) == []
    assert sessions_dir_entries(state_dir) == []
    assert lock_files(state_dir) == []


# The wire stays clean ---------------------------------------------------------------------------


def test_logs_go_to_stderr_and_stdout_carries_only_json_rpc(state_dir: Path) -> None:
    with RawStdioServer(state_dir, AGENTBAY_MCP_LOG_LEVEL="DEBUG") as server:
        server.initialize()
        session_id = server.call_tool("create_session", labels={"k": "v"})["session_id"]
        assert "not found" in server.call_tool_error("get_session", session_id="session-" + "0" * 24)
        assert server.call_tool_result("no_such_tool")["isError"] is True
        server.send_raw(b"this is not json\n")  # answered with -32700 (id null) and logged
        tools = server.request("tools/list")
        assert "create_session" in {tool["name"] for tool in tools["result"]["tools"]}
        server.call_tool("delete_session", session_id=session_id)
        server.call_tool("create_session")  # left for the shutdown to release (and log)
        server.close_stdin()
        assert server.wait_exit(timeout=10) == 0, server.stderr_text
        server.stop()
        stderr = server.stderr_text

    assert server.stdout_lines, "nothing on stdout at all"
    ids = []
    for line in server.stdout_lines:
        assert line.endswith(b"\n"), line
        message = json.loads(line)
        assert isinstance(message, dict), line
        assert message.get("jsonrpc") == "2.0", line
        mcp_types.jsonrpc_message_adapter.validate_json(line, by_name=False)
        ids.append(message.get("id"))
    # One response per request, in order (a parse error answered with id null would be fine too).
    assert [i for i in ids if i is not None] == [1, 2, 3, 4, 5, 6, 7]
    assert ids.count(None) == 1  # the -32700 answering the line that was not JSON
    # The logs did happen, on stderr: the service's own records and DEBUG records.
    assert "agentbay_mcp.services.sessions.service: " in stderr
    assert "releasing 1 session(s)" in stderr
    assert " DEBUG " in stderr
    assert "json_invalid" in stderr or "Invalid JSON" in stderr
