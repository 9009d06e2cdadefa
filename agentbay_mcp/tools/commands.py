"""Command tools: execute_command, and background processes with input, output, wait and kill."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult
from pydantic import Field

from agentbay_mcp.auth.scopes import ToolsetServer
from agentbay_mcp.services.commands.service import MAX_TIMEOUT_MS, MAX_WAIT_MS, ProgressCallback
from agentbay_mcp.tools.common import READ_ONLY, REPLACES, RUNS, STARTS, SessionId, tool, tool_call
from agentbay_mcp.tools.text.commands import COMMAND, OUTPUT, PROCESS, PROCESSES, STARTED, WRITTEN

ProcessId = str


def progress_reporter(ctx: Context[Any, Any]) -> ProgressCallback | None:
    """A progress callback when the client asked for progress (sent a progress token), else None."""
    meta = ctx.request_context.meta
    if not meta or not ({"progress_token", "progressToken"} & set(meta)):
        return None

    async def report(elapsed: float, total: float | None, message: str) -> None:
        await ctx.report_progress(round(elapsed, 1), total, message)

    return report


def register(mcp: ToolsetServer[Any]) -> None:
    """Add the command tools to `mcp`."""

    @tool(mcp, RUNS, COMMAND)
    async def execute_command(
        ctx: Context,
        session_id: SessionId,
        command: str,
        timeout_ms: Annotated[
            int,
            Field(ge=1, le=MAX_TIMEOUT_MS),
        ] = 60000,
        cwd: str | None = None,  # the description says the default
        envs: dict[str, str] | None = None,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.commands.execute_command(
                call.conversation, session_id, command, timeout_ms, cwd, envs, progress_reporter(ctx)
            )
        return COMMAND.answer(result)

    @tool(mcp, STARTS, STARTED)
    async def start_process(
        ctx: Context,
        session_id: SessionId,
        command: str,
        cwd: str | None = None,
        envs: dict[str, str] | None = None,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.commands.start_process(call.conversation, session_id, command, cwd, envs)
        return STARTED.answer(result)

    @tool(mcp, READ_ONLY, OUTPUT)
    async def read_process_output(
        ctx: Context,
        session_id: SessionId,
        process_id: ProcessId,
        cursor: str | None = None,
        wait_ms: Annotated[
            int,
            Field(ge=0, le=MAX_WAIT_MS),
        ] = 0,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.commands.read_process_output(call.conversation, session_id, process_id, cursor, wait_ms)
        return OUTPUT.answer(result)

    @tool(mcp, RUNS, WRITTEN)
    async def write_process_input(
        ctx: Context,
        session_id: SessionId,
        process_id: ProcessId,
        data: Annotated[str, Field(description="Include '\\n' to end a line.")],
        eof: bool = False,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.commands.write_process_input(call.conversation, session_id, process_id, data, eof)
        return WRITTEN.answer(result)

    @tool(mcp, READ_ONLY, PROCESS)
    async def wait_process(
        ctx: Context,
        session_id: SessionId,
        process_id: ProcessId,
        timeout_ms: Annotated[int, Field(ge=0, le=MAX_WAIT_MS)] = 30000,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.commands.wait_process(call.conversation, session_id, process_id, timeout_ms)
        return PROCESS.answer(result)

    @tool(mcp, REPLACES, PROCESS)
    async def kill_process(
        ctx: Context,
        session_id: SessionId,
        process_id: ProcessId,
        signal: Literal["TERM", "KILL", "INT", "HUP"] = "TERM",
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.commands.kill_process(call.conversation, session_id, process_id, signal)
        return PROCESS.answer(result)

    @tool(mcp, READ_ONLY, PROCESSES)
    async def list_processes(ctx: Context, session_id: SessionId) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.commands.list_processes(call.conversation, session_id)
        return PROCESSES.answer(result)
