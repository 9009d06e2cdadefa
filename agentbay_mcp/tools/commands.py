"""Command tools: execute_command, and background processes with input, output, wait and kill."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from pydantic import Field

from agentbay_mcp.services.commands.models import (
    CommandResult,
    InputWritten,
    ProcessList,
    ProcessOutputChunk,
    ProcessStatus,
)
from agentbay_mcp.services.commands.service import MAX_TIMEOUT_MS, MAX_WAIT_MS, ProgressCallback
from agentbay_mcp.tools.common import CHANGES, CREATES, READ_ONLY, REPLACES, SessionId, tool, tool_call

ProcessId = Annotated[str, Field(description="The process_id returned by start_process.")]
Cwd = Annotated[
    str | None, Field(description="Working directory inside the session; relative paths start at /home/user.")
]
Envs = Annotated[dict[str, str] | None, Field(description='Extra environment variables, e.g. {"DEBUG": "1"}.')]


def progress_reporter(ctx: Context[Any, Any]) -> ProgressCallback | None:
    """A progress callback when the client asked for progress (sent a progress token), else None."""
    meta = ctx.request_context.meta
    if not meta or not ({"progress_token", "progressToken"} & set(meta)):
        return None

    async def report(elapsed: float, total: float | None, message: str) -> None:
        await ctx.report_progress(round(elapsed, 1), total, message)

    return report


def register(mcp: MCPServer[Any]) -> None:
    """Add the command tools to `mcp`."""

    @tool(mcp, CHANGES)
    async def execute_command(
        ctx: Context,
        session_id: SessionId,
        command: Annotated[str, Field(description="Shell command, e.g. 'make test 2>&1 | tail -50'.")],
        timeout_ms: Annotated[
            int,
            Field(ge=1, le=MAX_TIMEOUT_MS, description="Kill the command after this long (default 60 s)."),
        ] = 60000,
        cwd: Cwd = None,
        envs: Envs = None,
    ) -> CommandResult:
        async with tool_call(ctx) as call:
            return await call.commands.execute_command(
                call.conversation, session_id, command, timeout_ms, cwd, envs, progress_reporter(ctx)
            )

    @tool(mcp, CREATES)
    async def start_process(
        ctx: Context,
        session_id: SessionId,
        command: Annotated[str, Field(description="Shell command, e.g. 'python3 -m http.server 8000'.")],
        cwd: Cwd = None,
        envs: Envs = None,
    ) -> ProcessStatus:
        async with tool_call(ctx) as call:
            return await call.commands.start_process(call.conversation, session_id, command, cwd, envs)

    @tool(mcp, READ_ONLY)
    async def read_process_output(
        ctx: Context,
        session_id: SessionId,
        process_id: ProcessId,
        cursor: Annotated[str | None, Field(description="The cursor from the previous read.")] = None,
        wait_ms: Annotated[
            int,
            Field(ge=0, le=MAX_WAIT_MS, description="Wait up to this long for new output (0 = don't wait)."),
        ] = 0,
    ) -> ProcessOutputChunk:
        async with tool_call(ctx) as call:
            return await call.commands.read_process_output(call.conversation, session_id, process_id, cursor, wait_ms)

    @tool(mcp, CHANGES)
    async def write_process_input(
        ctx: Context,
        session_id: SessionId,
        process_id: ProcessId,
        data: Annotated[str, Field(description="Text to send; include '\\n' to end a line.")],
        eof: Annotated[bool, Field(description="Close stdin after writing.")] = False,
    ) -> InputWritten:
        async with tool_call(ctx) as call:
            return await call.commands.write_process_input(call.conversation, session_id, process_id, data, eof)

    @tool(mcp, READ_ONLY)
    async def wait_process(
        ctx: Context,
        session_id: SessionId,
        process_id: ProcessId,
        timeout_ms: Annotated[int, Field(ge=0, le=MAX_WAIT_MS, description="How long to wait at most.")] = 30000,
    ) -> ProcessStatus:
        async with tool_call(ctx) as call:
            return await call.commands.wait_process(call.conversation, session_id, process_id, timeout_ms)

    @tool(mcp, REPLACES)
    async def kill_process(
        ctx: Context,
        session_id: SessionId,
        process_id: ProcessId,
        signal: Annotated[Literal["TERM", "KILL", "INT", "HUP"], Field(description="Signal to send.")] = "TERM",
    ) -> ProcessStatus:
        async with tool_call(ctx) as call:
            return await call.commands.kill_process(call.conversation, session_id, process_id, signal)

    @tool(mcp, READ_ONLY)
    async def list_processes(ctx: Context, session_id: SessionId) -> ProcessList:
        async with tool_call(ctx) as call:
            return await call.commands.list_processes(call.conversation, session_id)
