"""CommandService: execute_command and background processes, over any backend.

Rules that live here, not in backends: argument validation, the session's ownership and lease
(through `SessionService.in_use`), the output cap and its marker, timeouts (SIGTERM, then SIGKILL
after a grace), progress reports, and killing the process group when the caller cancels or
disconnects. Never imports mcp: progress is an injected callback.
"""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import anyio

from agentbay_mcp.backends.common.utf8 import complete_utf8_prefix
from agentbay_mcp.backends.protocols import Processes, ProcessHandles
from agentbay_mcp.backends.records import Capabilities, ProcessInfo, ShellCommand, StreamSummary
from agentbay_mcp.errors import InvalidArgumentError, NotSupportedError
from agentbay_mcp.services.commands.models import (
    CommandResult,
    InputWritten,
    ProcessList,
    ProcessOutputChunk,
    ProcessStatus,
)
from agentbay_mcp.services.commands.output_text import (
    capped_text,
    decode,
    format_cursor,
    parse_cursor,
)
from agentbay_mcp.services.sessions.service import SessionService

#: progress(elapsed_seconds, total_seconds, message)
ProgressCallback = Callable[[float, float | None, str], Awaitable[None]]


@dataclass(frozen=True)
class _Run:
    """A foreground command still running after its first wait: what waiting it out needs."""

    session_id: str
    started: float
    timeout_ms: int
    progress: ProgressCallback | None


MAX_TIMEOUT_MS = 24 * 3600 * 1000
MAX_COMMAND_BYTES = 128 * 1024
MAX_ENV_BYTES = 128 * 1024
MAX_WAIT_MS = 5 * 60 * 1000
#: After SIGTERM on timeout, how long the process group gets before SIGKILL.
KILL_GRACE_MS = 1000
#: A process that does not end within this after SIGKILL is reported as still running.
AFTER_KILL_WAIT_MS = 3000
MAX_BACKGROUND_READ_BYTES = 256 * 1024
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SIGNALS = {"TERM": signal.SIGTERM, "KILL": signal.SIGKILL, "INT": signal.SIGINT, "HUP": signal.SIGHUP}


