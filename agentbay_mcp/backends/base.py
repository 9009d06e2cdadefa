"""The `SandboxBackend` contract every backend implements, and the record it deals in.

Backends do primitives only: create, look up, relabel and delete sessions, and reap what dead
servers left behind. Ownership, leases, quotas, paging and truncation belong to the service layer.
Every backend runs the shared contract suite in `tests/contract/`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from anyio.abc import TaskGroup
from pydantic import BaseModel, ConfigDict, Field

from agentbay_mcp.services.desktop.models import (
    AppProcess,
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
from agentbay_mcp.services.sessions.models import SessionStatus


class SessionRecord(BaseModel):
    """What a backend knows about one session."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    image_id: str
    labels: dict[str, str] = Field(default_factory=dict)
    owner: str = Field(description="The conversation that created the session.")
    server_id: str = Field(description="The server instance that created the session (for reaping).")
    created_at: datetime
    status: SessionStatus = "RUNNING"
    network: bool = Field(default=False, description="Whether commands in the session may use the network.")
    notice: str | None = Field(default=None, description="Something the owner must be told (a sandbox that died).")


class ProcessInfo(BaseModel):
    """A process started in a session (validated: it comes from inside the sandbox)."""

    proc_id: str = Field(max_length=32)
    pid: int
    command: str = Field(max_length=1_000_000)
    running: bool
    exit_code: int | None
    signal: int | None
    killed_by: str = Field(default="", max_length=40)
    elapsed_ms: int = Field(ge=0)
    stdout_bytes: int = Field(ge=0)
    stderr_bytes: int = Field(ge=0)
    stdin_open: bool


class StreamChunk(BaseModel):
    """Output of one stream from an absolute byte offset."""

    data: bytes
    start: int = Field(ge=0)
    next_cursor: int = Field(ge=0)
    dropped: int = Field(ge=0, description="Bytes before `start` that were asked for but no longer kept.")
    total: int = Field(ge=0)


class ProcessOutput(BaseModel):
    """New output of a process since the caller's cursors."""

    info: ProcessInfo
    streams: dict[str, StreamChunk]


class StreamSummary(BaseModel):
    """A stream's output within a cap: all of it, or its head and tail."""

    head: bytes
    tail: bytes
    total: int = Field(ge=0)
    full_path: str | None = Field(default=None, max_length=4096)
    full_bytes: int = Field(ge=0)
    full_complete: bool
    note: str = Field(default="", max_length=2000)


class OutputSummary(BaseModel):
    """A finished command: its status and both streams within the cap."""

    info: ProcessInfo
    streams: dict[str, StreamSummary]


class RunOutcome(BaseModel):
    """A foreground command after its first wait: still running, or finished with its output."""

    info: ProcessInfo
    summary: dict[str, StreamSummary] | None = None


class FileChunk(BaseModel):
    """Bytes read from a file (validated: they come from inside the sandbox)."""

    data: bytes
    offset: int = Field(ge=0)
    size: int = Field(ge=0)
    next_offset: int = Field(ge=0)
    head: bytes = Field(max_length=16, description="The file's first bytes, for recognising images.")
    start_line: int | None = None
    lines: int | None = None
    next_line: int | None = None


class ImageInfo(BaseModel):
    """An image a backend can start sessions from."""

    model_config = ConfigDict(frozen=True)

    image_id: str
    description: str
    desktop: bool


class Screenshot(BaseModel):
    """A screen grab: raw pixels (`bgrx`, 4 bytes a pixel) or an encoded image."""

    data: bytes
    format: Literal["bgrx", "png", "jpeg"]
    width: int = Field(gt=0, le=8192)
    height: int = Field(gt=0, le=8192)


class WindowDetail(BaseModel):
    """A window plus what checking an action on it needs."""

    window: WindowInfo
    active: bool
    size_increments: tuple[int, int] = (1, 1)


class AppLaunch(BaseModel):
    """An application just started: its process, and the windows that existed before it."""

    proc_id: str | None = Field(description="Its process handle, where the backend has them (local: yes).")
    pid: int
    windows_before: list[int]
    processes: list[AppProcess] = Field(default_factory=list, description="Processes the start reported.")


class AppStatus(BaseModel):
    """An application's live process tree, and the first new window it owns (if any yet)."""

    processes: list[AppProcess]
    window: WindowInfo | None


