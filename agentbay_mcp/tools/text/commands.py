"""Command results as text: the output, with one status line."""

from __future__ import annotations

from agentbay_mcp.services.commands.models import (
    CommandResult,
    InputWritten,
    ProcessList,
    ProcessOutputChunk,
    ProcessStatus,
)
from agentbay_mcp.tools.shape import Shape
from agentbay_mcp.tools.text.common import name

STDERR_MARK = "--- stderr ---"


def output(stdout: str, stderr: str) -> str:
    """stdout as is, then (when there is any) stderr after a marker line of its own.

    The marker always follows a newline of its own, so the split is exact: a stdout without a final
    newline stays without one (the line before the marker is then stdout's last, not a blank one).
    """
    return f"{stdout}\n{STDERR_MARK}\n{stderr}" if stderr else stdout


def _command(result: CommandResult) -> str:
    body = output(result.stdout, result.stderr)
    return f"{result.message}\n{body}" if body else f"{result.message} No output."


def state(status: ProcessStatus) -> str:
    """running / exited with code N / killed by signal N."""
    if status.running:
        return "running"
    if status.signal:
        return f"killed by signal {status.signal}"
    return f"exited with code {status.exit_code}"


def process_line(status: ProcessStatus) -> str:
    """One background process: id, state, time, output sizes, stdin, command."""
    return (
        f"{status.process_id} {state(status)} {status.elapsed_ms} ms, {status.stdout_bytes} B out, "
        f"{status.stderr_bytes} B err, stdin {'open' if status.stdin_open else 'closed'}: {name(status.command)}"
    )


def _chunk(chunk: ProcessOutputChunk) -> str:
    head = f"{process_line(chunk.status)}\nNext read: cursor={chunk.cursor!r}."
    if chunk.more:
        head += " More output is waiting: read again now."
    if chunk.dropped_bytes:
        head += f" {chunk.dropped_bytes:,} older bytes were dropped (buffer full)."
    body = output(chunk.stdout, chunk.stderr)
    return f"{head}\n{body}" if body else f"{head} No new output."


def _processes(listing: ProcessList) -> str:
    if not listing.processes:
        return "No background processes."
    return "\n".join(process_line(p) for p in listing.processes)


def _written(done: InputWritten) -> str:
    return f"Wrote {done.bytes_written} bytes to {done.process_id}; stdin {'open' if done.stdin_open else 'closed'}."


COMMAND = Shape(CommandResult, _command, ("stdout", "stderr", "message"))
#: wait_process and kill_process: how it ended and how much output it left. The rest is in its line
#: (the command echoes start_process's argument, the process_id this call's).
PROCESS = Shape(ProcessStatus, process_line, ("command", "process_id", "elapsed_ms", "stdin_open"))
#: A process just started: its id, and whether it already ended.
STARTED = Shape(ProcessStatus, process_line, ("command", "elapsed_ms", "stdout_bytes", "stderr_bytes", "stdin_open"))
OUTPUT = Shape(ProcessOutputChunk, _chunk, ("stdout", "stderr", "process_id"))
PROCESSES = Shape(ProcessList, _processes, ("processes",), structured=False)
WRITTEN = Shape(InputWritten, _written, ("process_id",))
