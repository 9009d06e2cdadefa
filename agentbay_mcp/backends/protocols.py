"""The capability protocols every backend implements: sessions, processes, files, desktop.

Each method is declared once, here, with its contract; wide argument lists travel as records
(`ShellCommand`, `ReadSpan`). A backend is a `SandboxBackend`: the session lifecycle itself, its
capability objects (`processes`, `files`, `desktop`, and `process_handles` where it has them), and
the `Capabilities` (records.py) it declares. Services depend on the capabilities they use
(FileService takes a `Files`), never on a whole backend. Backends do
primitives only; ownership, leases, quotas, paging and truncation belong to the services.
Implementations raise only `agentbay_mcp.errors` exceptions. Every backend runs the shared
contract suite in `tests/contract/`, which skips what a backend declares absent.

Contexts and workspaces (records_contexts.py, records_workspaces.py) are the last two sections.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from anyio.abc import TaskGroup

from agentbay_mcp.backends import records, records_contexts, records_desktop, records_workspaces
from agentbay_mcp.backends.records_desktop import WindowAction


@runtime_checkable
class Sessions(Protocol):
    """The session lifecycle: images, create, look up, relabel, delete, and reap what dead servers left."""

    @property
    def name(self) -> str:
        """Short backend name, e.g. `local`."""
        ...

    @property
    def server_id(self) -> str:
        """This server instance's id, stamped on every session it creates."""
        ...

    def images(self) -> list[records.ImageInfo]:
        """Images this backend can create sessions from."""
        ...

    async def start(self, task_group: TaskGroup) -> list[str]:
        """Prepare for use (claim the server identity, reap orphans); returns the ids reaped.

        `task_group` (the server's, alive until after `close`) runs any background work, e.g. the
        readers of sandbox connections.
        """
        ...

    async def close(self) -> None:
        """Release what `start` claimed. Does not delete live sessions: the service does that first."""
        ...

    async def create_session(
        self,
        *,
        image_id: str,
        labels: dict[str, str],
        owner: str,
        network: records.NetworkPolicy | None = None,
        contexts: Sequence[records_contexts.ContextMount] = (),
        workspaces: Sequence[str] = (),
    ) -> records.SessionRecord:
        """Create a session with the egress `network` (None: off), the `contexts` shown at their paths and
        the `workspaces` at /workspace/NAME. Never leaves half a session behind.

        A backend without the `contexts` (or `workspaces`) capability raises `BackendUnavailableError`
        with its reason when asked for any."""
        ...

    async def get_session(self, session_id: str) -> records.SessionRecord:
        """The session's record, or `SessionNotFoundError`."""
        ...

    async def set_labels(self, session_id: str, labels: dict[str, str]) -> records.SessionRecord:
        """Replace the session's label map; returns the updated record."""
        ...

    async def keep_alive(self, session_id: str) -> None:
        """Tell the backend the session is in use (renews backend-side idle timers). Best effort."""
        ...

    async def delete_session(self, session_id: str) -> None:
        """Delete the session and everything in it, after writing its contexts back (a context that cannot be
        written is kept as it was, with the reason in its `notice`). Idempotent: an unknown id is not an error."""
        ...

    async def reap_orphans(self) -> list[str]:
        """Delete sessions whose creating server is gone, their contexts written back as delete_session does;
        returns their ids."""
        ...

    async def list_all(self) -> list[records.SessionRecord]:
        """Every session this backend can see, from any server (for operators, not for tools)."""
        ...


