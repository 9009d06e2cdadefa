"""Shared fixtures: settings on a private state dir, servers, and MCP clients in both protocol eras.

The helpers behind them live in agentbay_mcp.testing, where tests and benchmarks import them.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskGroup
from mcp import Client

from agentbay_mcp.backends.local.disk_quota import unmount_under
from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import ERAS
from agentbay_mcp.testing.servers import NO_POOL, HttpServer

# Servers built in this process (Settings() reads the environment) run without a session pool, like
# the subprocess servers (testing/servers.py says why); the pool's own tests set pool_size.
os.environ.update(NO_POOL)


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


@pytest.fixture
def http_server(state_dir: Path) -> Iterator[HttpServer]:
    """A real HTTP server with default settings: its per-start token required, which its clients send."""
    server = HttpServer(state_dir, start_token=True)
    yield server
    server.stop()
