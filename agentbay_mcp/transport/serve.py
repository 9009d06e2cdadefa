"""Run the server over a transport: stdio (one conversation per process) or streamable HTTP.

The HTTP stack (uvicorn, the app, authentication) lives in http_serve.py and is imported only to
serve HTTP: a stdio server's cold start does not pay for it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import signal
from typing import cast

import anyio
from mcp.server.stdio import stdio_server

from agentbay_mcp.server.wiring import Running, build_server
from agentbay_mcp.settings import Settings
from agentbay_mcp.transport.stdin_reader import AnswerUnreadable, StdinLines, StdoutWriter

logger = logging.getLogger(__name__)


def resume_collection() -> None:
    """The server is built: turn the cyclic collector back on (the CLI paused it, see cli.main).

    What start-up allocated lives as long as the process, so it is frozen out of every later
    collection first (gc.freeze), which keeps those as short as before. The few thousand objects
    of start-up garbage (about 1 MB) are kept with it.
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


async def serve_stdio(settings: Settings) -> None:
    """Serve one conversation over stdin/stdout until EOF, SIGTERM or SIGINT.

    MCP clients close stdin and send SIGTERM about two seconds later; either ends the conversation.
    The server's lifespan then deletes every session (bounded well inside those two seconds).
    """
    running = Running()
    server = build_server(settings, running=running)
    resume_collection()
    lowlevel = server._lowlevel_server
    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for signum in signals:
                    logger.info("received %s: releasing sessions and exiting", signal.Signals(signum).name)
                    await running.release()  # first, while calls in flight can still be answered
                    tg.cancel_scope.cancel()
                    return

        tg.start_soon(stop_on_signal)
        options = lowlevel.create_initialization_options()
        if StdinLines.supported(0) and StdinLines.supported(1):
            with contextlib.closing(StdinLines(0)) as lines, contextlib.closing(StdoutWriter()) as writer:
                # Duck-typed: the SDK only iterates stdin and calls write/flush on stdout.
                stdin = cast("anyio.AsyncFile[str]", lines)
                stdout = cast("anyio.AsyncFile[str]", writer)
                async with stdio_server(stdin=stdin, stdout=stdout) as (read_stream, write_stream):
                    reading = AnswerUnreadable(read_stream, write_stream, on_end=running.release)
                    await lowlevel.run(reading, write_stream, options)
        else:  # stdin redirected from a regular file: reads never block, the SDK's reader is fine
            async with stdio_server() as (read_stream, write_stream):
                reading = AnswerUnreadable(read_stream, write_stream, on_end=running.release)
                await lowlevel.run(reading, write_stream, options)
        tg.cancel_scope.cancel()


def run(settings: Settings) -> None:
    """Serve with the transport named in the settings."""
    if settings.transport == "stdio":
        anyio.run(serve_stdio, settings)
        return
    from agentbay_mcp.transport.http_serve import serve_http  # noqa: PLC0415 - see the module docstring

    anyio.run(serve_http, settings)