@runtime_checkable
class Processes(Protocol):
    """Commands in a session (commands toolset). `proc_id`s are scoped to their session.

    Every backend runs commands; a backend without process handles (records.Capabilities.process_handles
    False) keeps a command it stopped at its own timeout for the command service to collect.
    """

    async def run_process(
        self, session_id: str, command: records.ShellCommand, *, wait_ms: int, cap: int, timeout_ms: int | None = None
    ) -> records.RunOutcome:
        """Start a foreground command and wait up to `wait_ms`; if it ended, return its output (capped)
        and forget it, all in one step. Otherwise continue with wait_process.

        `timeout_ms` is the command's whole time limit, for backends that hand it to the sandbox
        (agentbay's shell tool) instead of killing the command themselves; others may ignore it."""
        ...

    async def wait_process(self, session_id: str, proc_id: str, wait_ms: int) -> records.ProcessInfo:
        """The process's state, after waiting up to `wait_ms` for it to exit."""
        ...

    async def read_process_output(
        self, session_id: str, proc_id: str, cursors: dict[str, int], wait_ms: int, max_bytes: int
    ) -> records.ProcessOutput:
        """Output since `cursors`, waiting up to `wait_ms` for something new or the exit."""
        ...

    async def process_output_summary(self, session_id: str, proc_id: str, cap: int) -> records.OutputSummary:
        """Both streams within `cap` bytes each (head and tail when longer)."""
        ...

    async def process_tail(self, session_id: str, proc_id: str, lines: int) -> dict[str, list[str]]:
        """The last `lines` lines of each stream (for progress messages)."""
        ...

    async def kill_process(
        self, session_id: str, proc_id: str, signal: int, grace_ms: int, reason: str
    ) -> records.ProcessInfo:
        """Signal the process group; with `grace_ms`, SIGKILL follows if it is still running then."""
        ...

    async def forget_process(self, session_id: str, proc_id: str) -> None:
        """Kill the process if needed and drop its buffers."""
        ...

    async def list_processes(self, session_id: str) -> list[records.ProcessInfo]:
        """Background processes of the session."""
        ...


@runtime_checkable
class ProcessHandles(Protocol):
    """Background processes the caller holds a handle to (records.Capabilities.process_handles)."""

    async def start_process(
        self, session_id: str, command: records.ShellCommand, *, stdin: bool, foreground: bool, cap: int
    ) -> records.ProcessInfo:
        """Start `sh -c command` in the session's sandbox, in its own process group."""
        ...

    async def write_process_input(self, session_id: str, proc_id: str, data: bytes, eof: bool) -> int:
        """Write to the process's stdin (closing it after if `eof`); returns bytes written."""
        ...


@runtime_checkable
class Files(Protocol):
    """Files (files toolset). Paths are absolute paths as the session sees them."""

    async def read_file(self, session_id: str, path: str, span: records.ReadSpan, max_bytes: int) -> records.FileChunk:
        """A byte range (or whole lines from span.start_line), at most max_bytes."""
        ...

    async def write_file(self, session_id: str, path: str, data: bytes, mode: str) -> records.FileWritten:
        """Overwrite atomically or append; creates parents."""
        ...

    async def edit_file(
        self, session_id: str, path: str, edits: list[dict[str, str]], dry_run: bool
    ) -> records.FileEdited:
        """Apply exact-once replacements."""
        ...

    async def file_info(self, session_id: str, path: str) -> records.FileInfo:
        """Metadata of a path."""
        ...

    async def list_directory(self, session_id: str, path: str, max_entries: int) -> records.DirectoryListing:
        """Entries of a directory."""
        ...

    async def search_files(
        self, session_id: str, path: str, pattern: str, exclude_patterns: list[str], max_results: int
    ) -> records.SearchResult:
        """Glob search below a directory."""
        ...

    async def create_directory(self, session_id: str, path: str) -> records.DirectoryCreated:
        """mkdir -p."""
        ...

    async def move_file(self, session_id: str, source: str, destination: str) -> records.FileMoved:
        """Rename; fails if the destination exists."""
        ...


@runtime_checkable
class Desktop(Protocol):
    """The desktop (images with `desktop`; the display starts on the first call)."""

    async def installed_apps(self, session_id: str, include_system: bool) -> list[records_desktop.InstalledApp]:
        """Applications from the session's `.desktop` entries."""
        ...

    async def launch_app(
        self, session_id: str, start_cmd: str, work_directory: str | None
    ) -> records_desktop.AppLaunch:
        """Start an application on the session's display (as a background process)."""
        ...

    async def app_status(self, session_id: str, launch: records_desktop.AppLaunch) -> records_desktop.AppStatus:
        """The launched application's processes and its first new window, if any yet."""
        ...

    async def stop_app(
        self, session_id: str, *, pid: int | None, pname: str | None, stop_cmd: str | None
    ) -> records_desktop.AppStopped:
        """Stop the process tree of a pid, or of every process with that name (the session's own only),
        or run a stop command; exactly one is given (the service checks)."""
        ...

    async def visible_apps(self, session_id: str) -> list[records_desktop.VisibleApp]:
        """Processes owning a visible window."""
        ...

    async def list_windows(self, session_id: str) -> records_desktop.WindowList:
        """Top-level windows."""
        ...

    async def active_window(self, session_id: str) -> records_desktop.WindowInfo | None:
        """The focused top-level window."""
        ...

    async def window_detail(self, session_id: str, window_id: int) -> records_desktop.WindowDetail:
        """One top-level window (WindowNotFoundError if it is not one of the session's)."""
        ...

    async def window_action(
        self, session_id: str, window_id: int, action: WindowAction, width: int | None, height: int | None
    ) -> None:
        """Ask the window manager for an action; the caller checks the effect."""
        ...

    async def set_focus_mode(self, session_id: str, on: bool) -> records_desktop.FocusMode:
        """Turn focus mode on or off."""
        ...

    async def screenshot(self, session_id: str) -> records_desktop.Screenshot:
        """Grab the whole screen."""
        ...

    async def input_action(self, session_id: str, action: dict[str, Any]) -> records_desktop.InputResult:
        """Deliver mouse or keyboard input (validated by the service)."""
        ...


