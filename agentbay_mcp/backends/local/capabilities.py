"""The local backend's capability objects: processes, files and the desktop of its sessions.

Each call finds the session's live agent (restarting a sandbox that died, see backend.py) and hands
the operation to processes.py, files.py or desktop.py, which speak the agent protocol. The backend
gives these objects the lookups and the bookkeeping they share with it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agentbay_mcp.backends import records, records_desktop
from agentbay_mcp.backends.local import desktop, files, processes
from agentbay_mcp.backends.local.agent_client import AgentClient
from agentbay_mcp.backends.records_desktop import WindowAction

#: The session's live agent (starting its sandbox again if it died).
AgentLookup = Callable[[str], Awaitable[AgentClient]]


class LocalProcesses:
    """Commands and background processes (with handles), run by the agent in the sandbox."""

    def __init__(
        self,
        agent: AgentLookup,
        live_agent: Callable[[str], AgentClient | None],
        background: dict[str, dict[str, str]],
    ) -> None:
        self._agent = agent
        self._live_agent = live_agent
        #: Background processes believed running, per session (the backend's, for its loss reports).
        self._background = background

    async def start_process(
        self, session_id: str, command: records.ShellCommand, *, stdin: bool, foreground: bool, cap: int
    ) -> records.ProcessInfo:
        """Start `sh -c command` in the sandbox."""
        agent = await self._agent(session_id)
        info = await processes.start(
            agent, command.command, cwd=command.cwd, env=command.env, stdin=stdin, foreground=foreground, cap=cap
        )
        if not foreground:
            self._background.setdefault(session_id, {})[info.proc_id] = command.command
        return info

    async def run_process(
        self, session_id: str, command: records.ShellCommand, *, wait_ms: int, cap: int, timeout_ms: int | None = None
    ) -> records.RunOutcome:
        """Start a foreground command and wait for it in one round trip (the service enforces timeout_ms)."""
        agent = await self._agent(session_id)
        return await processes.run(agent, command.command, cwd=command.cwd, env=command.env, wait_ms=wait_ms, cap=cap)

    async def wait_process(self, session_id: str, proc_id: str, wait_ms: int) -> records.ProcessInfo:
        """Wait up to `wait_ms` for the exit."""
        return self._noted(session_id, await processes.wait(await self._agent(session_id), proc_id, wait_ms))

    def _noted(self, session_id: str, info: records.ProcessInfo) -> records.ProcessInfo:
        if not info.running:  # exited: nothing to lose if the sandbox dies later
            self._background.get(session_id, {}).pop(info.proc_id, None)
        return info

    async def read_process_output(
        self, session_id: str, proc_id: str, cursors: dict[str, int], wait_ms: int, max_bytes: int
    ) -> records.ProcessOutput:
        """Output since the cursors."""
        return await processes.read(await self._agent(session_id), proc_id, cursors, wait_ms, max_bytes)

    async def process_output_summary(self, session_id: str, proc_id: str, cap: int) -> records.OutputSummary:
        """Both streams within the cap."""
        return await processes.summary(await self._agent(session_id), proc_id, cap)

    async def process_tail(self, session_id: str, proc_id: str, lines: int) -> dict[str, list[str]]:
        """Last lines of each stream."""
        return await processes.tail(await self._agent(session_id), proc_id, lines)

    async def write_process_input(self, session_id: str, proc_id: str, data: bytes, eof: bool) -> int:
        """Write to stdin."""
        return await processes.write(await self._agent(session_id), proc_id, data, eof)

    async def kill_process(
        self, session_id: str, proc_id: str, signal: int, grace_ms: int, reason: str
    ) -> records.ProcessInfo:
        """Signal the process group."""
        info = await processes.kill(await self._agent(session_id), proc_id, signal, grace_ms, reason)
        return self._noted(session_id, info)

    async def forget_process(self, session_id: str, proc_id: str) -> None:
        """Drop a process (killing it if needed); a dead sandbox took it along already."""
        self._background.get(session_id, {}).pop(proc_id, None)
        agent = self._live_agent(session_id)
        if agent is not None:
            await processes.forget(agent, proc_id)

    async def list_processes(self, session_id: str) -> list[records.ProcessInfo]:
        """Background processes."""
        found = await processes.list_all(await self._agent(session_id))
        # The agent's list is the truth: what has exited (or was forgotten) would not be lost with it.
        self._background[session_id] = {p.proc_id: p.command for p in found if p.running}
        return found


class LocalFiles:
    """Files, resolved by the agent inside the sandbox."""

    def __init__(self, agent: AgentLookup, quota_mb_for: Callable[[str], int | None]) -> None:
        self._agent = agent
        #: The disk quota to name when a write to a path finds no space (None: not on the quota disk).
        self._quota_mb_for = quota_mb_for

    async def read_file(self, session_id: str, path: str, span: records.ReadSpan, max_bytes: int) -> records.FileChunk:
        """A byte range or lines of a file."""
        agent = await self._agent(session_id)
        return await files.read(agent, path, span, max_bytes=max_bytes)

    async def write_file(self, session_id: str, path: str, data: bytes, mode: str) -> records.FileWritten:
        """Overwrite atomically or append."""
        agent = await self._agent(session_id)
        return await files.write(agent, path, data, mode, disk_quota_mb=self._quota_mb_for(path))

    async def edit_file(
        self, session_id: str, path: str, edits: list[dict[str, str]], dry_run: bool
    ) -> records.FileEdited:
        """Exact-once replacements."""
        agent = await self._agent(session_id)
        return await files.edit(agent, path, edits, dry_run, disk_quota_mb=self._quota_mb_for(path))

    async def file_info(self, session_id: str, path: str) -> records.FileInfo:
        """Metadata of a path."""
        return await files.info(await self._agent(session_id), path)

    async def list_directory(self, session_id: str, path: str, max_entries: int) -> records.DirectoryListing:
        """Entries of a directory."""
        return await files.listing(await self._agent(session_id), path, max_entries)

    async def search_files(
        self, session_id: str, path: str, pattern: str, exclude_patterns: list[str], max_results: int
    ) -> records.SearchResult:
        """Glob search."""
        return await files.search(await self._agent(session_id), path, pattern, exclude_patterns, max_results)

    async def create_directory(self, session_id: str, path: str) -> records.DirectoryCreated:
        """mkdir -p."""
        return await files.mkdir(await self._agent(session_id), path)

    async def move_file(self, session_id: str, source: str, destination: str) -> records.FileMoved:
        """Rename without replacing."""
        return await files.move(await self._agent(session_id), source, destination)


class LocalDesktop:
    """The desktop: the display lives in the agent, inside the sandbox."""

    def __init__(
        self,
        desktop_agent: AgentLookup,
        agent: AgentLookup,
        commands: LocalProcesses,
        screen: tuple[int, int],
    ) -> None:
        #: The agent, for a desktop call: a later sandbox death then reports the desktop as lost.
        self._desktop_agent = desktop_agent
        self._agent = agent
        self._commands = commands
        self._screen = screen

    async def installed_apps(self, session_id: str, include_system: bool) -> list[records_desktop.InstalledApp]:
        """`.desktop` applications visible in the sandbox."""
        return await desktop.installed_apps(await self._desktop_agent(session_id), include_system)

    async def launch_app(
        self, session_id: str, start_cmd: str, work_directory: str | None
    ) -> records_desktop.AppLaunch:
        """Start an application on the session's display."""
        return await desktop.launch(await self._desktop_agent(session_id), start_cmd, work_directory)

    async def app_status(self, session_id: str, launch: records_desktop.AppLaunch) -> records_desktop.AppStatus:
        """A launched application's processes and window."""
        return await desktop.app_status(await self._desktop_agent(session_id), launch)

    async def stop_app(
        self, session_id: str, *, pid: int | None, pname: str | None, stop_cmd: str | None
    ) -> records_desktop.AppStopped:
        """Stop process trees in the sandbox, or run the stop command on the session's display."""
        agent = await self._agent(session_id)
        if stop_cmd is None:
            return records_desktop.AppStopped(stopped=await desktop.stop_app(agent, pid, pname))
        env = await desktop.env(agent)
        stop = records.ShellCommand(command=stop_cmd, env=env)
        outcome = await self._commands.run_process(session_id, stop, wait_ms=10_000, cap=2000)
        if outcome.summary is None:  # still running after 10 s: don't leave it behind
            await self._commands.forget_process(session_id, outcome.info.proc_id)
            return records_desktop.AppStopped(stopped=[], note="stop_cmd did not finish within 10 s and was killed.")
        return records_desktop.AppStopped(stopped=[], stop_cmd_exit_code=outcome.info.exit_code)

    async def visible_apps(self, session_id: str) -> list[records_desktop.VisibleApp]:
        """Processes with a visible window."""
        return await desktop.visible_apps(await self._desktop_agent(session_id))

    async def list_windows(self, session_id: str) -> records_desktop.WindowList:
        """Top-level windows."""
        return await desktop.windows(await self._desktop_agent(session_id))

    async def active_window(self, session_id: str) -> records_desktop.WindowInfo | None:
        """The active window."""
        return await desktop.active(await self._desktop_agent(session_id))

    async def window_detail(self, session_id: str, window_id: int) -> records_desktop.WindowDetail:
        """One window."""
        return await desktop.detail(await self._desktop_agent(session_id), window_id)

    async def window_action(
        self, session_id: str, window_id: int, action: WindowAction, width: int | None, height: int | None
    ) -> None:
        """A window-manager request."""
        await desktop.action(await self._desktop_agent(session_id), window_id, action, width, height)

    async def set_focus_mode(self, session_id: str, on: bool) -> records_desktop.FocusMode:
        """Focus mode on or off."""
        return await desktop.focus_mode(await self._desktop_agent(session_id), on)

    async def screenshot(self, session_id: str) -> records_desktop.Screenshot:
        """Raw screen pixels."""
        return await desktop.screenshot(await self._desktop_agent(session_id), self._screen)

    async def input_action(self, session_id: str, action: dict[str, Any]) -> records_desktop.InputResult:
        """Mouse or keyboard input."""
        return await desktop.input_action(await self._desktop_agent(session_id), action)
