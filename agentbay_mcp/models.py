"""Pydantic models shared by the service layer and the MCP tools (the tools' structured output)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

#: SANDBOX_DIED: the sandbox died (processes lost, files kept); the next call says what was lost and restarts it.
SessionStatus = Literal["RUNNING", "SANDBOX_DIED", "DELETING", "DELETED"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class SessionInfo(_Model):
    """A session as a conversation sees it."""

    session_id: str = Field(description="Pass this to every other tool.")
    image_id: str = Field(description="The image the session was created from, e.g. linux_latest.")
    status: SessionStatus
    labels: dict[str, str] = Field(description="The session's labels (the whole map).")
    network: bool = Field(default=False, description="Whether commands in the session can reach the network.")
    created_at: datetime
    idle_expires_at: datetime = Field(
        description="When the session is deleted if no tool touches it before then; any call renews it."
    )
    notice: str | None = Field(
        default=None, description="What happened to the session that you should know (e.g. its sandbox died)."
    )


class SessionList(_Model):
    """One page of a conversation's sessions."""

    sessions: list[SessionInfo]
    total_count: int = Field(description="How many of your sessions match the filter, across all pages.")
    max_results: int
    next_token: str | None = Field(
        description="Pass to list_sessions to get the next page; null when this is the last page."
    )


class SessionLabels(_Model):
    """The label map of one session."""

    session_id: str
    labels: dict[str, str]


class DeletedSession(_Model):
    """The outcome of delete_session."""

    session_id: str
    status: SessionStatus = "DELETED"
    message: str = "Session deleted; its sandbox, files and processes are gone."


class CommandResult(_Model):
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


class ProcessStatus(_Model):
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


class ProcessOutputChunk(_Model):
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


class ProcessList(_Model):
    """The background processes of a session."""

    processes: list[ProcessStatus]


class InputWritten(_Model):
    """The outcome of write_process_input."""

    process_id: str
    bytes_written: int
    stdin_open: bool


class FileContent(_Model):
    """What read_file returns (for images the picture itself comes as image content)."""

    path: str
    encoding: Literal["utf-8", "base64", "image"] = Field(
        description="utf-8: content is the text; base64: content is the bytes; image: see the image content."
    )
    content: str
    mime_type: str
    size: int = Field(description="The file's total size in bytes.")
    offset: int = Field(description="Byte offset of the first byte returned.")
    length: int = Field(description="Bytes returned.")
    next_offset: int | None = Field(description="Pass as offset to continue; null when the end was reached.")
    start_line: int | None = None
    next_line: int | None = Field(default=None, description="Pass as start_line to continue (line mode).")
    invalid_utf8: bool = Field(default=False, description="True if undecodable bytes were replaced.")
    message: str


class FileWritten(_Model):
    """The outcome of write_file."""

    path: str
    bytes_written: int
    size: int


class FileEdited(_Model):
    """The outcome of edit_file."""

    path: str
    applied: bool = Field(description="False for a dry run: nothing was written.")
    edits: int
    diff: str = Field(description="Unified diff of the change.")


class FileInfo(_Model):
    """Metadata of one path."""

    path: str
    name: str
    type: Literal["file", "directory", "symlink", "other"]
    size: int
    permissions: str = Field(description="ls-style, e.g. -rw-r--r--")
    mode: str
    modified: datetime
    changed: datetime = Field(description="Last metadata change (Linux keeps no creation time here).")
    accessed: datetime
    target: str | None = Field(default=None, description="Where a symlink points.")


class DirectoryListing(_Model):
    """Entries of a directory."""

    path: str
    entries: list[FileInfo]
    total: int
    truncated: bool
    message: str = ""


class SearchResult(_Model):
    """Paths matching a glob."""

    path: str
    pattern: str
    matches: list[str]
    truncated: bool
    message: str = ""


class DirectoryCreated(_Model):
    """The outcome of create_directory."""

    path: str
    created: bool = Field(description="False if it already existed.")


class FileMoved(_Model):
    """The outcome of move_file."""

    source: str
    destination: str


