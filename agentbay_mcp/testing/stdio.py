"""A stdio server driven with raw newline-delimited JSON-RPC, and what a state dir holds on disk."""

from __future__ import annotations

import contextlib
import itertools
import json
import queue
import secrets
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from agentbay_mcp.testing.answers import unpack
from agentbay_mcp.testing.servers import exit_code, spawn_stdio

#: MCP clients send SIGTERM this long after closing stdin, and SIGKILL after that.
CLIENT_GRACE_SECONDS = 2.0


class RawStdioServer:
    """A `python -m agentbay_mcp` stdio subprocess driven with raw newline-delimited JSON-RPC.

    stdout is read by a thread into a queue (so every read has a timeout) and kept in
    `stdout_lines`; stderr goes to a file next to the state dir. Use it as a context manager:
    leaving kills the process if it is still running.
    """

    PROTOCOL_VERSION = "2025-11-25"

    def __init__(self, state_dir: Path, *args: str, **env: str) -> None:
        self.state_dir = state_dir
        state_dir.parent.mkdir(parents=True, exist_ok=True)
        self.stderr_path = state_dir.parent / f"stdio-{secrets.token_hex(4)}.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.process = spawn_stdio(state_dir, self._stderr, *args, **env)
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
        return exit_code(self.process, timeout)

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

    def call_tool_result(self, name: str, /, **arguments: Any) -> dict[str, Any]:
        """The raw `tools/call` result (tool errors included)."""
        response = self.request("tools/call", {"name": name, "arguments": arguments})
        assert "result" in response, response
        result: dict[str, Any] = response["result"]
        return result

    def call_tool(self, name: str, /, **arguments: Any) -> dict[str, Any]:
        """Call a tool that must succeed; returns its structured output."""
        return unpack(name, self.call_tool_result(name, **arguments))

    def call_tool_error(self, name: str, /, **arguments: Any) -> str:
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
