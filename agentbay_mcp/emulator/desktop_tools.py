"""The emulator's desktop tools (apps, windows, input, screenshots), over a local backend's desktop.

Replies follow AgentBay's shapes (shared/agentbay-wire.md, the official SDK's parsers): JSON lists
of `{pname, pid, cmdline}`, windows as `{window_id, window_title, absolute_upper_left_x, ...}` with
no state, `screenshot` as `{type, mime_type, data, width, height}`, `system_screenshot` as a URL
to download. Two things the local backend has no primitive for are kept here: the pointer position
(from the input this emulator delivered; the screen's centre before any) and the captures that
`system_screenshot` hands out (one download each, the newest 16 kept).
"""

from __future__ import annotations

import base64
import functools
import json
import secrets
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import anyio

from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.records_desktop import WindowAction, WindowInfo
from agentbay_mcp.services.desktop.screenshot_encoding import encode

MAX_CAPTURES = 16
START_SETTLE_SECONDS = 2.0
SHELLS = frozenset({"sh", "dash", "bash"})
#: AgentBay key names that differ from ours (ours are X keysym names plus aliases such as ctrl, enter).
_KEYS = {"Win": "super", "Ctrl": "ctrl", "Enter": "Return"}


@dataclass
class DesktopState:
    """What the emulator remembers between desktop tool calls."""

    base_url: str = ""
    captures: OrderedDict[str, bytes] = field(default_factory=OrderedDict)
    pointers: dict[str, tuple[int, int]] = field(default_factory=dict)

    def keep_capture(self, data: bytes) -> str:
        """Store an image for one download; returns its URL."""
        token = secrets.token_urlsafe(16)
        self.captures[token] = data
        while len(self.captures) > MAX_CAPTURES:
            self.captures.popitem(last=False)
        return f"{self.base_url.rstrip('/')}/captures/{token}.png"


DesktopHandler = Callable[[LocalBackend, str, dict[str, Any], DesktopState], Awaitable[str]]


class DesktopToolError(Exception):
    """A desktop tool failed: its text goes back with isError true."""


def _int(args: dict[str, Any], name: str) -> int:
    value = args.get(name)
    if not isinstance(value, int) or isinstance(value, bool):
        raise DesktopToolError(f"argument {name!r} must be an integer")
    return value


def _window(window: WindowInfo) -> dict[str, Any]:
    return {
        "window_id": window.window_id,
        "window_title": window.title,
        "absolute_upper_left_x": window.x,
        "absolute_upper_left_y": window.y,
        "width": window.width,
        "height": window.height,
        "pid": window.pid,
        "pname": window.pname,
        "child_windows": [
            {
                "window_id": c.window_id,
                "window_title": c.title,
                "absolute_upper_left_x": window.x + c.x,
                "absolute_upper_left_y": window.y + c.y,
                "width": c.width,
                "height": c.height,
            }
            for c in window.child_windows
        ],
    }


async def get_installed_apps(backend: LocalBackend, session_id: str, args: dict[str, Any], _: DesktopState) -> str:
    apps = await backend.desktop.installed_apps(session_id, include_system=not args.get("ignore_system_app", True))
    return json.dumps(
        [
            {"name": a.name, "start_cmd": a.start_cmd, "stop_cmd": a.stop_cmd, "work_directory": a.work_directory}
            for a in apps
        ]
    )


async def start_app(backend: LocalBackend, session_id: str, args: dict[str, Any], _: DesktopState) -> str:
    command = args.get("start_cmd")
    if not isinstance(command, str) or not command.strip():
        raise DesktopToolError("argument 'start_cmd' must be a non-empty string")
    workdir = args.get("work_directory") if isinstance(args.get("work_directory"), str) else None
    launch = await backend.desktop.launch_app(session_id, command, workdir or None)
    # Like the cloud's tool, answer with the application's processes, not just the shell starting it:
    # give the shell a moment to start (or become) the program.
    status = await backend.desktop.app_status(session_id, launch)
    with anyio.move_on_after(START_SETTLE_SECONDS):
        while status.processes and all(p.pname in SHELLS for p in status.processes):
            await anyio.sleep(0.02)
            status = await backend.desktop.app_status(session_id, launch)
    return json.dumps([p.model_dump() for p in status.processes])