@runtime_checkable
class SandboxBackend(Protocol):
    """Primitives a backend offers. Implementations raise only `agentbay_mcp.errors` exceptions."""

    @property
    def name(self) -> str:
        """Short backend name, e.g. `local`."""
        ...

    @property
    def server_id(self) -> str:
        """This server instance's id, stamped on every session it creates."""
        ...

    def images(self) -> list[ImageInfo]:
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
        self, *, image_id: str, labels: dict[str, str], owner: str, network: bool = False
    ) -> SessionRecord:
        """Create a session (with network access if `network`). Never leaves half a session behind."""
        ...

    async def get_session(self, session_id: str) -> SessionRecord:
        """The session's record, or `SessionNotFoundError`."""
        ...

    async def set_labels(self, session_id: str, labels: dict[str, str]) -> SessionRecord:
        """Replace the session's label map; returns the updated record."""
        ...

    async def keep_alive(self, session_id: str) -> None:
        """Tell the backend the session is in use (renews backend-side idle timers). Best effort."""
        ...

    async def delete_session(self, session_id: str) -> None:
        """Delete the session and everything in it. Idempotent: an unknown id is not an error."""
        ...

    async def reap_orphans(self) -> list[str]:
        """Delete sessions whose creating server is gone; returns their ids."""
        ...

    async def list_all(self) -> list[SessionRecord]:
        """Every session this backend can see, from any server (for operators, not for tools)."""
        ...

    # Processes (commands toolset). `proc_id`s are scoped to their session.

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
        """Start `sh -c command` in the session's sandbox, in its own process group."""
        ...

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
        """Start a foreground command and wait up to `wait_ms`; if it ended, return its output (capped)
        and forget it, all in one step. Otherwise continue with wait_process.

        `timeout_ms` is the command's whole time limit, for backends that hand it to the sandbox
        (agentbay's shell tool) instead of killing the command themselves; others may ignore it."""
        ...

    async def wait_process(self, session_id: str, proc_id: str, wait_ms: int) -> ProcessInfo:
        """The process's state, after waiting up to `wait_ms` for it to exit."""
        ...

    async def read_process_output(
        self, session_id: str, proc_id: str, cursors: dict[str, int], wait_ms: int, max_bytes: int
    ) -> ProcessOutput:
        """Output since `cursors`, waiting up to `wait_ms` for something new or the exit."""
        ...

    async def process_output_summary(self, session_id: str, proc_id: str, cap: int) -> OutputSummary:
        """Both streams within `cap` bytes each (head and tail when longer)."""
        ...

    async def process_tail(self, session_id: str, proc_id: str, lines: int) -> dict[str, list[str]]:
        """The last `lines` lines of each stream (for progress messages)."""
        ...

    async def write_process_input(self, session_id: str, proc_id: str, data: bytes, eof: bool) -> int:
        """Write to the process's stdin (closing it after if `eof`); returns bytes written."""
        ...

    async def kill_process(self, session_id: str, proc_id: str, signal: int, grace_ms: int, reason: str) -> ProcessInfo:
        """Signal the process group; with `grace_ms`, SIGKILL follows if it is still running then."""
        ...

    async def forget_process(self, session_id: str, proc_id: str) -> None:
        """Kill the process if needed and drop its buffers."""
        ...

    async def list_processes(self, session_id: str) -> list[ProcessInfo]:
        """Background processes of the session."""
        ...

    # Files (files toolset). Paths are absolute paths as the session sees them.

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
        """A byte range (or whole lines from start_line), at most max_bytes."""
        ...

    async def write_file(self, session_id: str, path: str, data: bytes, mode: str) -> FileWritten:
        """Overwrite atomically or append; creates parents."""
        ...

    async def edit_file(self, session_id: str, path: str, edits: list[dict[str, str]], dry_run: bool) -> FileEdited:
        """Apply exact-once replacements."""
        ...

    async def file_info(self, session_id: str, path: str) -> FileInfo:
        """Metadata of a path."""
        ...

    async def list_directory(self, session_id: str, path: str, max_entries: int) -> DirectoryListing:
        """Entries of a directory."""
        ...

    async def search_files(
        self, session_id: str, path: str, pattern: str, exclude_patterns: list[str], max_results: int
    ) -> SearchResult:
        """Glob search below a directory."""
        ...

    async def create_directory(self, session_id: str, path: str) -> DirectoryCreated:
        """mkdir -p."""
        ...

    async def move_file(self, session_id: str, source: str, destination: str) -> FileMoved:
        """Rename; fails if the destination exists."""
        ...

    # ---- desktop (images with `desktop`; the display starts on the first call) -----------------

    async def installed_apps(self, session_id: str, include_system: bool) -> list[InstalledApp]:
        """Applications from the session's `.desktop` entries."""
        ...

    async def launch_app(self, session_id: str, start_cmd: str, work_directory: str | None) -> AppLaunch:
        """Start an application on the session's display (as a background process)."""
        ...

    async def app_status(self, session_id: str, launch: AppLaunch) -> AppStatus:
        """The launched application's processes and its first new window, if any yet."""
        ...

    async def stop_app(
        self, session_id: str, *, pid: int | None, pname: str | None, stop_cmd: str | None
    ) -> AppStopped:
        """Stop the process tree of a pid, or of every process with that name (the session's own only),
        or run a stop command; exactly one is given (the service checks)."""
        ...

    async def visible_apps(self, session_id: str) -> list[VisibleApp]:
        """Processes owning a visible window."""
        ...

    async def list_windows(self, session_id: str) -> WindowList:
        """Top-level windows."""
        ...

    async def active_window(self, session_id: str) -> WindowInfo | None:
        """The focused top-level window."""
        ...

    async def window_detail(self, session_id: str, window_id: int) -> WindowDetail:
        """One top-level window (WindowNotFoundError if it is not one of the session's)."""
        ...

    async def window_action(
        self, session_id: str, window_id: int, action: WindowAction, width: int | None, height: int | None
    ) -> None:
        """Ask the window manager for an action; the caller checks the effect."""
        ...

    async def set_focus_mode(self, session_id: str, on: bool) -> FocusMode:
        """Turn focus mode on or off."""
        ...

    async def screenshot(self, session_id: str) -> Screenshot:
        """Grab the whole screen."""
        ...

    async def input_action(self, session_id: str, action: dict[str, Any]) -> InputResult:
        """Deliver mouse or keyboard input (validated by the service)."""
        ...