# ---- desktop ------------------------------------------------------------------------------------

#: "unknown" where a backend does not report window states (AgentBay's window listing has none).
WindowState = Literal["normal", "minimized", "maximized", "fullscreen", "unknown"]
WindowAction = Literal["activate", "maximize", "minimize", "restore", "close", "fullscreen", "resize"]


class ChildWindow(_Model):
    """A child of a top-level window (position relative to its parent)."""

    window_id: int
    title: str
    x: int
    y: int
    width: int
    height: int


class WindowInfo(_Model):
    """A top-level window on a session's desktop; x, y, width, height are its outer (frame) rectangle."""

    window_id: int = Field(description="Pass this to control_window.")
    title: str
    x: int
    y: int
    width: int
    height: int
    client_width: int = Field(description="Size of the application's area, without decorations.")
    client_height: int
    pid: int | None = Field(description="Process that owns the window (a pid inside the session).")
    pname: str | None
    state: WindowState
    child_windows: list[ChildWindow] = Field(default_factory=list)


class WindowList(_Model):
    """The session's top-level windows."""

    windows: list[WindowInfo]
    active_window_id: int | None
    focus_mode: bool
    screen_width: int
    screen_height: int
    truncated: bool = Field(default=False, description="More windows exist: only the newest 200 are listed.")


class ActiveWindow(_Model):
    """The window that has the focus, if any."""

    window: WindowInfo | None


class WindowControlResult(_Model):
    """What control_window did, checked against the window afterwards."""

    window_id: int
    action: WindowAction
    verified: bool = Field(description="Whether the window reached the requested state or size.")
    closed: bool = False
    window: WindowInfo | None = Field(description="The window afterwards (None once closed).")
    note: str = ""


FOCUS_MODE_BEHAVIOUR = (
    "While on, the window that was active when focus mode was turned on (or the one you activate "
    "with control_window afterwards) keeps the focus: if another window takes it (a new window "
    "opening, a click elsewhere, an application raising itself), the locked window is activated "
    "again at once. If the locked window closes, the next window to become active inherits the lock."
)


class FocusMode(_Model):
    """Whether focus mode is on, and which window holds the focus."""

    on: bool
    window_id: int | None
    behaviour: str = FOCUS_MODE_BEHAVIOUR


class InstalledApp(_Model):
    """An application from a `.desktop` entry visible in the session."""

    name: str
    start_cmd: str
    stop_cmd: str | None
    work_directory: str | None
    desktop_file: str
    system: bool


class InstalledApps(_Model):
    """Applications the session can start."""

    apps: list[InstalledApp]


class AppProcess(_Model):
    """A process of an application."""

    pid: int
    pname: str
    cmdline: str


class AppStarted(_Model):
    """An application start: its processes and, if one appeared in time, its window."""

    proc_id: str | None = Field(
        description="Its process in list_processes / read_process_output (stdout, stderr), where the backend "
        "keeps process handles (local: yes; AgentBay: no)."
    )
    processes: list[AppProcess]
    window: WindowInfo | None
    note: str = ""


class AppStopped(_Model):
    """Processes stopped by stop_app."""

    stopped: list[AppProcess]
    stop_cmd_exit_code: int | None = None
    note: str = ""


class VisibleApp(_Model):
    """A process that owns at least one visible (not minimized) window."""

    pid: int
    pname: str
    cmdline: str
    window_ids: list[int]


class VisibleApps(_Model):
    """Applications with a visible window."""

    apps: list[VisibleApp]


InputKind = Literal["click", "move", "drag", "scroll", "type", "keys"]


class InputResult(_Model):
    """Input delivered; where the pointer is now."""

    action: InputKind
    pointer_x: int
    pointer_y: int


class ScreenshotInfo(_Model):
    """The screenshot image returned with this (as image content)."""

    format: Literal["png", "jpeg"]
    width: int = Field(description="Image width (the screen scaled down if it had to be).")
    height: int
    screen_width: int
    screen_height: int
    bytes: int
    scaled: bool
