"""The commands tools' output models (what the model reads, as structured content)."""

from __future__ import annotations

from pydantic import Field

from agentbay_mcp.services.model_base import OutputModel


class CommandResult(OutputModel):
    """The outcome of execute_command."""

    exit_code: int | None = Field(description="The command's exit status (128+N if killed by signal N).")
    stdout: str
    stderr: str
    duration_ms: int
    timed_out: bool = Field(description="True when timeout_ms ran out and the process group was killed.")
    stdout_truncated: bool
    stderr_truncated: bool
    stdout_bytes: int = Field(description="How many bytes the command wrote to stdout in all.")
    stderr_bytes: int
    full_stdout_path: str | None = Field(
        description="Where the complete stdout is kept in the session when it was truncated (read_file it)."
    )
    full_stderr_path: str | None
    message: str = Field(description="A one-line summary of what happened.")


class ProcessStatus(OutputModel):
    """A background process of a session."""

    process_id: str
    command: str
    running: bool
    exit_code: int | None
    signal: int | None = Field(description="The signal that ended it, if any.")
    elapsed_ms: int
    stdout_bytes: int
    stderr_bytes: int
    stdin_open: bool


class ProcessOutputChunk(OutputModel):
    """New output of a background process since a cursor."""

    process_id: str
    stdout: str
    stderr: str
    cursor: str = Field(description="Pass this as cursor next time to get only newer output.")
    more: bool = Field(description="True when more output is already waiting: call again at once.")
    dropped_bytes: int = Field(
        description="Output older than the kept buffer that this read could not return (it was dropped)."
    )
    status: ProcessStatus


class ProcessList(OutputModel):
    """The background processes of a session."""

    processes: list[ProcessStatus]


class InputWritten(OutputModel):
    """The outcome of write_process_input."""

    process_id: str
    bytes_written: int
    stdin_open: bool