async def list_visible_apps(backend: LocalBackend, session_id: str, args: dict[str, Any], _: DesktopState) -> str:
    return json.dumps(
        [{"pname": a.pname, "pid": a.pid, "cmdline": a.cmdline} for a in await backend.desktop.visible_apps(session_id)]
    )


async def _stop(backend: LocalBackend, session_id: str, **selector: Any) -> str:
    stopped = await backend.desktop.stop_app(session_id, **{"pid": None, "pname": None, "stop_cmd": None, **selector})
    if stopped.stop_cmd_exit_code not in (None, 0):
        raise DesktopToolError(f"the stop command exited with code {stopped.stop_cmd_exit_code}")
    return json.dumps([p.model_dump() for p in stopped.stopped])


async def stop_app_by_pid(backend: LocalBackend, session_id: str, args: dict[str, Any], _: DesktopState) -> str:
    return await _stop(backend, session_id, pid=_int(args, "pid"))


async def stop_app_by_pname(backend: LocalBackend, session_id: str, args: dict[str, Any], _: DesktopState) -> str:
    return await _stop(backend, session_id, pname=str(args.get("pname") or ""))


async def stop_app_by_cmd(backend: LocalBackend, session_id: str, args: dict[str, Any], _: DesktopState) -> str:
    return await _stop(backend, session_id, stop_cmd=str(args.get("stop_cmd") or ""))


async def list_root_windows(backend: LocalBackend, session_id: str, args: dict[str, Any], _: DesktopState) -> str:
    return json.dumps([_window(w) for w in (await backend.desktop.list_windows(session_id)).windows])


async def get_active_window(backend: LocalBackend, session_id: str, args: dict[str, Any], _: DesktopState) -> str:
    window = await backend.desktop.active_window(session_id)
    return json.dumps(_window(window)) if window else ""


def _window_action(action: str) -> DesktopHandler:
    async def handler(backend: LocalBackend, session_id: str, args: dict[str, Any], _: DesktopState) -> str:
        size = (_int(args, "width"), _int(args, "height")) if action == "resize" else (None, None)
        await backend.desktop.window_action(session_id, _int(args, "window_id"), action, *size)  # type: ignore[arg-type]
        return "true"

    return handler


async def focus_mode(backend: LocalBackend, session_id: str, args: dict[str, Any], _: DesktopState) -> str:
    await backend.desktop.set_focus_mode(session_id, bool(args.get("on")))
    return "true"


async def _input(backend: LocalBackend, session_id: str, request: dict[str, Any], desk: DesktopState) -> str:
    done = await backend.desktop.input_action(session_id, request)
    desk.pointers[session_id] = (done.pointer_x, done.pointer_y)
    return "true"


async def click_mouse(backend: LocalBackend, session_id: str, args: dict[str, Any], desk: DesktopState) -> str:
    button = str(args.get("button") or "left")
    count = 2 if button == "double_left" else 1
    request = {"action": "click", "x": _int(args, "x"), "y": _int(args, "y")}
    return await _input(
        backend, session_id, {**request, "button": button.removeprefix("double_"), "count": count}, desk
    )


async def move_mouse(backend: LocalBackend, session_id: str, args: dict[str, Any], desk: DesktopState) -> str:
    return await _input(backend, session_id, {"action": "move", "x": _int(args, "x"), "y": _int(args, "y")}, desk)


async def drag_mouse(backend: LocalBackend, session_id: str, args: dict[str, Any], desk: DesktopState) -> str:
    request = {"action": "drag", "x": _int(args, "from_x"), "y": _int(args, "from_y")}
    request.update(to_x=_int(args, "to_x"), to_y=_int(args, "to_y"), button=str(args.get("button") or "left"))
    return await _input(backend, session_id, request, desk)


