"""The desktop records backends deal in (see records.py): windows, apps, input, screenshots."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from agentbay_mcp.backends.records import Record

#: "unknown" where a backend does not report window states (Capabilities.window_states is False).
WindowState = Literal["normal", "minimized", "maximized", "fullscreen", "unknown"]

WindowAction = Literal["activate", "maximize", "minimize", "restore", "close", "fullscreen", "resize"]

InputKind = Literal["click", "move", "drag", "scroll", "type", "keys"]


class WindowFrame(Record):
    """A window's id, title and rectangle."""

    window_id: int
    title: str
    x: int
    y: int
    width: int
    height: int


class ChildWindow(WindowFrame):
    """A child of a top-level window (position relative to its parent)."""


class WindowInfo(WindowFrame):
    """A top-level window; x, y, width, height are its outer (frame) rectangle."""

    client_width: int
    client_height: int
    pid: int | None
    pname: str | None
    state: WindowState
    child_windows: Sequence[ChildWindow] = Field(default_factory=list)


class WindowList(Record):
    """The session's top-level windows."""

    windows: Sequence[WindowInfo]
    active_window_id: int | None
    focus_mode: bool
    screen_width: int
    screen_height: int
    truncated: bool = False


class FocusMode(Record):
    """Whether focus mode is on, and which window holds the focus."""

    on: bool
    window_id: int | None


class InstalledApp(Record):
    """An application from a `.desktop` entry visible in the session."""

    name: str
    start_cmd: str
    stop_cmd: str | None
    work_directory: str | None
    desktop_file: str
    system: bool


class AppProcess(Record):
    """A process of an application."""

    pid: int
    pname: str
    cmdline: str


class AppStopped(Record):
    """Processes stopped by stop_app."""

    stopped: Sequence[AppProcess]
    stop_cmd_exit_code: int | None = None
    note: str = ""


class VisibleApp(Record):
    """A process that owns at least one visible (not minimized) window."""

    pid: int
    pname: str
    cmdline: str
    window_ids: list[int]


class InputResult(Record):
    """Input delivered; where the pointer is now."""

    action: InputKind
    pointer_x: int
    pointer_y: int


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
