"""Commands on the AgentBay backend: the in-session shell tool is one blocking call per command.

There is no process handle in the cloud API, so a command is a finished record by the time we know
anything about it. The one exception is a command the shell tool stopped at its timeout: it is kept
as a "still running" record for a moment, so the command service's own timeout path (kill, wait,
collect output) reports it exactly as on the local backend.
"""

from __future__ import annotations

import base64
import binascii
import shlex
import signal
from dataclasses import dataclass, field

from agentbay_mcp.backends.agentbay.tools import ShellResult
from agentbay_mcp.backends.records import OutputSummary, ProcessInfo, ProcessOutput, StreamChunk, StreamSummary
from agentbay_mcp.errors import ProcessNotFoundError

#: Where commands on a size-limited channel leave their complete output (read_file reads it).
OUTPUT_DIR = "/tmp/.agentbay-mcp"  # noqa: S108 (inside the session, never on this host)
#: Output up to this size comes back inline (base64, 4/3 larger) in the shell tool's reply, under the limit.
INLINE_OUTPUT_BYTES = 36 * 1024
REPORT_MARKER = "agentbay-mcp-output"
BACKGROUND_UNSUPPORTED = (
    "Background processes are not supported on the agentbay backend: AgentBay's shell tool runs one "
    "command to completion per call. Use execute_command with a timeout_ms long enough for the work, or "
    "start it detached (e.g. 'nohup cmd > /tmp/out.log 2>&1 &') and read the log with read_file."
)


def summarize(data: bytes, cap: int) -> StreamSummary:
    """All of a stream, or its head and tail within `cap` bytes (the rest is not kept in the session)."""
    if len(data) <= cap:
        return StreamSummary(head=data, tail=b"", total=len(data), full_bytes=0, full_complete=False)
    half = cap // 2
    return StreamSummary(
        head=data[:half],
        tail=data[len(data) - (cap - half) :],
        total=len(data),
        full_bytes=0,
        full_complete=False,
        note="the agentbay backend does not keep full output in the session",
    )


def redirected(command: str, out_path: str, err_path: str) -> str:
    """`command` with its streams sent to files in the session (a size-limited channel cannot carry them).

    The wrapper then reports the exit status and both sizes on a marker line and, when they are small,
    both streams base64-encoded on the next two lines: one request in the common case. It needs a POSIX
    shell with `wc`, `base64` and `tr` in the image (AgentBay's Linux images have them).
    """
    out, err, where = shlex.quote(out_path), shlex.quote(err_path), shlex.quote(OUTPUT_DIR)
    return (
        f"{{ [ -d {where} ] || mkdir -p {where}; }} && "
        f"{{ sh -c {shlex.quote(command)} > {out} 2> {err}; rc=$?; "
        f"so=$(wc -c < {out}); se=$(wc -c < {err}); echo {REPORT_MARKER} $rc $so $se; "
        f"if [ $((so + se)) -le {INLINE_OUTPUT_BYTES} ]; then "
        f"base64 < {out} | tr -d '\\n'; echo; base64 < {err} | tr -d '\\n'; echo; fi; exit $rc; }}"
    )


@dataclass(frozen=True)
class Report:
    """What the wrapper of `redirected` said: sizes, and the streams themselves when they were small."""

    stdout_size: int
    stderr_size: int
    stdout: bytes | None
    stderr: bytes | None


def parse_report(text: str) -> Report | None:
    """The wrapper's report in the shell tool's stdout, or None (it never got that far)."""
    lines = text.split("\n")
    for number, line in enumerate(lines):
        parts = line.split()
        if len(parts) != 4 or parts[0] != REPORT_MARKER or not all(p.lstrip("-").isdigit() for p in parts[1:]):
            continue
        sizes = int(parts[2]), int(parts[3])
        streams: list[bytes | None] = [None, None]
        if len(lines) > number + 2:
            try:
                decoded = [base64.b64decode(lines[number + k], validate=True) for k in (1, 2)]
            except (binascii.Error, ValueError):
                decoded = []
            if [len(d) for d in decoded] == list(sizes):
                streams = list(decoded)
        return Report(sizes[0], sizes[1], streams[0], streams[1])
    return None


