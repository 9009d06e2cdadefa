"""The real stdio server: a `python -m agentbay_mcp` subprocess, its protocol eras, and how it ends.

MCP clients end a stdio server by closing its stdin, then SIGTERM about 2 s later, then SIGKILL.
Every way out must leave no session behind, well inside that window.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import queue
import secrets
import signal
import subprocess
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import mcp_types
import pytest
from mcp import Client

from tests.conftest import call, session_dirs, stdio_params

#: MCP clients send SIGTERM this long after closing stdin, and SIGKILL after that.
CLIENT_GRACE_SECONDS = 2.0
#: The default per-conversation quota, and the load the shutdown paths are measured with.
MANY_SESSIONS = 50


class RawStdioServer:
    """A `python -m agentbay_mcp` stdio subprocess driven with raw newline-delimited JSON-RPC.

    stdout is read by a thread into a queue (so every read has a timeout) and kept in
    `stdout_lines`; stderr goes to a file next to the state dir. Use it as a context manager:
    leaving kills the process if it is still running.
    """

    PROTOCOL_VERSION = "2025-11-25"

    def __init__(self, state_dir: Path, *args: str, **env: str) -> None:
        params = stdio_params(state_dir, *args, **env)
        self.state_dir = state_dir
        state_dir.parent.mkdir(parents=True, exist_ok=True)
        self.stderr_path = state_dir.parent / f"stdio-{secrets.token_hex(4)}.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [params.command, *params.args],
            env=params.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
        )
        self.stdout_lines: list[bytes] = []
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._ids = itertools.count(1)
        self._reader = threading.Thread(target=self._read_stdout, name="raw-stdio-reader", daemon=True)
        self._reader.start()

    # Process --------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout_lines.append(line)
            self._lines.put(line)
        self._lines.put(None)

    def close_stdin(self) -> None:
        """EOF on the server's stdin: the way an MCP client ends a stdio conversation."""
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self.process.stdin.close()

    def send_signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait_exit(self, timeout: float) -> int | None:
        """The exit code, or None if the process is still running after `timeout` seconds."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to clean up."""
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        """Make sure the process is gone and every handle is closed (idempotent)."""
        try:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait(timeout=10)
        finally:
            if self.process.stdin is not None and not self.process.stdin.closed:
                self.close_stdin()
            self._reader.join(timeout=5)
            if self.process.stdout is not None:
                self.process.stdout.close()
            self._stderr.close()

    def __enter__(self) -> RawStdioServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # JSON-RPC -------------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        self.process.stdin.flush()

    def send(self, message: dict[str, Any]) -> None:
        self.send_raw(json.dumps(message).encode() + b"\n")

    def receive(self, timeout: float = 10.0) -> dict[str, Any]:
        """The next message the server writes to stdout."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no message from the server in {timeout} s\n{self.stderr_text}") from None
        if line is None:
            self._lines.put(None)  # later reads see EOF too
            raise EOFError(f"the server closed stdout (exit {self.process.poll()})\n{self.stderr_text}")
        message: dict[str, Any] = json.loads(line)
        return message

    def request(self, method: str, params: dict[str, Any] | None = None, timeout: float = 10.0) -> dict[str, Any]:
        """Send a request and return its response (skipping any notification in between)."""
        request_id = next(self._ids)
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        deadline = time.monotonic() + timeout
        while True:
            response = self.receive(timeout=max(0.0, deadline - time.monotonic()))
            if response.get("id") == request_id:
                return response

    def initialize(self) -> dict[str, Any]:
        """The 2025-11-25 handshake: initialize, then notifications/initialized."""
        response = self.request(
            "initialize",
            {
                "protocolVersion": self.PROTOCOL_VERSION,
                "capabilities": {},
                "clientInfo": {"name": "raw-stdio-test", "version": "0"},
            },
            timeout=30,
        )
        assert "result" in response, response
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})
        result: dict[str, Any] = response["result"]
        return result

    def call_tool_result(self, name: str, **arguments: Any) -> dict[str, Any]:
        """The raw `tools/call` result (tool errors included)."""
        response = self.request("tools/call", {"name": name, "arguments": arguments})
        assert "result" in response, response
        result: dict[str, Any] = response["result"]
        return result

    def call_tool(self, name: str, **arguments: Any) -> dict[str, Any]:
        """Call a tool that must succeed; returns its structured output."""
        result = self.call_tool_result(name, **arguments)
        assert not result.get("isError"), result
        structured: dict[str, Any] = result["structuredContent"]
        return structured

    def call_tool_error(self, name: str, **arguments: Any) -> str:
        """Call a tool that must fail with a tool error; returns the message."""
        result = self.call_tool_result(name, **arguments)
        assert result.get("isError"), f"{name} unexpectedly succeeded: {result}"
        return " ".join(block.get("text", "") for block in result["content"])

    def create_sessions(self, count: int, **arguments: Any) -> list[str]:
        """Create `count` sessions; returns their ids."""
        return [self.call_tool("create_session", **arguments)["session_id"] for _ in range(count)]


def sessions_dir_entries(state_dir: Path) -> list[str]:
    """Everything in `<state>/sessions`, litter (staging, trash) included."""
    sessions = state_dir / "sessions"
    return sorted(p.name for p in sessions.iterdir()) if sessions.exists() else []


def lock_files(state_dir: Path) -> list[str]:
    """Server lock files present in the state dir."""
    servers = state_dir / "servers"
    return sorted(p.name for p in servers.iterdir()) if servers.exists() else []


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
