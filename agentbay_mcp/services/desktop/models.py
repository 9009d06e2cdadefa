"""The desktop tools' output models (what the model reads, as structured content)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from agentbay_mcp.backends import records_desktop
from agentbay_mcp.services.model_base import OutputModel

#: The tools' parameter types: control_window's actions, input_action's kinds.
WindowAction = records_desktop.WindowAction
InputKind = records_desktop.InputKind


class ChildWindow(records_desktop.ChildWindow, OutputModel):
    """A child of a top-level window (position relative to its parent)."""


class WindowInfo(records_desktop.WindowInfo, OutputModel):
    """A top-level window on a session's desktop; x, y, width, height are its outer (frame) rectangle."""

    window_id: int = Field(description="Pass this to control_window.")
    client_width: int = Field(description="Size of the application's area, without decorations.")
    pid: int | None = Field(description="Process that owns the window (a pid inside the session).")
    child_windows: list[ChildWindow] = Field(default_factory=list)


class WindowList(records_desktop.WindowList, OutputModel):
    """The session's top-level windows."""

    windows: list[WindowInfo]
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


class FocusMode(records_desktop.FocusMode, OutputModel):
    """Whether focus mode is on, and which window holds the focus."""

    behaviour: str = FOCUS_MODE_BEHAVIOUR


class InstalledApp(records_desktop.InstalledApp, OutputModel):
    """An application from a `.desktop` entry visible in the session."""


class InstalledApps(OutputModel):
    """Applications the session can start."""

    apps: list[InstalledApp]


class AppProcess(records_desktop.AppProcess, OutputModel):
    """A process of an application."""


class AppStarted(OutputModel):
    """An application start: its processes and, if one appeared in time, its window."""

    proc_id: str | None = Field(
        description="Its process in list_processes / read_process_output (stdout, stderr), where the backend "
        "keeps process handles (local: yes; AgentBay: no)."
    )
    processes: list[AppProcess]
    window: WindowInfo | None
    note: str = ""


class AppStopped(records_desktop.AppStopped, OutputModel):
    """Processes stopped by stop_app."""

    stopped: list[AppProcess]


class VisibleApp(records_desktop.VisibleApp, OutputModel):
    """A process that owns at least one visible (not minimized) window."""


class VisibleApps(OutputModel):
    """Applications with a visible window."""

    apps: list[VisibleApp]


class InputResult(records_desktop.InputResult, OutputModel):
    """Input delivered; where the pointer is now."""


class ScreenshotInfo(OutputModel):
    """The screenshot image returned with this (as image content)."""

    format: Literal["png", "jpeg"]
    width: int = Field(description="Image width (the screen scaled down if it had to be).")
    height: int
    screen_width: int
    screen_height: int
    bytes: int
    scaled: bool
