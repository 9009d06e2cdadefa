"""The AgentBay backend: sessions are Wuying AgentBay cloud sessions, reached over the OpenAPI.

Session actions (and the ownership labels that make orphan reaping safe) are in sessions.py;
this module runs commands and file operations through the in-session tools (tools.py), over the
route the session's channel offers (routing.py: its direct LinkUrl, else CallMcpTool).
"""

from __future__ import annotations

import logging
import secrets
import signal
import time
from pathlib import Path
from typing import Any

from anyio.abc import TaskGroup

from agentbay_mcp.backends.agentbay import desktop, files, tools
from agentbay_mcp.backends.agentbay.client import AgentBayClient
from agentbay_mcp.backends.agentbay.commands import OUTPUT_DIR, Runs, kept, parse_report, redirected, summarize
from agentbay_mcp.backends.agentbay.routing import ToolRouter
from agentbay_mcp.backends.agentbay.sessions import CloudSessions, default_instance
from agentbay_mcp.backends.base import (
    AppLaunch,
    AppStatus,
    FileChunk,
    ImageInfo,
    OutputSummary,
    ProcessInfo,
    ProcessOutput,
    RunOutcome,
    Screenshot,
    SessionRecord,
    StreamSummary,
    WindowDetail,
)
from agentbay_mcp.backends.common.server_lock import ServerLock, new_server_id
from agentbay_mcp.errors import BackendUnavailableError
from agentbay_mcp.services.desktop.models import (
    AppStopped,
    FocusMode,
    InputResult,
    InstalledApp,
    VisibleApp,
    WindowAction,
    WindowInfo,
    WindowList,
)
from agentbay_mcp.services.files.models import (
    DirectoryCreated,
    DirectoryListing,
    FileEdited,
    FileInfo,
    FileMoved,
    FileWritten,
    SearchResult,
)

logger = logging.getLogger(__name__)

IMAGES: tuple[ImageInfo, ...] = (
    ImageInfo(image_id="linux_latest", description="Linux cloud desktop: shell, files, apps, windows.", desktop=True),
    ImageInfo(image_id="code_latest", description="Linux for code: shell, files, run_code; no desktop.", desktop=False),
    ImageInfo(image_id="browser_latest", description="Browser image (no window or app control).", desktop=False),
    ImageInfo(image_id="windows_latest", description="Windows cloud desktop.", desktop=True),
    ImageInfo(image_id="mobile_latest", description="Android cloud phone.", desktop=False),
)
#: Seconds the shell tool's HTTP call may outlast the command's own timeout_ms.
SHELL_MARGIN_SECONDS = 30.0


