"""A minimal newline-delimited JSON-RPC client for a stdio server subprocess (benchmarks only).

The benchmarks drive the real server binary through pipes so that what they time is what an
assistant sees, including the JSON-RPC framing, without the client library's own overhead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from agentbay_mcp.testing.answers import unpack


class RawStdioServer:
    """`python -m agentbay_mcp` on pipes, spoken to with the 2025-11-25 handshake.

    `command` replaces the server's command line (bench_start.py runs a minimal SDK server with it),
    `env` adds to its environment, `stderr` keeps its stderr (bench_start.py reads `-X importtime`),
    `checkout` runs that checkout's code (python -m puts the working directory first on the path).
    """

    def __init__(
        self,
        state_dir: Path,
        *args: str,
        command: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        stderr: int | IO[bytes] = subprocess.DEVNULL,
        checkout: Path | None = None,
    ) -> None:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBAY_MCP_")}
        environ.update(AGENTBAY_MCP_STATE_DIR=str(state_dir), AGENTBAY_MCP_LOG_LEVEL="WARNING", **(env or {}))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agentbay_mcp", *args] if command is None else list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env=environ,
            cwd=checkout,
        )
        self._next_id = 0
        self.request(
            "initialize",
            {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "bench", "version": "0"},
            },
        )
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(message).encode() + b"\n")
        self.process.stdin.flush()

    def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send a request and return its result (raises on a JSON-RPC error)."""
        self._next_id += 1
        self._send({"jsonrpc": "2.0", "id": self._next_id, "method": method, "params": params})
        assert self.process.stdout is not None
        while True:
            reply = json.loads(self.process.stdout.readline())
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(reply["error"])
                return dict(reply["result"])

    def tool(self, name: str, **arguments: Any) -> dict[str, Any]:
        """Call a tool and return its structured result, with the fields sent only as text read back."""
        result = self.request("tools/call", {"name": name, "arguments": arguments})
        if result.get("isError"):
            raise RuntimeError(result["content"])
        return unpack(name, result)

    def close_stdin(self) -> None:
        """End the conversation the way a client does."""
        assert self.process.stdin is not None
        self.process.stdin.close()

    def stop(self) -> None:
        """Make sure the process is gone."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
