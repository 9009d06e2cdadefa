"""Shared fixtures: settings on a private state dir, servers, and MCP clients in both protocol eras."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from anyio.abc import TaskGroup
from mcp import Client, StdioServerParameters
from mcp_types import CallToolResult

from agentbay_mcp.backends.local.disk_quota import unmount_under
from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.settings import Settings

#: The two protocol eras every in-memory tool test runs in.
ERAS = ("legacy", "2026-07-28")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def task_group() -> AsyncIterator[TaskGroup]:
    """A task group alive for the whole test (what the server's lifespan gives its backend)."""
    async with anyio.create_task_group() as group:
        yield group
        group.cancel_scope.cancel()


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() == 0:
        # Root's sandboxes run as nobody, which must traverse to the state dir; pytest makes 0700 dirs.
        for parent in [tmp_path, *tmp_path.parents]:
            if parent.stat().st_mode & 0o001 == 0:
                parent.chmod(parent.stat().st_mode | 0o011)
    yield tmp_path / "state"
    # Sessions a test leaves behind (e.g. of a SIGKILLed server nobody reaped) keep their disk quota
    # mounted: detach it, or loop devices pile up on the host across runs.
    unmount_under(tmp_path)


@pytest.fixture
def settings(state_dir: Path) -> Settings:
    return Settings(state_dir=state_dir)


@pytest.fixture(params=ERAS)
def era(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def client(settings: Settings, era: str) -> AsyncIterator[Client]:
    """An in-memory MCP client, once per protocol era."""
    async with Client(build_server(settings), mode=era) as connected:
        yield connected


def leaves(error: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from leaves(inner)
    else:
        yield error


@contextlib.contextmanager
def unwrapped() -> Iterator[None]:
    """Re-raise a failed assertion that a client's task group wrapped in an exception group."""
    try:
        yield
    except BaseExceptionGroup as group:
        found = list(leaves(group))
        if len(found) == 1 and isinstance(found[0], AssertionError):
            raise found[0] from None
        raise


def structured(result: CallToolResult) -> dict[str, Any]:
    """The structured result of a successful tool call (fails the test on a tool error)."""
    assert not result.is_error, error_text(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


def error_text(result: CallToolResult) -> str:
    """The text of a tool result (the message of a tool error)."""
    return " ".join(getattr(block, "text", "") for block in result.content)


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; returns its structured output."""
    return structured(await client.call_tool(tool, arguments))


async def call_error(client: Client, tool: str, **arguments: Any) -> str:
    """Call a tool that must fail with a tool error; returns the message."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} unexpectedly succeeded: {result.structured_content}"
    return error_text(result)


def session_dirs(state_dir: Path) -> list[str]:
    """Session ids present on disk in a state dir."""
    sessions = state_dir / "sessions"
    return sorted(p.name for p in sessions.iterdir() if p.name.startswith("session-")) if sessions.exists() else []


def server_env(state_dir: Path, **extra: str) -> dict[str, str]:
    """Environment for a server subprocess on `state_dir`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBAY_MCP_")}
    env.update({"AGENTBAY_MCP_STATE_DIR": str(state_dir), "AGENTBAY_MCP_LOG_LEVEL": "INFO"}, **extra)
    return env


def stdio_params(state_dir: Path, *args: str, **env: str) -> StdioServerParameters:
    """Parameters that start `python -m agentbay_mcp` as a stdio subprocess."""
    return StdioServerParameters(
        command=sys.executable, args=["-m", "agentbay_mcp", *args], env=server_env(state_dir, **env)
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.02) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


async def eventually(predicate: Any, timeout: float = 10.0) -> bool:
    """`wait_until` off the event loop, so in-process servers and clients keep running meanwhile."""
    return bool(await anyio.to_thread.run_sync(partial(wait_until, predicate, timeout)))


class PeakRss:
    """Peak RSS of named groups of processes (each group summed), sampled in a thread every 5 ms."""

    def __init__(self, **groups: psutil.Process | Sequence[psutil.Process]) -> None:
        self.groups = {name: [g] if isinstance(g, psutil.Process) else list(g) for name, g in groups.items()}
        self.base = self.sample()
        self.peak = dict(self.base)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)

    def sample(self) -> dict[str, int]:
        found = {}
        for name, processes in self.groups.items():
            total = 0
            for process in processes:
                with contextlib.suppress(psutil.Error):
                    total += process.memory_info().rss
            found[name] = total
        return found

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            for key, value in self.sample().items():
                self.peak[key] = max(self.peak[key], value)

    def growth(self, key: str) -> int:
        return self.peak[key] - self.base[key]

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        assert not self._thread.is_alive()


class HttpServer:
    """A real `agentbay-mcp --transport http` subprocess on 127.0.0.1."""

    def __init__(self, state_dir: Path, *args: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        self.state_dir = state_dir
        self.log = state_dir.parent / f"http-{self.port}.log"
        state_dir.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agentbay_mcp", "--transport", "http", "--port", str(self.port), *args],
            env=server_env(state_dir),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
        )
        if not wait_until(self._listening, timeout=20):
            self.stop()
            raise RuntimeError(f"HTTP server did not start:\n{self.log.read_text()}")

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


@pytest.fixture
def http_server(state_dir: Path) -> Iterator[HttpServer]:
    """A real HTTP server with default settings."""
    server = HttpServer(state_dir)
    yield server
    server.stop()
