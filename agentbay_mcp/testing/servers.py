"""Real servers for tests: `python -m agentbay_mcp` as a stdio or HTTP subprocess on a private state dir."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

from mcp import StdioServerParameters

from agentbay_mcp.auth.start_token import token_path
from agentbay_mcp.testing.waiting import wait_until


def session_dirs(state_dir: Path) -> list[str]:
    """Session ids present on disk in a state dir."""
    sessions = state_dir / "sessions"
    return sorted(p.name for p in sessions.iterdir() if p.name.startswith("session-")) if sessions.exists() else []


#: Test and benchmark servers run without a session pool unless they ask for one: a pooled session is a
#: session directory and a sandbox of its own, which tests counting either would see, and every server
#: start would pay for one sandbox more.
NO_POOL = {"AGENTBAY_MCP_POOL_SIZE": "0"}


def server_env(state_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a server subprocess on `state_dir` (no session pool unless `extra` sets one)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBAY_MCP_")}
    env.update({"AGENTBAY_MCP_STATE_DIR": str(state_dir), "AGENTBAY_MCP_LOG_LEVEL": "INFO"}, **NO_POOL, **extra)
    return env


def stdio_params(state_dir: Path, *args: str, **env: str) -> StdioServerParameters:
    """Parameters that start `python -m agentbay_mcp` as a stdio subprocess."""
    return StdioServerParameters(
        command=sys.executable, args=["-m", "agentbay_mcp", *args], env=server_env(state_dir, **env)
    )


def spawn_stdio(state_dir: Path, stderr: IO[bytes], *args: str, **env: str) -> subprocess.Popen[bytes]:
    """A stdio server subprocess with pipes on stdin and stdout, for clients that speak raw JSON-RPC."""
    params = stdio_params(state_dir, *args, **env)
    return subprocess.Popen(
        [params.command, *params.args],
        env=params.env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=stderr,
    )


def exit_code(process: subprocess.Popen[bytes], timeout: float) -> int | None:
    """The exit code, or None if the process is still running after `timeout` seconds."""
    try:
        return process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


#: Flags that configure authentication of their own: no per-start token, and no --allow-unauthenticated.
_AUTH_FLAGS = ("--token-file", "--jwt-issuer", "--allow-unauthenticated")


class HttpServer:
    """A real `agentbay-mcp --transport http` subprocess on 127.0.0.1.

    With `start_token=True` it runs as `serve --transport http` does by default, with a per-start
    token, which it reads from the token file the way a script-driven client would (`token`,
    `headers`). Otherwise, unless `args` configure authentication, it runs with
    --allow-unauthenticated: for tests about something else, and for those that connect without a
    token (the sandbox attack through the HTTP endpoint measures the network isolation alone).
    """

    def __init__(self, state_dir: Path, *args: str, start_token: bool = False, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.state_dir = state_dir
        self.token_file = token_path(state_dir, self.port)
        self.token: str | None = None
        self.log = state_dir.parent / f"http-{self.port}.log"
        state_dir.parent.mkdir(parents=True, exist_ok=True)
        self.token_file.unlink(missing_ok=True)  # so that its presence says this server wrote it
        if not start_token and not any(flag in args for flag in _AUTH_FLAGS):
            args = ("--allow-unauthenticated", *args)
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agentbay_mcp", "--transport", "http", "--port", str(self.port), *args],
            env=server_env(state_dir),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        # The token file is written once the socket is bound: waiting for it is waiting for the server.
        ready = self._token_written if start_token else self._listening
        if not wait_until(ready, timeout=20):
            self.stop()
            raise RuntimeError(f"HTTP server did not start:\n{self.log.read_text()}")
        if start_token:
            self.token = self.token_file.read_text(encoding="utf-8")

    @property
    def headers(self) -> dict[str, str]:
        """The headers a client sends: the bearer token when the server has one."""
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _token_written(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        return self.token_file.exists()

    def _listening(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", self.port)) == 0

    def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM the server and wait for it."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait(timeout=5)
            self._log_file.close()
        return code
