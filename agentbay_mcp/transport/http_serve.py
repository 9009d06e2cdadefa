"""Serve streamable HTTP with uvicorn (imported by serve.py only for `--transport http`)."""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from agentbay_mcp.auth import start_token
from agentbay_mcp.auth.config import MCP_PATH, base_url, check_http_safety
from agentbay_mcp.auth.token_file import new_token
from agentbay_mcp.server.wiring import Running
from agentbay_mcp.settings import Settings
from agentbay_mcp.transport.http_app import http_app
from agentbay_mcp.transport.serve import resume_collection

logger = logging.getLogger(__name__)

#: How long uvicorn waits for open streams at shutdown before closing them (clients reconnect).
HTTP_GRACEFUL_SHUTDOWN_SECONDS = 1


class _HttpServer(uvicorn.Server):
    """uvicorn, minus re-raising the stop signal after a graceful shutdown.

    uvicorn re-delivers SIGTERM to itself once it has shut down, so the process dies of the signal
    (status 143) even though every session was released. SIGTERM is this server's normal stop: exit 0.

    Shutdown releases the sessions before uvicorn closes connections: otherwise it first waits
    out its graceful timeout for the calls in flight, and the release starts too late for clients
    that SIGKILL 2 s after SIGTERM.

    With a per-start `token`, the token file is written and the token announced once the socket is
    bound (the file then names the real port, even for --port 0, and its presence says the server
    listens); a clean stop removes the file.
    """

    def __init__(self, config: uvicorn.Config, running: Running, settings: Settings, token: str | None) -> None:
        super().__init__(config)
        self.running = running
        self.settings = settings
        self.token = token
        self.token_file: Path | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.token is not None:
            port = int(self.servers[0].sockets[0].getsockname()[1])
            self.token_file = start_token.token_path(self.settings.state_dir, port)
            try:
                start_token.write_token(self.token_file, self.token)
            except OSError as exc:
                # The token is still required and printed below: serving stays safe, only the file is missing.
                logger.warning("cannot write the token file %s: %s", self.token_file, exc.strerror or exc)
                self.token_file = None
            url = base_url(self.settings, port) + MCP_PATH
            # Straight to stderr, never through logging: the one place the token is ever shown.
            print(start_token.announcement(self.token, url, self.token_file), file=sys.stderr, flush=True)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        logger.info("stopping: releasing sessions, then closing connections")
        try:
            await self.running.release()
            await super().shutdown(sockets)
        finally:
            if self.token_file is not None and self.token is not None:
                start_token.remove_token(self.token_file, self.token)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        original = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


async def serve_http(settings: Settings) -> None:
    """Serve streamable HTTP until SIGTERM/SIGINT; shutdown releases every session."""
    for warning in check_http_safety(settings):
        logger.warning("%s", warning)  # every start, so nobody forgets it is on
    token = new_token() if start_token.wanted(settings) else None
    running = Running()
    app = http_app(settings, running, token)
    resume_collection()
    logger.info(
        "serving MCP at http://%s:%d/mcp (authentication: %s)",
        settings.host,
        settings.port,
        "required" if settings.auth_enabled else "per-start token" if token else "none",
    )
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        # A line per HTTP request costs about 2% of the server's CPU under load (bench_http_load.py)
        # and repeats what the audit log and /metrics already say: only when debugging.
        access_log=settings.log_level == "DEBUG",
        timeout_graceful_shutdown=HTTP_GRACEFUL_SHUTDOWN_SECONDS,
        lifespan="on",
    )
    server = _HttpServer(config, running, settings, token)
    await server.serve()
