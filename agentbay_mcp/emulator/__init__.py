"""An offline AgentBay API emulator: the AgentBay OpenAPI wire protocol, served by local sandboxes.

`agentbay-mcp emulator` runs it; `EmulatorServer` runs it inside an event loop (tests, benchmarks).
Point the agentbay backend or Alibaba's own SDK at it to test AgentBay code without the cloud.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import uvicorn

from agentbay_mcp.backends.local.sandbox import SandboxOptions
from agentbay_mcp.emulator.app import build_app

__all__ = ["EmulatorServer", "build_app", "run_emulator"]

logger = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the embedding program owns signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class EmulatorServer:
    """The emulator on 127.0.0.1 (a free port) for the life of an `async with`; `url` is its endpoint."""

    def __init__(
        self, state_dir: Path, api_key: str, *, link_url: bool = True, sandbox: SandboxOptions | None = None
    ) -> None:
        app = build_app(state_dir, api_key, link_url=link_url, sandbox=sandbox)
        config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_level="warning", access_log=False)
        self._server = _Server(config)
        self.url = ""

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[str]:
        """Serve in the background; yields the base URL once it accepts connections."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._server.serve)
            with anyio.fail_after(30):
                while not self._server.started:
                    if self._server.should_exit:
                        raise RuntimeError("the emulator failed to start")
                    await anyio.sleep(0.01)
            port = self._server.servers[0].sockets[0].getsockname()[1]
            self.url = f"http://127.0.0.1:{port}"
            try:
                yield self.url
            finally:
                self._server.should_exit = True


def run_emulator(host: str, port: int, state_dir: Path, *, link_url: bool = True, isolation: str = "bwrap") -> int:
    """Serve until SIGTERM/SIGINT; the API key is AGENTBAY_API_KEY (required, never logged)."""
    api_key = os.environ.get("AGENTBAY_API_KEY", "")
    if not api_key:
        print(
            "agentbay-mcp emulator: set AGENTBAY_API_KEY to the key clients must present "
            "(any string you choose, e.g. AGENTBAY_API_KEY=test-key).",
            file=sys.stderr,
        )
        return 2
    sandbox = SandboxOptions(isolation="none") if isolation == "none" else None
    app = build_app(state_dir, api_key, link_url=link_url, sandbox=sandbox)
    logger.info("AgentBay emulator on http://%s:%d (state dir %s)", host, port, state_dir)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False, lifespan="on")
    return 0