def kept(data: bytes, cap: int, path: str) -> StreamSummary:
    """A stream within `cap` whose complete copy is kept in the session at `path`."""
    summary = summarize(data, cap)
    return summary.model_copy(update={"full_path": path, "full_bytes": len(data), "full_complete": True, "note": ""})


@dataclass
class Finished:
    """A command the shell tool has answered for."""

    info: ProcessInfo
    streams: dict[str, StreamSummary]


@dataclass
class Runs:
    """Timed-out commands awaiting the command service's kill-and-collect, per session."""

    by_session: dict[str, dict[str, Finished]] = field(default_factory=dict)

    def record(
        self,
        session_id: str,
        proc_id: str,
        command: str,
        result: ShellResult,
        streams: dict[str, StreamSummary],
        elapsed_ms: int,
    ) -> Finished:
        """A ProcessInfo for a shell result; timed-out ones stay listed as running until killed."""
        info = ProcessInfo(
            proc_id=proc_id,
            pid=0,
            command=command[:1_000_000],
            running=result.timed_out,
            exit_code=None if result.timed_out else result.exit_code,
            signal=None,
            elapsed_ms=elapsed_ms,
            stdout_bytes=streams["stdout"].total,
            stderr_bytes=streams["stderr"].total,
            stdin_open=False,
        )
        finished = Finished(info, streams)
        if result.timed_out:
            self.by_session.setdefault(session_id, {})[proc_id] = finished
        return finished

    def get(self, session_id: str, proc_id: str) -> Finished:
        """A kept command, or ProcessNotFoundError."""
        found = self.by_session.get(session_id, {}).get(proc_id)
        if found is None:
            raise ProcessNotFoundError(proc_id)
        return found

    def kill(self, session_id: str, proc_id: str, signum: int, reason: str) -> ProcessInfo:
        """The shell tool already stopped it: record how it ended."""
        found = self.get(session_id, proc_id)
        if found.info.running:
            found.info = found.info.model_copy(
                update={"running": False, "signal": signum or int(signal.SIGKILL), "killed_by": reason[:40]}
            )
        return found.info

    def summary(self, session_id: str, proc_id: str, cap: int) -> OutputSummary:
        """Both streams of a kept command (already within the cap they were run with)."""
        found = self.get(session_id, proc_id)
        return OutputSummary(info=found.info, streams=found.streams)

    def output(self, session_id: str, proc_id: str, cursors: dict[str, int], max_bytes: int) -> ProcessOutput:
        """What is known of a kept command's output since the cursors (its head and tail)."""
        found = self.get(session_id, proc_id)
        streams = {}
        for name, summary in found.streams.items():
            data = summary.head + summary.tail
            start = min(cursors.get(name, 0), len(data))
            piece = data[start : start + max_bytes]
            streams[name] = StreamChunk(
                data=piece, start=start, next_cursor=start + len(piece), dropped=0, total=len(data)
            )
        return ProcessOutput(info=found.info, streams=streams)

    def tail(self, session_id: str, proc_id: str, lines: int) -> dict[str, list[str]]:
        """The last lines of each stream."""
        found = self.get(session_id, proc_id)
        return {
            name: (s.head + s.tail).decode(errors="replace").splitlines()[-lines:] for name, s in found.streams.items()
        }

    def forget(self, session_id: str, proc_id: str) -> None:
        """Drop a kept command."""
        self.by_session.get(session_id, {}).pop(proc_id, None)

    def drop_session(self, session_id: str) -> None:
        """Forget everything of a deleted session."""
        self.by_session.pop(session_id, None)
