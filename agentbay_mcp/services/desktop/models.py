"""The desktop tools' output models (what the model reads, as structured content)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agentbay_mcp.services.model_base import OutputModel

#: "unknown" where a backend does not report window states (AgentBay's window listing has none).
WindowState = Literal["normal", "minimized", "maximized", "fullscreen", "unknown"]

WindowAction = Literal["activate", "maximize", "minimize", "restore", "close", "fullscreen", "resize"]


class ChildWindow(OutputModel):
    """A child of a top-level window (position relative to its parent)."""

    window_id: int
    title: str
    x: int
    y: int
    width: int
    height: int


class WindowInfo(OutputModel):
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


class WindowList(OutputModel):
    """The session's top-level windows."""

    windows: list[WindowInfo]
    active_window_id: int | None
    focus_mode: bool
    screen_width: int
    screen_height: int
    truncated: bool = Field(default=False, description="More windows exist: only the newest 200 are listed.")


class ActiveWindow(OutputModel):
    """The window that has the focus, if any."""

    window: WindowInfo | None


class WindowControlResult(OutputModel):
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


class FocusMode(OutputModel):
    """Whether focus mode is on, and which window holds the focus."""

    on: bool
    window_id: int | None
    behaviour: str = FOCUS_MODE_BEHAVIOUR


class InstalledApp(OutputModel):
    """An application from a `.desktop` entry visible in the session."""

    name: str
    start_cmd: str
    stop_cmd: str | None
    work_directory: str | None
    desktop_file: str
    system: bool


class InstalledApps(OutputModel):
    """Applications the session can start."""

    apps: list[InstalledApp]


class AppProcess(OutputModel):
    """A process of an application."""

    pid: int
    pname: str
    cmdline: str


class AppStarted(OutputModel):
    """An application start: its processes and, if one appeared in time, its window."""

    proc_id: str | None = Field(
        description="Its process in list_processes / read_process_output (stdout, stderr), where the backend "
        "keeps process handles (local: yes; AgentBay: no)."
    )
    processes: list[AppProcess]
    window: WindowInfo | None
    note: str = ""


class AppStopped(OutputModel):
    """Processes stopped by stop_app."""

    stopped: list[AppProcess]
    stop_cmd_exit_code: int | None = None
    note: str = ""


class VisibleApp(OutputModel):
    """A process that owns at least one visible (not minimized) window."""

    pid: int
    pname: str
    cmdline: str
    window_ids: list[int]


class VisibleApps(OutputModel):
    """Applications with a visible window."""

    apps: list[VisibleApp]


InputKind = Literal["click", "move", "drag", "scroll", "type", "keys"]


class InputResult(OutputModel):
    """Input delivered; where the pointer is now."""

    action: InputKind
    pointer_x: int
    pointer_y: int


class ScreenshotInfo(OutputModel):
    """The screenshot image returned with this (as image content)."""

    format: Literal["png", "jpeg"]
    width: int = Field(description="Image width (the screen scaled down if it had to be).")
    height: int
    screen_width: int
    screen_height: int
    bytes: int
    scaled: bool
