"""The AgentBay backend's capability objects: commands, files and the desktop, over in-session tools.

Every call goes through the backend's `ToolRouter` (routing.py: LinkUrl when the session offers
one, else CallMcpTool). There are no process handles: the shell tool runs one command to completion
per call (see commands.py), so this backend has no `ProcessHandles` and declares so.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections.abc import Awaitable, Callable
from typing import Any

from agentbay_mcp.backends import records, records_desktop
from agentbay_mcp.backends.agentbay import desktop, files, tools
from agentbay_mcp.backends.agentbay.commands import OUTPUT_DIR, Runs, kept, parse_report, redirected, summarize
from agentbay_mcp.backends.agentbay.routing import ToolRouter
from agentbay_mcp.backends.records_desktop import WindowAction

#: Seconds the shell tool's HTTP call may outlast the command's own timeout_ms.
SHELL_MARGIN_SECONDS = 30.0


class AgentBayProcesses:
    """Commands: one shell tool call each; a command stopped at its timeout is kept to be collected."""

    def __init__(self, route: ToolRouter, known: Callable[[str], Awaitable[None]]) -> None:
        self._route = route
        #: Raises SessionNotFoundError for a session this backend does not know (an API call if need be).
        self._known = known
        self._runs = Runs()

    def drop_session(self, session_id: str) -> None:
        """Forget a deleted session's kept commands."""
        self._runs.drop_session(session_id)

    async def run_process(
        self, session_id: str, command: records.ShellCommand, *, wait_ms: int, cap: int, timeout_ms: int | None = None
    ) -> records.RunOutcome:
        """One shell tool call, its HTTP read timeout always longer than the command's timeout_ms.

        On a size-limited channel (no LinkUrl) the command's streams go to files in the session and
        come back in pieces, head and tail within `cap`; the complete output stays readable there.
        """
        limit = timeout_ms or wait_ms
        proc_id = "cmd-" + secrets.token_hex(6)
        direct = self._route.direct(session_id, tools.SHELL)
        out_path, err_path = f"{OUTPUT_DIR}/{proc_id}.out", f"{OUTPUT_DIR}/{proc_id}.err"
        shell_command = command.command if direct else redirected(command.command, out_path, err_path)
        args: dict[str, Any] = {"command": shell_command, "timeout_ms": limit}
        if command.cwd:
            args["cwd"] = command.cwd
        if command.env:
            args["envs"] = command.env
        started = time.monotonic()
        text, is_error = await self._route.call(session_id, tools.SHELL, args, limit / 1000 + SHELL_MARGIN_SECONDS)
        result = tools.parse_shell(text, is_error)
        if direct:
            streams = {
                "stdout": summarize(result.stdout.encode(), cap),
                "stderr": summarize(result.stderr.encode(), cap),
            }
        else:
            streams = await self._saved_streams(session_id, result, out_path, err_path, cap)
        elapsed = int((time.monotonic() - started) * 1000)
        finished = self._runs.record(session_id, proc_id, command.command, result, streams, elapsed)
        if finished.info.running:  # stopped at its timeout: the command service kills and collects it
            return records.RunOutcome(info=finished.info)
        return records.RunOutcome(info=finished.info, summary=streams)

    async def _saved_streams(
        self, session_id: str, result: tools.ShellResult, out_path: str, err_path: str, cap: int
    ) -> dict[str, records.StreamSummary]:
        """The streams a redirected command left in the session: inline in its report, else read back."""
        report = None if result.timed_out else parse_report(result.stdout)
        if report is not None and report.stdout is not None and report.stderr is not None:
            return {"stdout": kept(report.stdout, cap, out_path), "stderr": kept(report.stderr, cap, err_path)}
        call, piece = self._route.caller(session_id), self._route.read_piece(session_id)
        streams = {
            "stdout": await files.saved_stream(call, out_path, cap, piece, report.stdout_size if report else None),
            "stderr": await files.saved_stream(call, err_path, cap, piece, report.stderr_size if report else None),
        }
        if report is None and streams["stderr"].total == 0 and result.stderr and not result.timed_out:
            streams["stderr"] = summarize(result.stderr.encode(), cap)  # the wrapper itself failed
        return streams

    async def wait_process(self, session_id: str, proc_id: str, wait_ms: int) -> records.ProcessInfo:
        """A kept command's state. Nothing runs on in the cloud: a command the shell tool reported as
        timed out is over, ended by that timeout (waiting would only spin until our own deadline)."""
        return self._runs.kill(session_id, proc_id, int(signal.SIGKILL), "timeout")

    async def read_process_output(
        self, session_id: str, proc_id: str, cursors: dict[str, int], wait_ms: int, max_bytes: int
    ) -> records.ProcessOutput:
        """Output of a kept command."""
        return self._runs.output(session_id, proc_id, cursors, max_bytes)

    async def process_output_summary(self, session_id: str, proc_id: str, cap: int) -> records.OutputSummary:
        """Both streams of a kept command."""
        return self._runs.summary(session_id, proc_id, cap)

    async def process_tail(self, session_id: str, proc_id: str, lines: int) -> dict[str, list[str]]:
        """Last lines of a kept command."""
        return self._runs.tail(session_id, proc_id, lines)

    async def kill_process(
        self, session_id: str, proc_id: str, signal: int, grace_ms: int, reason: str
    ) -> records.ProcessInfo:
        """The shell tool already stopped it at its timeout; record the kill."""
        return self._runs.kill(session_id, proc_id, signal, reason)

    async def forget_process(self, session_id: str, proc_id: str) -> None:
        """Drop a kept command."""
        self._runs.forget(session_id, proc_id)

    async def list_processes(self, session_id: str) -> list[records.ProcessInfo]:
        """Always empty: there are no background processes on this backend."""
        await self._known(session_id)  # an unknown session is still SessionNotFoundError
        return []