@runtime_checkable
class Network(Protocol):
    """A session's network: egress policy (where `capabilities.egress_rules`) and port links (where
    `capabilities.port_links`); a method whose flag is False raises `BackendUnavailableError`."""

    async def set_egress(self, session_id: str, policy: records.NetworkPolicy) -> None:
        """Change what the session may reach, at once, while it runs."""
        ...

    async def open_link(self, session_id: str, port: int, protocol: str) -> records.LinkRecord:
        """A URL that reaches `port` inside the session (it dies with the session)."""
        ...


@runtime_checkable
class Contexts(Protocol):
    """Named storage that outlives sessions (where `capabilities.contexts`). Every context belongs to one
    `owner` (a principal); a name is looked up only among its owner's, so another owner's context is
    answered like an unknown one (`ContextNotFoundError`). Count quotas are the service's."""

    async def get_context(self, owner: str, name: str, *, create: bool) -> records_contexts.ContextRecord:
        """The owner's context `name`; made empty first if it does not exist and `create`."""
        ...

    async def list_contexts(self, owner: str) -> list[records_contexts.ContextRecord]:
        """The owner's contexts, by name."""
        ...

    async def delete_context(self, owner: str, name: str) -> None:
        """Delete the context and its content. Refused (InvalidArgumentError naming the session) while a
        live session has it mounted."""
        ...

    async def sync_context(self, session_id: str, name: str | None = None) -> list[records_contexts.ContextSynced]:
        """Write the session's contexts (or only `name`) back now, while it runs. If another session synced
        the same context since this one last did, the later sync wins and its `warning` says so."""
        ...


@runtime_checkable
class Workspaces(Protocol):
    """Host directories the operator offers (where `capabilities.workspaces`), shown at /workspace/NAME."""

    def configured(self) -> list[records_workspaces.WorkspaceInfo]:
        """The workspaces sessions may ask for."""
        ...

    async def diff(self, session_id: str, name: str, max_bytes: int) -> records_workspaces.WorkspaceDiff:
        """What the session changed in workspace `name` (its unified diff capped at `max_bytes`)."""
        ...

    async def apply(
        self, session_id: str, name: str, paths: Sequence[str] | None, overwrite: bool
    ) -> records_workspaces.WorkspaceApplied:
        """Write the session's changes (or only `paths`) to the host directory, never outside it; a path
        the host changed since the session started is left alone and listed, unless `overwrite`."""
        ...


class SandboxBackend(Sessions, Protocol):
    """A whole backend: the session lifecycle, its capability objects, and what it declares it can do."""

    @property
    def capabilities(self) -> records.Capabilities:
        """What this backend can do (constant for its life)."""
        ...

    @property
    def processes(self) -> Processes:
        """Commands."""
        ...

    @property
    def process_handles(self) -> ProcessHandles | None:
        """Background processes with handles; None where `capabilities.process_handles` is False."""
        ...

    @property
    def files(self) -> Files:
        """Files."""
        ...

    @property
    def desktop(self) -> Desktop | None:
        """The desktop; None where `capabilities.desktop` is False."""
        ...

    @property
    def network(self) -> Network | None:
        """Egress policies and port links; None where neither capability exists."""
        ...

    @property
    def contexts(self) -> Contexts | None:
        """Contexts; None where `capabilities.contexts` is False."""
        ...

    @property
    def workspaces(self) -> Workspaces | None:
        """Workspaces; None where `capabilities.workspaces` is False."""
        ...
