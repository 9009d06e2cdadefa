"""Desktop primitives of the AgentBay backend, over the session's app, UI and capture tools.

AgentBay's window listing has no window states, so windows come back with state "unknown" and the
service says when it cannot check an action; geometry, activation and closing it can still check.
Replies are JSON inside the tool's text; anything else is a malformed reply, never a guess.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

from PIL import Image, UnidentifiedImageError

from agentbay_mcp.backends.agentbay import tools
from agentbay_mcp.backends.agentbay.files import ToolCall
from agentbay_mcp.backends.agentbay.json_text import loads
from agentbay_mcp.backends.agentbay.tools import Tool
from agentbay_mcp.backends.records_desktop import (
    AppLaunch,
    AppProcess,
    AppStatus,
    AppStopped,
    ChildWindow,
    FocusMode,
    InputResult,
    InstalledApp,
    Screenshot,
    VisibleApp,
    WindowDetail,
    WindowInfo,
    WindowList,
)
from agentbay_mcp.errors import BackendError, InvalidArgumentError, WindowNotFoundError

#: Our key names -> the names AgentBay's press_keys uses (its SDK's examples: "Ctrl", "Enter").
_KEY_NAMES = {
    "ctrl": "Ctrl",
    "control": "Ctrl",
    "shift": "Shift",
    "alt": "Alt",
    "meta": "Meta",
    "super": "Win",
    "win": "Win",
    "cmd": "Win",
    "enter": "Enter",
    "return": "Enter",
    "esc": "Escape",
    "escape": "Escape",
    "tab": "Tab",
    "space": "Space",
    "backspace": "Backspace",
    "delete": "Delete",
}
MAX_SCREENSHOT_BYTES = 16 * 1024 * 1024
#: As on the local backend: the newest windows are listed, and the list says when it was cut.
MAX_WINDOWS = 200
Fetch = Callable[[str], Awaitable[bytes]]


async def _json(call: ToolCall, tool: Tool, args: dict[str, Any]) -> Any:
    """The tool's reply parsed as JSON; a tool error is raised with its text."""
    text = await _text(call, tool, args)
    try:
        return loads(text) if text.strip() else None
    except json.JSONDecodeError as exc:
        raise BackendError(f"AgentBay's {tool.name} sent a reply that is not JSON.") from exc


async def _text(call: ToolCall, tool: Tool, args: dict[str, Any]) -> str:
    text, is_error = await call(tool, args)
    if is_error:
        lowered = text.lower()
        if "window" in lowered and ("not found" in lowered or "no such" in lowered or "invalid" in lowered):
            raise WindowNotFoundError(f"{tool.name}: {text.strip()[:500]}")
        raise InvalidArgumentError(f"AgentBay's {tool.name} failed: {text.strip()[:1000]}")
    return text


def _window(raw: Any) -> WindowInfo:
    if not isinstance(raw, dict):
        raise BackendError("AgentBay sent a window that is not an object.")
    pid = raw.get("pid")
    return WindowInfo(
        window_id=int(raw.get("window_id", 0)),
        title=str(raw.get("window_title") or "")[:1024],
        x=int(raw.get("absolute_upper_left_x") or 0),
        y=int(raw.get("absolute_upper_left_y") or 0),
        width=int(raw.get("width") or 0),
        height=int(raw.get("height") or 0),
        client_width=int(raw.get("width") or 0),
        client_height=int(raw.get("height") or 0),
        pid=pid if isinstance(pid, int) and pid > 0 else None,
        pname=str(raw["pname"]) if raw.get("pname") else None,
        state="unknown",
        child_windows=[
            ChildWindow(
                window_id=int(child.get("window_id", 0)),
                title=str(child.get("window_title") or "")[:1024],
                x=int(child.get("absolute_upper_left_x") or 0),
                y=int(child.get("absolute_upper_left_y") or 0),
                width=int(child.get("width") or 0),
                height=int(child.get("height") or 0),
            )
            for child in raw.get("child_windows") or []
            if isinstance(child, dict)
        ][:50],
    )


def _processes(raw: Any) -> list[AppProcess]:
    if not isinstance(raw, list):
        return []
    return [
        AppProcess(pid=int(p.get("pid", 0)), pname=str(p.get("pname") or ""), cmdline=str(p.get("cmdline") or ""))
        for p in raw
        if isinstance(p, dict)
    ]