def _check_text(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{name} must be a string")
    if "\x00" in value:
        raise InvalidArgumentError(f"{name} must not contain NUL bytes")
    if len(value.encode()) > limit:
        raise InvalidArgumentError(f"{name} is longer than {limit:,} bytes")
    return value


def _check_command(command: object) -> str:
    text = _check_text("command", command, MAX_COMMAND_BYTES)
    if not text.strip():
        raise InvalidArgumentError("command is empty: pass a shell command such as 'ls -la'")
    return text


def _check_cwd(cwd: object) -> str | None:
    if cwd is None or cwd == "":
        return None
    return _check_text("cwd", cwd, 4096)


def _check_env(envs: Mapping[str, str] | None) -> dict[str, str]:
    if envs is None:
        return {}
    if not isinstance(envs, Mapping):
        raise InvalidArgumentError("envs must be an object of NAME: value strings")
    clean: dict[str, str] = {}
    for key, value in envs.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise InvalidArgumentError(f"environment variable name {str(key)[:40]!r} is not valid")
        clean[key] = _check_text(f"envs[{key}]", value, MAX_ENV_BYTES)
    if sum(len(k) + len(v) for k, v in clean.items()) > MAX_ENV_BYTES:
        raise InvalidArgumentError(f"envs total more than {MAX_ENV_BYTES:,} bytes")
    return clean


def _check_ms(name: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidArgumentError(f"{name} must be a whole number of milliseconds from {low} to {high:,}")
    return value


def status_of(info: ProcessInfo) -> ProcessStatus:
    """The model-facing status of a process."""
    return ProcessStatus(
        process_id=info.proc_id,
        command=info.command[:2000],
        running=info.running,
        exit_code=info.exit_code,
        signal=info.signal,
        elapsed_ms=info.elapsed_ms,
        stdout_bytes=info.stdout_bytes,
        stderr_bytes=info.stderr_bytes,
        stdin_open=info.stdin_open,
    )


class CommandService:
    """Commands and processes in sessions."""

    def __init__(
        self,
        sessions: SessionService,
        processes: Processes,
        handles: ProcessHandles | None,
        capabilities: Capabilities,
        *,
        output_cap_bytes: int = 65536,
        progress_interval_seconds: float = 1.0,
    ) -> None:
        self.sessions = sessions
        self.processes = processes
        #: Background processes; None on a backend without process handles (the tools refuse).
        self.handles = handles
        self.capabilities = capabilities
        self.output_cap_bytes = output_cap_bytes
        self.progress_interval_seconds = progress_interval_seconds

    async def execute_command(
        self,
        conversation: str,
        session_id: str,
        command: str,
        timeout_ms: int = 60000,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> CommandResult:
        """Run `sh -c command` in the session and return its capped output."""
        command = _check_command(command)
        timeout_ms = _check_ms("timeout_ms", timeout_ms, 1, MAX_TIMEOUT_MS)
        clean_cwd, env = _check_cwd(cwd), _check_env(envs)
        cap = self.output_cap_bytes
        async with self.sessions.in_use(conversation, session_id), self.sessions.command_slot(conversation):
            started = time.monotonic()
            first_wait = min(timeout_ms, int(self.progress_interval_seconds * 1000)) if progress else timeout_ms
            outcome = await self.processes.run_process(
                session_id,
                ShellCommand(command=command, cwd=clean_cwd, env=env),
                wait_ms=first_wait,
                cap=cap,
                timeout_ms=timeout_ms,
            )
            timed_out = False
            if outcome.summary is not None:  # the common case: done within the first wait, one round trip
                final, streams = outcome.info, outcome.summary
            else:
                run = _Run(session_id, started, timeout_ms, progress)
                final, streams, timed_out = await self._finish(run, outcome.info)
        duration_ms = int((time.monotonic() - started) * 1000)
        stdout, out_cut, out_path = capped_text("stdout", streams["stdout"])
        stderr, err_cut, err_path = capped_text("stderr", streams["stderr"])
        if timed_out:
            message = (
                f"Timed out after {timeout_ms} ms: the command's process group was sent SIGTERM, then SIGKILL "
                f"{KILL_GRACE_MS} ms later. Output gathered until then is shown. Use a larger timeout_ms or "
                "start_process for long-running work."
            )
        elif final.signal:
            message = f"Killed by signal {final.signal} after {duration_ms} ms."
        else:
            message = f"Exited with code {final.exit_code} after {duration_ms} ms."
        if out_cut or err_cut:
            message += " Output was truncated; see the markers in stdout/stderr."
        return CommandResult(
            exit_code=final.exit_code,
            stdout=stdout,
            stderr=stderr,
            duration_ms=duration_ms,
            timed_out=timed_out,
            stdout_truncated=out_cut,
            stderr_truncated=err_cut,
            stdout_bytes=final.stdout_bytes,
            stderr_bytes=final.stderr_bytes,
            full_stdout_path=out_path,
            full_stderr_path=err_path,
            message=message,
        )

    async def _finish(self, run: _Run, info: ProcessInfo) -> tuple[ProcessInfo, dict[str, StreamSummary], bool]:
        """Wait out a command still running after the first wait; kill it on cancel or failure."""
        session_id = run.session_id
        try:
            if run.progress is not None:
                await self._report(run, info, run.progress)
            info, timed_out = await self._wait(run, info)
            summary = await self.processes.process_output_summary(session_id, info.proc_id, self.output_cap_bytes)
        except BaseException:
            # Cancelled by the client, its disconnect, or a failure: nothing may keep running.
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self.processes.kill_process(session_id, info.proc_id, signal.SIGKILL, 0, "cancelled")
            raise
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(5):
                await self.processes.forget_process(session_id, info.proc_id)
        return summary.info, summary.streams, timed_out

    async def _wait(self, run: _Run, info: ProcessInfo) -> tuple[ProcessInfo, bool]:
        session_id, progress = run.session_id, run.progress
        deadline = run.started + run.timeout_ms / 1000
        while info.running:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                await self.processes.kill_process(session_id, info.proc_id, signal.SIGTERM, KILL_GRACE_MS, "timeout")
                info = await self.processes.wait_process(session_id, info.proc_id, KILL_GRACE_MS + AFTER_KILL_WAIT_MS)
                return info, True
            step = min(remaining, self.progress_interval_seconds) if progress else remaining
            info = await self.processes.wait_process(session_id, info.proc_id, max(1, int(step * 1000)))
            if info.running and progress is not None:
                await self._report(run, info, progress)
        # A sandbox that stops commands at their timeout itself (AgentBay's shell tool) says which it stopped.
        return info, self.capabilities.sandbox_side_timeouts and info.killed_by == "timeout"

    def _handles(self) -> ProcessHandles:
        """The backend's process handles, or the error saying why it has none."""
        if self.handles is None:
            raise NotSupportedError(self.capabilities.unsupported.get("process_handles", "Not supported here."))
        return self.handles

    async def _report(self, run: _Run, info: ProcessInfo, progress: ProgressCallback) -> None:
        lines = await self.processes.process_tail(run.session_id, info.proc_id, 3)
        latest = [line.strip() for line in (lines.get("stdout") or []) + (lines.get("stderr") or []) if line.strip()]
        elapsed = time.monotonic() - run.started
        text = f"running for {elapsed:.1f} s"
        if latest:
            text += ": " + " | ".join(latest[-3:])[:300]
        await progress(elapsed, run.timeout_ms / 1000, text)

    # Background processes -------------------------------------------------------------------

    async def start_process(
        self,
        conversation: str,
        session_id: str,
        command: str,
        cwd: str | None = None,
        envs: Mapping[str, str] | None = None,
    ) -> ProcessStatus:
        """Start a background process with stdin open; returns its status (and process_id)."""
        command = _check_command(command)
        clean_cwd, env = _check_cwd(cwd), _check_env(envs)
        async with self.sessions.in_use(conversation, session_id):
            info = await self._handles().start_process(
                session_id,
                ShellCommand(command=command, cwd=clean_cwd, env=env),
                stdin=True,
                foreground=False,
                cap=self.output_cap_bytes,
            )
        return status_of(info)

    async def read_process_output(
        self, conversation: str, session_id: str, process_id: str, cursor: str | None = None, wait_ms: int = 0
    ) -> ProcessOutputChunk:
        """Output since `cursor`, waiting up to `wait_ms` for something new (or the exit)."""
        offsets = parse_cursor(cursor)
        wait_ms = _check_ms("wait_ms", wait_ms, 0, MAX_WAIT_MS)
        async with self.sessions.in_use(conversation, session_id):
            output = await self.processes.read_process_output(
                session_id, process_id, offsets, wait_ms, MAX_BACKGROUND_READ_BYTES
            )
        texts: dict[str, str] = {}
        next_offsets: dict[str, int] = {}
        dropped = 0
        more = False
        for name in ("stdout", "stderr"):
            chunk = output.streams.get(name)
            if chunk is None:
                texts[name], next_offsets[name] = "", offsets[name]
                continue
            keep = complete_utf8_prefix(chunk.data) if output.info.running else len(chunk.data)
            texts[name] = decode(chunk.data[:keep])
            next_offsets[name] = chunk.start + keep
            dropped += chunk.dropped
            more = more or chunk.start + len(chunk.data) < chunk.total
        return ProcessOutputChunk(
            process_id=process_id,
            stdout=texts["stdout"],
            stderr=texts["stderr"],
            cursor=format_cursor(next_offsets),
            more=more,
            dropped_bytes=dropped,
            status=status_of(output.info),
        )

    async def write_process_input(
        self, conversation: str, session_id: str, process_id: str, data: str, eof: bool = False
    ) -> InputWritten:
        """Write text to the process's stdin (and close it if `eof`)."""
        if not isinstance(data, str) or len(data.encode()) > 1024 * 1024:
            raise InvalidArgumentError("data must be a string of at most 1 MiB")
        async with self.sessions.in_use(conversation, session_id):
            written = await self._handles().write_process_input(session_id, process_id, data.encode(), eof)
            info = await self.processes.wait_process(session_id, process_id, 0)
        return InputWritten(process_id=process_id, bytes_written=written, stdin_open=info.stdin_open)

    async def wait_process(
        self, conversation: str, session_id: str, process_id: str, timeout_ms: int = 30000
    ) -> ProcessStatus:
        """Wait up to `timeout_ms` for the process to exit; returns its status either way."""
        timeout_ms = _check_ms("timeout_ms", timeout_ms, 0, MAX_WAIT_MS)
        async with self.sessions.in_use(conversation, session_id):
            return status_of(await self.processes.wait_process(session_id, process_id, timeout_ms))

    async def kill_process(
        self, conversation: str, session_id: str, process_id: str, signal_name: str = "TERM"
    ) -> ProcessStatus:
        """Signal the process's whole group (TERM escalates to KILL after a grace)."""
        if signal_name not in SIGNALS:
            raise InvalidArgumentError(f"signal must be one of {', '.join(SIGNALS)}")
        grace = KILL_GRACE_MS if signal_name == "TERM" else 0
        async with self.sessions.in_use(conversation, session_id):
            await self.processes.kill_process(session_id, process_id, SIGNALS[signal_name], grace, "kill_process")
            info = await self.processes.wait_process(session_id, process_id, grace + 500)
        return status_of(info)

    async def list_processes(self, conversation: str, session_id: str) -> ProcessList:
        """The session's background processes."""
        async with self.sessions.in_use(conversation, session_id):
            infos = await self.processes.list_processes(session_id)
        return ProcessList(processes=[status_of(i) for i in infos])