class AgentBayFiles:
    """Files, through the in-session file tools (in pieces where messages are size-limited)."""

    def __init__(self, route: ToolRouter) -> None:
        self._route = route

    async def read_file(self, session_id: str, path: str, span: records.ReadSpan, max_bytes: int) -> records.FileChunk:
        """A byte range (read in pieces) or lines."""
        return await files.read(
            self._route.caller(session_id),
            path,
            span,
            max_bytes=max_bytes,
            piece=self._route.read_piece(session_id),
        )

    async def write_file(self, session_id: str, path: str, data: bytes, mode: str) -> records.FileWritten:
        """Overwrite or append, in pieces when messages are size-limited."""
        piece = self._route.write_piece(session_id)
        return await files.write(self._route.caller(session_id), path, data, mode, piece)

    async def edit_file(
        self, session_id: str, path: str, edits: list[dict[str, str]], dry_run: bool
    ) -> records.FileEdited:
        """Exact replacements."""
        return await files.edit(self._route.caller(session_id), path, edits, dry_run)

    async def file_info(self, session_id: str, path: str) -> records.FileInfo:
        """Metadata of a path."""
        return await files.info(self._route.caller(session_id), path)

    async def list_directory(self, session_id: str, path: str, max_entries: int) -> records.DirectoryListing:
        """Names and types."""
        return await files.listing(self._route.caller(session_id), path, max_entries)

    async def search_files(
        self, session_id: str, path: str, pattern: str, exclude_patterns: list[str], max_results: int
    ) -> records.SearchResult:
        """Glob search."""
        return await files.search(self._route.caller(session_id), path, pattern, exclude_patterns, max_results)

    async def create_directory(self, session_id: str, path: str) -> records.DirectoryCreated:
        """mkdir -p."""
        return await files.mkdir(self._route.caller(session_id), path)

    async def move_file(self, session_id: str, source: str, destination: str) -> records.FileMoved:
        """Rename or move."""
        return await files.move(self._route.caller(session_id), source, destination)


class AgentBayDesktop:
    """The desktop, through the in-session UI tools. Windows report no states (see desktop.py)."""

    def __init__(self, route: ToolRouter, fetch: Callable[[str], Awaitable[bytes]]) -> None:
        self._route = route
        #: Downloads a screenshot URL (system_screenshot's), at most desktop.MAX_SCREENSHOT_BYTES.
        self._fetch = fetch
        self._focus_mode: dict[str, bool] = {}

    def drop_session(self, session_id: str) -> None:
        """Forget a deleted session's focus mode."""
        self._focus_mode.pop(session_id, None)

    async def installed_apps(self, session_id: str, include_system: bool) -> list[records_desktop.InstalledApp]:
        """get_installed_apps."""
        return await desktop.installed_apps(self._route.caller(session_id), include_system)

    async def launch_app(
        self, session_id: str, start_cmd: str, work_directory: str | None
    ) -> records_desktop.AppLaunch:
        """start_app (no process handle: AgentBay reports the started processes only)."""
        return await desktop.launch(self._route.caller(session_id), start_cmd, work_directory)

    async def app_status(self, session_id: str, launch: records_desktop.AppLaunch) -> records_desktop.AppStatus:
        """The launched app's first new window."""
        return await desktop.app_status(self._route.caller(session_id), launch)

    async def stop_app(
        self, session_id: str, *, pid: int | None, pname: str | None, stop_cmd: str | None
    ) -> records_desktop.AppStopped:
        """stop_app_by_pid / _by_pname / _by_cmd."""
        return await desktop.stop_app(self._route.caller(session_id), pid, pname, stop_cmd)

    async def visible_apps(self, session_id: str) -> list[records_desktop.VisibleApp]:
        """list_visible_apps."""
        return await desktop.visible_apps(self._route.caller(session_id))

    async def list_windows(self, session_id: str) -> records_desktop.WindowList:
        """list_root_windows, get_active_window, get_screen_size."""
        return await desktop.window_list(self._route.caller(session_id), self._focus_mode.get(session_id, False))

    async def active_window(self, session_id: str) -> records_desktop.WindowInfo | None:
        """get_active_window."""
        return await desktop.active(self._route.caller(session_id))

    async def window_detail(self, session_id: str, window_id: int) -> records_desktop.WindowDetail:
        """One window from list_root_windows."""
        return await desktop.detail(self._route.caller(session_id), window_id)

    async def window_action(
        self, session_id: str, window_id: int, action: WindowAction, width: int | None, height: int | None
    ) -> None:
        """activate_window, maximize_window, ..., resize_window."""
        await desktop.action(self._route.caller(session_id), window_id, action, width, height)

    async def set_focus_mode(self, session_id: str, on: bool) -> records_desktop.FocusMode:
        """focus_mode."""
        mode = await desktop.focus_mode(self._route.caller(session_id), on)
        self._focus_mode[session_id] = on
        return mode

    async def screenshot(self, session_id: str) -> records_desktop.Screenshot:
        """screenshot (inline, LinkUrl sessions) or system_screenshot (a URL, downloaded)."""
        direct = self._route.direct(session_id, tools.SCREENSHOT)
        return await desktop.screenshot(self._route.caller(session_id), direct, self._fetch)

    async def input_action(self, session_id: str, action: dict[str, Any]) -> records_desktop.InputResult:
        """Mouse and keyboard tools, then get_cursor_position."""
        return await desktop.input_action(self._route.caller(session_id), action)