class AgentBayBackend:
    """Sessions in the AgentBay cloud. One instance per server process."""

    def __init__(
        self,
        client: AgentBayClient,
        *,
        state_dir: Path,
        instance: str | None = None,
        idle_timeout_seconds: float = 1800.0,
        delete_wait_seconds: float = 60.0,
        server_id: str | None = None,
        page_size: int = 100,
    ) -> None:
        self._client = client
        self._servers_dir = state_dir / "agentbay-servers"
        self._server_id = server_id or new_server_id()
        self._lock = ServerLock(self._servers_dir, self._server_id)
        self.instance = instance or default_instance(state_dir)
        self._sessions = CloudSessions(
            client,
            servers_dir=self._servers_dir,
            server_id=self._server_id,
            instance=self.instance,
            idle_timeout_seconds=idle_timeout_seconds,
            delete_wait_seconds=delete_wait_seconds,
            page_size=page_size,
        )
        self._route = ToolRouter(client, self._sessions)
        self._runs = Runs()
        self._focus_mode: dict[str, bool] = {}

    @property
    def name(self) -> str:
        """Backend name."""
        return "agentbay"

    @property
    def server_id(self) -> str:
        """This server instance's id (label agentbay-mcp.server)."""
        return self._server_id

    def images(self) -> list[ImageInfo]:
        """AgentBay's standard images (custom imgc-... images of the account work too)."""
        return list(IMAGES)

    async def start(self, task_group: TaskGroup) -> list[str]:
        """Claim this server's lock, check the key (the first API call does), and reap orphans."""
        try:
            self._lock.acquire()
        except OSError as exc:
            raise BackendUnavailableError(
                f"State dir {self._servers_dir.parent} is not usable ({exc.strerror or exc}); the agentbay "
                "backend keeps its server locks there. Point --state-dir at a writable directory."
            ) from exc
        try:
            return await self.reap_orphans()
        except BaseException:
            self._lock.release()
            raise

    async def close(self) -> None:
        """Give up the server lock."""
        self._lock.release()

    # Sessions -------------------------------------------------------------------------------

    async def create_session(
        self, *, image_id: str, labels: dict[str, str], owner: str, network: bool = False
    ) -> SessionRecord:
        """CreateMcpSession, never retried once sent; an answer lost in transit is found and deleted."""
        return await self._sessions.create(image_id=image_id, labels=labels, owner=owner, network=network)

    async def get_session(self, session_id: str) -> SessionRecord:
        """GetSession (status, channel) and GetLabel (labels, ownership)."""
        return await self._sessions.get(session_id)

    async def set_labels(self, session_id: str, labels: dict[str, str]) -> SessionRecord:
        """SetLabel with the new map plus this server's ownership labels."""
        return await self._sessions.set_labels(session_id, labels)

    async def keep_alive(self, session_id: str) -> None:
        """RefreshSessionIdleTime, best effort."""
        await self._sessions.keep_alive(session_id)

    async def delete_session(self, session_id: str) -> None:
        """DeleteSessionAsync, then poll until it is gone (bounded). Idempotent."""
        self._runs.drop_session(session_id)
        self._focus_mode.pop(session_id, None)
        await self._sessions.delete(session_id)

    async def reap_orphans(self) -> list[str]:
        """Delete this instance's sessions whose server is gone."""
        return await self._sessions.reap()

    async def list_all(self) -> list[SessionRecord]:
        """Every live session of this instance (any server's); never other people's sessions."""
        return await self._sessions.list_all()

    # Processes ------------------------------------------------------------------------------

    async def run_process(
        self,
        session_id: str,
        command: str,
        *,
        cwd: str | None,
        env: dict[str, str],
        wait_ms: int,
        cap: int,
        timeout_ms: int | None = None,
    ) -> RunOutcome:
        """One shell tool call, its HTTP read timeout always longer than the command's timeout_ms.

        On a size-limited channel (no LinkUrl) the command's streams go to files in the session and
        come back in pieces, head and tail within `cap`; the complete output stays readable there.
        """
        limit = timeout_ms or wait_ms
        proc_id = "cmd-" + secrets.token_hex(6)
        direct = self._route.direct(session_id, tools.SHELL)
        out_path, err_path = f"{OUTPUT_DIR}/{proc_id}.out", f"{OUTPUT_DIR}/{proc_id}.err"
        shell_command = command if direct else redirected(command, out_path, err_path)
        args: dict[str, Any] = {"command": shell_command, "timeout_ms": limit}
        if cwd:
            args["cwd"] = cwd
        if env:
            args["envs"] = env
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
        finished = self._runs.record(session_id, proc_id, command, result, streams, elapsed)
        if finished.info.running:  # stopped at its timeout: the command service kills and collects it
            return RunOutcome(info=finished.info)
        return RunOutcome(info=finished.info, summary=streams)

    async def _saved_streams(
        self, session_id: str, result: tools.ShellResult, out_path: str, err_path: str, cap: int
    ) -> dict[str, StreamSummary]:
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

    async def start_process(
        self,
        session_id: str,
        command: str,
        *,
        cwd: str | None,
        env: dict[str, str],
        stdin: bool,
        foreground: bool,
        cap: int,
    ) -> ProcessInfo:
        """Not supported: the cloud shell tool has no process handles."""
        raise self._runs.unsupported()

    async def wait_process(self, session_id: str, proc_id: str, wait_ms: int) -> ProcessInfo:
        """A kept command's state. Nothing runs on in the cloud: a command the shell tool reported as
        timed out is over, ended by that timeout (waiting would only spin until our own deadline)."""
        return self._runs.kill(session_id, proc_id, int(signal.SIGKILL), "timeout")

    async def read_process_output(
        self, session_id: str, proc_id: str, cursors: dict[str, int], wait_ms: int, max_bytes: int
    ) -> ProcessOutput:
        """Output of a kept command."""
        return self._runs.output(session_id, proc_id, cursors, max_bytes)

    async def process_output_summary(self, session_id: str, proc_id: str, cap: int) -> OutputSummary:
        """Both streams of a kept command."""
        return self._runs.summary(session_id, proc_id, cap)

    async def process_tail(self, session_id: str, proc_id: str, lines: int) -> dict[str, list[str]]:
        """Last lines of a kept command."""
        return self._runs.tail(session_id, proc_id, lines)

    async def write_process_input(self, session_id: str, proc_id: str, data: bytes, eof: bool) -> int:
        """Not supported: no process handles."""
        raise self._runs.unsupported()

    async def kill_process(self, session_id: str, proc_id: str, signal: int, grace_ms: int, reason: str) -> ProcessInfo:
        """The shell tool already stopped it at its timeout; record the kill."""
        return self._runs.kill(session_id, proc_id, signal, reason)

    async def forget_process(self, session_id: str, proc_id: str) -> None:
        """Drop a kept command."""
        self._runs.forget(session_id, proc_id)

    async def list_processes(self, session_id: str) -> list[ProcessInfo]:
        """Always empty: there are no background processes on this backend."""
        if session_id not in self._sessions.channels:
            await self.get_session(session_id)  # an unknown session is still SessionNotFoundError
        return []

    # Files ----------------------------------------------------------------------------------

    async def read_file(
        self,
        session_id: str,
        path: str,
        *,
        offset: int,
        length: int | None,
        start_line: int | None,
        line_count: int | None,
        max_bytes: int,
    ) -> FileChunk:
        """A byte range (read in pieces) or lines."""
        return await files.read(
            self._route.caller(session_id),
            path,
            offset=offset,
            length=length,
            start_line=start_line,
            line_count=line_count,
            max_bytes=max_bytes,
            piece=self._route.read_piece(session_id),
        )

    async def write_file(self, session_id: str, path: str, data: bytes, mode: str) -> FileWritten:
        """Overwrite or append, in pieces when messages are size-limited."""
        return await files.write(self._route.caller(session_id), path, data, mode, self._route.write_piece(session_id))

    async def edit_file(self, session_id: str, path: str, edits: list[dict[str, str]], dry_run: bool) -> FileEdited:
        """Exact replacements."""
        return await files.edit(self._route.caller(session_id), path, edits, dry_run)

    async def file_info(self, session_id: str, path: str) -> FileInfo:
        """Metadata of a path."""
        return await files.info(self._route.caller(session_id), path)

    async def list_directory(self, session_id: str, path: str, max_entries: int) -> DirectoryListing:
        """Names and types."""
        return await files.listing(self._route.caller(session_id), path, max_entries)

    async def search_files(
        self, session_id: str, path: str, pattern: str, exclude_patterns: list[str], max_results: int
    ) -> SearchResult:
        """Glob search."""
        return await files.search(self._route.caller(session_id), path, pattern, exclude_patterns, max_results)

    async def create_directory(self, session_id: str, path: str) -> DirectoryCreated:
        """mkdir -p."""
        return await files.mkdir(self._route.caller(session_id), path)

    async def move_file(self, session_id: str, source: str, destination: str) -> FileMoved:
        """Rename or move."""
        return await files.move(self._route.caller(session_id), source, destination)

    # Desktop --------------------------------------------------------------------------------

    async def installed_apps(self, session_id: str, include_system: bool) -> list[InstalledApp]:
        """get_installed_apps."""
        return await desktop.installed_apps(self._route.caller(session_id), include_system)

    async def launch_app(self, session_id: str, start_cmd: str, work_directory: str | None) -> AppLaunch:
        """start_app (no process handle: AgentBay reports the started processes only)."""
        return await desktop.launch(self._route.caller(session_id), start_cmd, work_directory)

    async def app_status(self, session_id: str, launch: AppLaunch) -> AppStatus:
        """The launched app's first new window."""
        return await desktop.app_status(self._route.caller(session_id), launch)

    async def stop_app(
        self, session_id: str, *, pid: int | None, pname: str | None, stop_cmd: str | None
    ) -> AppStopped:
        """stop_app_by_pid / _by_pname / _by_cmd."""
        return await desktop.stop_app(self._route.caller(session_id), pid, pname, stop_cmd)

    async def visible_apps(self, session_id: str) -> list[VisibleApp]:
        """list_visible_apps."""
        return await desktop.visible_apps(self._route.caller(session_id))

    async def list_windows(self, session_id: str) -> WindowList:
        """list_root_windows, get_active_window, get_screen_size."""
        return await desktop.window_list(self._route.caller(session_id), self._focus_mode.get(session_id, False))

    async def active_window(self, session_id: str) -> WindowInfo | None:
        """get_active_window."""
        return await desktop.active(self._route.caller(session_id))

    async def window_detail(self, session_id: str, window_id: int) -> WindowDetail:
        """One window from list_root_windows."""
        return await desktop.detail(self._route.caller(session_id), window_id)

    async def window_action(
        self, session_id: str, window_id: int, action: WindowAction, width: int | None, height: int | None
    ) -> None:
        """activate_window, maximize_window, ..., resize_window."""
        await desktop.action(self._route.caller(session_id), window_id, action, width, height)

    async def set_focus_mode(self, session_id: str, on: bool) -> FocusMode:
        """focus_mode."""
        mode = await desktop.focus_mode(self._route.caller(session_id), on)
        self._focus_mode[session_id] = on
        return mode

    async def screenshot(self, session_id: str) -> Screenshot:
        """screenshot (inline, LinkUrl sessions) or system_screenshot (a URL, downloaded)."""

        async def fetch(url: str) -> bytes:
            return await self._client.fetch(url, max_bytes=desktop.MAX_SCREENSHOT_BYTES)

        direct = self._route.direct(session_id, tools.SCREENSHOT)
        return await desktop.screenshot(self._route.caller(session_id), direct, fetch)

    async def input_action(self, session_id: str, action: dict[str, Any]) -> InputResult:
        """Mouse and keyboard tools, then get_cursor_position."""
        return await desktop.input_action(self._route.caller(session_id), action)