async def scroll(backend: LocalBackend, session_id: str, args: dict[str, Any], desk: DesktopState) -> str:
    request = {"action": "scroll", "x": _int(args, "x"), "y": _int(args, "y")}
    request.update(direction=str(args.get("direction") or "down"), amount=int(args.get("amount") or 1))
    return await _input(backend, session_id, request, desk)


async def input_text(backend: LocalBackend, session_id: str, args: dict[str, Any], desk: DesktopState) -> str:
    return await _input(backend, session_id, {"action": "type", "text": str(args.get("text") or "")}, desk)


async def press_keys(backend: LocalBackend, session_id: str, args: dict[str, Any], desk: DesktopState) -> str:
    keys = args.get("keys")
    if not isinstance(keys, list) or not keys:
        raise DesktopToolError("argument 'keys' must be a non-empty list")
    return await _input(
        backend, session_id, {"action": "keys", "keys": [_KEYS.get(str(k), str(k)) for k in keys]}, desk
    )


async def get_screen_size(backend: LocalBackend, session_id: str, args: dict[str, Any], _: DesktopState) -> str:
    listed = await backend.desktop.list_windows(session_id)
    return json.dumps({"width": listed.screen_width, "height": listed.screen_height, "dpiScalingFactor": 1.0})


async def get_cursor_position(backend: LocalBackend, session_id: str, args: dict[str, Any], desk: DesktopState) -> str:
    if session_id not in desk.pointers:
        listed = await backend.desktop.list_windows(session_id)
        desk.pointers[session_id] = (listed.screen_width // 2, listed.screen_height // 2)  # where Xvfb starts it
    x, y = desk.pointers[session_id]
    return json.dumps({"x": x, "y": y})


async def _encoded(backend: LocalBackend, session_id: str, fmt: str) -> tuple[bytes, int, int]:
    shot = await backend.desktop.screenshot(session_id)
    kind: Literal["png", "jpeg"] = "jpeg" if fmt in ("jpeg", "jpg") else "png"
    image = await anyio.to_thread.run_sync(functools.partial(encode, shot, kind, None, budget=64 * 1024 * 1024))
    return image.data, image.width, image.height


async def screenshot(backend: LocalBackend, session_id: str, args: dict[str, Any], _: DesktopState) -> str:
    fmt = "jpeg" if str(args.get("format") or "png").lower() in ("jpeg", "jpg") else "png"
    data, width, height = await _encoded(backend, session_id, fmt)
    payload = {"type": "image", "mime_type": f"image/{fmt}", "data": base64.b64encode(data).decode()}
    return json.dumps({**payload, "width": width, "height": height})


async def system_screenshot(backend: LocalBackend, session_id: str, args: dict[str, Any], desk: DesktopState) -> str:
    data, _, _ = await _encoded(backend, session_id, "png")
    return desk.keep_capture(data)


HANDLERS: dict[str, DesktopHandler] = {
    "get_installed_apps": get_installed_apps,
    "start_app": start_app,
    "list_visible_apps": list_visible_apps,
    "stop_app_by_pid": stop_app_by_pid,
    "stop_app_by_pname": stop_app_by_pname,
    "stop_app_by_cmd": stop_app_by_cmd,
    "list_root_windows": list_root_windows,
    "get_active_window": get_active_window,
    **{f"{action}_window": _window_action(action) for action in get_args(WindowAction)},
    "focus_mode": focus_mode,
    "click_mouse": click_mouse,
    "move_mouse": move_mouse,
    "drag_mouse": drag_mouse,
    "scroll": scroll,
    "input_text": input_text,
    "press_keys": press_keys,
    "get_screen_size": get_screen_size,
    "get_cursor_position": get_cursor_position,
    "screenshot": screenshot,
    "system_screenshot": system_screenshot,
}
#: The in-session server each desktop tool lives on (as AgentBay's ToolList names them).
SERVERS = {
    name: "wuying_capture" if "screenshot" in name else "wuying_app" if "app" in name else "wuying_ui"
    for name in HANDLERS
}