async def windows(call: ToolCall) -> list[WindowInfo]:
    """Top-level windows (list_root_windows), all of them."""
    raw = await _json(call, tools.LIST_ROOT_WINDOWS, {"timeout_ms": 3000})
    if not isinstance(raw, list):
        raise BackendError("AgentBay's list_root_windows did not send a list.")
    return [_window(item) for item in raw]


async def active(call: ToolCall) -> WindowInfo | None:
    """The active window (get_active_window), or None."""
    raw = await _json(call, tools.GET_ACTIVE_WINDOW, {})
    return _window(raw) if isinstance(raw, dict) and raw.get("window_id") else None


async def window_list(call: ToolCall, focus_mode: bool) -> WindowList:
    """Windows, the active one and the screen size."""
    found = await windows(call)
    focused = await active(call)
    size = await _json(call, tools.GET_SCREEN_SIZE, {})
    if not isinstance(size, dict):
        raise BackendError("AgentBay's get_screen_size did not send an object.")
    return WindowList(
        windows=found[-MAX_WINDOWS:],
        truncated=len(found) > MAX_WINDOWS,
        active_window_id=focused.window_id if focused else None,
        focus_mode=focus_mode,
        screen_width=int(size.get("width") or 0),
        screen_height=int(size.get("height") or 0),
    )


async def detail(call: ToolCall, window_id: int) -> WindowDetail:
    """One window, or WindowNotFoundError."""
    for window in await windows(call):
        if window.window_id == window_id:
            focused = await active(call)
            return WindowDetail(window=window, active=focused is not None and focused.window_id == window_id)
    raise WindowNotFoundError(
        f"There is no window {window_id} on this session's desktop; call list_windows for the current ids."
    )


async def action(call: ToolCall, window_id: int, name: str, width: int | None, height: int | None) -> None:
    """activate_window, maximize_window, ..., resize_window."""
    args: dict[str, Any] = {"window_id": window_id}
    if name == "resize":
        args.update(width=width, height=height)
    await _text(call, tools.WINDOW_ACTIONS[name], args)


async def focus_mode(call: ToolCall, on: bool) -> FocusMode:
    """The image's own focus mode."""
    await _text(call, tools.FOCUS_MODE, {"on": on})
    return FocusMode(
        on=on, window_id=None, behaviour="AgentBay's own focus mode (the focus_mode tool of the session's image)."
    )


async def installed_apps(call: ToolCall, include_system: bool) -> list[InstalledApp]:
    """get_installed_apps from the start menu and the desktop."""
    raw = await _json(
        call, tools.GET_INSTALLED_APPS, {"start_menu": True, "desktop": True, "ignore_system_app": not include_system}
    )
    return [
        InstalledApp(
            name=str(app.get("name") or ""),
            start_cmd=str(app.get("start_cmd") or ""),
            stop_cmd=str(app["stop_cmd"]) if app.get("stop_cmd") else None,
            work_directory=str(app["work_directory"]) if app.get("work_directory") else None,
            desktop_file="",
            system=False,
        )
        for app in (raw if isinstance(raw, list) else [])
        if isinstance(app, dict) and app.get("start_cmd")
    ]


async def launch(call: ToolCall, start_cmd: str, work_directory: str | None) -> AppLaunch:
    """start_app, after noting the windows that already exist."""
    before = [w.window_id for w in await windows(call)]
    args: dict[str, Any] = {"start_cmd": start_cmd}
    if work_directory:
        args["work_directory"] = work_directory
    started = _processes(await _json(call, tools.START_APP, args))
    return AppLaunch(proc_id=None, pid=started[0].pid if started else 0, windows_before=before, processes=started)


async def app_status(call: ToolCall, started: AppLaunch) -> AppStatus:
    """The first new window, preferring one owned by a started process."""
    found = await windows(call)
    pids = {p.pid for p in started.processes}
    # Ownership first: X reuses a closed client's window ids, so "not there before" alone can miss it.
    candidates = [w for w in found if w.pid in pids] or [w for w in found if w.window_id not in started.windows_before]
    return AppStatus(processes=started.processes, window=candidates[0] if candidates else None)


