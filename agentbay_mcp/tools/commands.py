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
from agentbay_mcp.tools.common import CHANGES, CREATES, READ_ONLY, REPLACES, SessionId, tool_call

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

    @mcp.tool(
        annotations=CHANGES,
        description=(
            "Run a shell command (sh -c) in the session's sandbox and wait for it. Returns exit_code, stdout "
            "and stderr separately, duration_ms and timed_out. stdin is closed. Each stream is capped "
            "(64 KiB by default): longer output keeps its start and end with a marker in between, and the "
            "complete output is saved in the session at full_stdout_path / full_stderr_path. When "
            "timeout_ms runs out the whole process group is killed and the output so far is returned. "
            "Processes the command leaves behind in its process group are killed when it exits: use start_process "
            "for servers "
            "and other long-running work. The default directory is /home/user."
        ),
    )
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

    @mcp.tool(
        annotations=CREATES,
        description=(
            "Start a long-running command (sh -c) in the background with stdin open and return its process_id "
            "at once. Then use read_process_output (with wait_ms to wait for new output server-side), "
            "write_process_input, wait_process and kill_process. It dies with the session."
        ),
    )
    async def start_process(
        ctx: Context,
        session_id: SessionId,
        command: Annotated[str, Field(description="Shell command, e.g. 'python3 -m http.server 8000'.")],
        cwd: Cwd = None,
        envs: Envs = None,
    ) -> ProcessStatus:
        async with tool_call(ctx) as call:
            return await call.commands.start_process(call.conversation, session_id, command, cwd, envs)

    @mcp.tool(
        annotations=READ_ONLY,
        description=(
            "Read a background process's output written since cursor (omit cursor to read from the start), and "
            "its status. With wait_ms > 0 the call waits server-side until there is new output or the process "
            "exits, so you do not need to poll in a loop. Pass the returned cursor next time. If more is true, "
            "more output is ready now. Very old output may have been dropped (dropped_bytes says how much)."
        ),
    )
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

    @mcp.tool(
        annotations=CHANGES,
        description="Write text to a background process's stdin; set eof=true to close stdin afterwards.",
    )
    async def write_process_input(
        ctx: Context,
        session_id: SessionId,
        process_id: ProcessId,
        data: Annotated[str, Field(description="Text to send; include '\\n' to end a line.")],
        eof: Annotated[bool, Field(description="Close stdin after writing.")] = False,
    ) -> InputWritten:
        async with tool_call(ctx) as call:
            return await call.commands.write_process_input(call.conversation, session_id, process_id, data, eof)

    @mcp.tool(
        annotations=READ_ONLY,
        description="Wait up to timeout_ms for a background process to exit and return its status (running or not).",
    )
    async def wait_process(
        ctx: Context,
        session_id: SessionId,
        process_id: ProcessId,
        timeout_ms: Annotated[int, Field(ge=0, le=MAX_WAIT_MS, description="How long to wait at most.")] = 30000,
    ) -> ProcessStatus:
        async with tool_call(ctx) as call:
            return await call.commands.wait_process(call.conversation, session_id, process_id, timeout_ms)

    @mcp.tool(
        annotations=REPLACES,
        description=(
            "Stop a background process and everything it started (its process group). TERM (default) is "
            "followed by KILL after 1 s if it is still running; KILL is immediate."
        ),
    )
    async def kill_process(
        ctx: Context,
        session_id: SessionId,
        process_id: ProcessId,
        signal: Annotated[Literal["TERM", "KILL", "INT", "HUP"], Field(description="Signal to send.")] = "TERM",
    ) -> ProcessStatus:
        async with tool_call(ctx) as call:
            return await call.commands.kill_process(call.conversation, session_id, process_id, signal)

    @mcp.tool(annotations=READ_ONLY, description="List the session's background processes with their status.")
    async def list_processes(ctx: Context, session_id: SessionId) -> ProcessList:
        async with tool_call(ctx) as call:
            return await call.commands.list_processes(call.conversation, session_id)
