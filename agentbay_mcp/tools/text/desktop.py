"""Desktop results as text: one line per window or app, one sentence per action."""

from __future__ import annotations

from agentbay_mcp.backends import records_desktop
from agentbay_mcp.services.desktop import models
from agentbay_mcp.tools.shape import Shape
from agentbay_mcp.tools.text.common import lines, name, plural


def _rect(frame: records_desktop.WindowFrame) -> str:
    return f"{frame.width}x{frame.height}+{frame.x}+{frame.y}"


def window_line(window: records_desktop.WindowInfo) -> str:
    """id, title, outer rectangle WxH+X+Y, state, owner; its child windows indented below."""
    owner = f" pid {window.pid} ({window.pname})" if window.pid is not None else ""
    line = f"{window.window_id} {name(window.title) or '(untitled)'} {_rect(window)} {window.state}{owner}"
    children = (f"\n  child {c.window_id} {name(c.title) or '(untitled)'} {_rect(c)}" for c in window.child_windows)
    return line + "".join(children)


def _windows(found: models.WindowList) -> str:
    head = (
        f"{plural(len(found.windows), 'window')} on a {found.screen_width}x{found.screen_height} screen; "
        f"active: {found.active_window_id if found.active_window_id is not None else 'none'}; "
        f"focus mode {'on' if found.focus_mode else 'off'}"
    )
    if found.truncated:
        head += " (only the newest 200 are listed)"
    if not found.windows:
        return head + "."
    return lines(head + " (id title WxH+X+Y state owner):", map(window_line, found.windows))


def _active(found: models.ActiveWindow) -> str:
    return "No window has the focus." if found.window is None else f"Active window: {window_line(found.window)}"


def _controlled(done: models.WindowControlResult) -> str:
    if done.closed:
        line = f"Window {done.window_id} closed."
    else:
        checked = "done" if done.verified else "NOT verified"
        now = f": now {window_line(done.window)}" if done.window is not None else ""
        line = f"{done.action} window {done.window_id} {checked}{now}"
    return f"{line} {done.note}" if done.note else line


def _focus(mode: models.FocusMode) -> str:
    if not mode.on:
        return "Focus mode off."
    return f"Focus mode on: window {mode.window_id} keeps the focus."


def _process(proc: records_desktop.AppProcess) -> str:
    return f"pid {proc.pid} ({proc.pname})"


def _started(app: models.AppStarted) -> str:
    line = "Started " + (", ".join(map(_process, app.processes)) or "the application")
    if app.proc_id is not None:
        line += f"; its output: read_process_output process_id={app.proc_id}"
    line += f". Window: {window_line(app.window)}" if app.window is not None else ". No window yet."
    return f"{line} {app.note}" if app.note else line


def _stopped(done: models.AppStopped) -> str:
    line = "Stopped " + (", ".join(map(_process, done.stopped)) or "nothing") + "."
    if done.stop_cmd_exit_code is not None:
        line += f" stop_cmd exited with code {done.stop_cmd_exit_code}."
    return f"{line} {done.note}" if done.note else line


def _installed(found: models.InstalledApps) -> str:
    if not found.apps:
        return "No applications found."

    def line(app: records_desktop.InstalledApp) -> str:
        extra = "".join(
            f"; {key}: {value}"
            for key, value in (("stop", app.stop_cmd), ("in", app.work_directory))
            if value is not None
        )
        return f"{app.name}: {app.start_cmd}{extra}{' [system]' if app.system else ''} ({app.desktop_file})"

    return lines(f"{plural(len(found.apps), 'app')} (name: start_cmd):", map(line, found.apps))


def _visible(found: models.VisibleApps) -> str:
    if not found.apps:
        return "No application has a visible window."
    body = (f"pid {a.pid} {a.pname} windows {a.window_ids}: {a.cmdline}" for a in found.apps)
    return lines(f"{plural(len(found.apps), 'app')} with a visible window:", body)


def _screenshot(info: models.ScreenshotInfo) -> str:
    scaled = f" (screen {info.screen_width}x{info.screen_height}, scaled)" if info.scaled else ""
    return f"{info.width}x{info.height} {info.format} screenshot{scaled}"


#: truncated is the header's "(only the newest 200 are listed)".
WINDOWS = Shape(models.WindowList, _windows, ("windows", "truncated"))
ACTIVE = Shape(models.ActiveWindow, _active)
#: The action echoes the argument ("close" when the window closed).
CONTROLLED = Shape(models.WindowControlResult, _controlled, ("action",))
FOCUS = Shape(models.FocusMode, _focus, ("behaviour", "on"))
STARTED = Shape(models.AppStarted, _started)
STOPPED = Shape(models.AppStopped, _stopped)
INSTALLED = Shape(models.InstalledApps, _installed, ("apps",), structured=False)
VISIBLE = Shape(models.VisibleApps, _visible, ("apps",), structured=False)
#: format echoes the argument; scaled is whether width differs from screen_width.
SCREENSHOT = Shape(models.ScreenshotInfo, _screenshot, ("format", "scaled"))
INPUT = Shape(
    models.InputResult,
    lambda done: f"{done.action} done; the pointer is at {done.pointer_x},{done.pointer_y}.",
    ("action",),
)