async def stop_app(call: ToolCall, pid: int | None, pname: str | None, stop_cmd: str | None) -> AppStopped:
    """stop_app_by_pid / _by_pname / _by_cmd."""
    if pid is not None:
        text = await _text(call, tools.STOP_APP_BY_PID, {"pid": pid})
    elif pname is not None:
        text = await _text(call, tools.STOP_APP_BY_PNAME, {"pname": pname})
    else:
        await _text(call, tools.STOP_APP_BY_CMD, {"stop_cmd": stop_cmd})
        return AppStopped(stopped=[], stop_cmd_exit_code=0)
    try:
        stopped = _processes(loads(text))
    except json.JSONDecodeError:
        stopped = []
    note = "" if stopped else "AgentBay does not say which processes it stopped; list_visible_apps shows what is left."
    return AppStopped(stopped=stopped, note=note)


async def visible_apps(call: ToolCall) -> list[VisibleApp]:
    """list_visible_apps, with each process's windows from list_root_windows."""
    processes = _processes(await _json(call, tools.LIST_VISIBLE_APPS, {}))
    by_pid: dict[int, list[int]] = {}
    for window in await windows(call):
        if window.pid is not None:
            by_pid.setdefault(window.pid, []).append(window.window_id)
    return [
        VisibleApp(pid=p.pid, pname=p.pname, cmdline=p.cmdline, window_ids=by_pid.get(p.pid, [])) for p in processes
    ]


def _button(button: str | None) -> str:
    return button or "left"


async def input_action(call: ToolCall, request: dict[str, Any]) -> InputResult:
    """click_mouse, move_mouse, drag_mouse, scroll, input_text, press_keys; then get_cursor_position."""
    kind = request["action"]
    if kind == "click":
        count, button = int(request.get("count") or 1), _button(request.get("button"))
        if count == 2 and button == "left":
            await _text(call, tools.CLICK_MOUSE, {"x": request["x"], "y": request["y"], "button": "double_left"})
        else:
            for _ in range(count):
                await _text(call, tools.CLICK_MOUSE, {"x": request["x"], "y": request["y"], "button": button})
    elif kind == "move":
        await _text(call, tools.MOVE_MOUSE, {"x": request["x"], "y": request["y"]})
    elif kind == "drag":
        args = {"from_x": request["x"], "from_y": request["y"], "to_x": request["to_x"], "to_y": request["to_y"]}
        await _text(call, tools.DRAG_MOUSE, {**args, "button": _button(request.get("button"))})
    elif kind == "scroll":
        args = {"x": request["x"], "y": request["y"], "direction": request["direction"], "amount": request["amount"]}
        await _text(call, tools.SCROLL, args)
    elif kind == "type":
        await _text(call, tools.INPUT_TEXT, {"text": request["text"]})
    else:
        keys = [_KEY_NAMES.get(str(k).lower(), str(k)) for k in request["keys"]]
        await _text(call, tools.PRESS_KEYS, {"keys": keys, "hold": False})
    where = await _json(call, tools.GET_CURSOR_POSITION, {})
    if not isinstance(where, dict):
        raise BackendError("AgentBay's get_cursor_position did not send an object.")
    return InputResult(action=kind, pointer_x=int(where.get("x") or 0), pointer_y=int(where.get("y") or 0))


def _image(data: bytes) -> Screenshot:
    """An encoded image with its real format and size (read from its header, not decoded)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            fmt = (image.format or "").lower()
            width, height = image.size
    except (UnidentifiedImageError, OSError) as exc:
        raise BackendError("AgentBay's screenshot is not an image.") from exc
    if fmt not in ("png", "jpeg"):
        raise BackendError(f"AgentBay's screenshot is a {fmt or 'unknown'} image, not PNG or JPEG.")
    return Screenshot(data=data, format="png" if fmt == "png" else "jpeg", width=width, height=height)


async def screenshot(call: ToolCall, direct: bool, fetch: Fetch) -> Screenshot:
    """Inline over LinkUrl (screenshot: JSON with base64 data); otherwise a URL to download."""
    if direct:
        raw = await _json(call, tools.SCREENSHOT, {"format": "png"})
        if not isinstance(raw, dict) or not isinstance(raw.get("data"), str):
            raise BackendError("AgentBay's screenshot sent no image data.")
        try:
            data = base64.b64decode(raw["data"], validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BackendError("AgentBay's screenshot data is not base64.") from exc
        return _image(data)
    url = (await _text(call, tools.SYSTEM_SCREENSHOT, {})).strip()
    return _image(await fetch(url))
