"""Desktop primitives of the local backend: calls into the session's agent, replies validated.

The display, the window manager and every X request live in the agent inside the sandbox; this
module only sends operations and validates what comes back (the agent is not trusted): each call
names the most its reply may take, every reply's shape is checked, and a screenshot is inflated only
up to the server's own screen size, whatever size the reply claims.
"""

from __future__ import annotations

import zlib
from typing import Any

import anyio

from agentbay_mcp.backends.base import AppLaunch, AppStatus, Screenshot, WindowDetail
from agentbay_mcp.backends.local.agent_client import (
    ESCAPED_PER_BYTE,
    ESCAPED_PER_CHAR,
    SMALL_REPLY_BYTES,
    AgentClient,
    base64_bytes,
)
from agentbay_mcp.backends.local.agent_errors import ReplyShapeError, base64_field, field, records, translated
from agentbay_mcp.services.desktop.models import (
    AppProcess,
    FocusMode,
    InputResult,
    InstalledApp,
    VisibleApp,
    WindowInfo,
    WindowList,
)

#: The first call also starts Xvfb and the window manager (bounded in the agent at 10 s each).
_CALL_SECONDS = 30.0
#: What the agent lists at most (its own caps; more is a violation): windows, child windows per
#: window, applications, processes of one app tree.
MAX_WINDOWS = 200
MAX_CHILDREN = 50
MAX_APPS = 500
MAX_PROCESSES = 4096
#: One window as JSON: a title of at most 1024 characters escaped, its process name, numbers.
WINDOW_BYTES = ESCAPED_PER_CHAR * 1024 + 1024
#: A process as JSON: its command line (at most 64 KiB read from /proc) escaped, name, pid.
PROCESS_BYTES = ESCAPED_PER_BYTE * 64 * 1024 + 1024
#: An application from a `.desktop` entry (read at most 256 KiB per file), escaped.
APP_BYTES = ESCAPED_PER_BYTE * 256 * 1024
#: zlib's worst case on incompressible data: 5 bytes per 16 KiB stored block, plus its header.
_ZLIB_SLACK = 64


def screenshot_budget(width: int, height: int) -> int:
    """The largest screenshot reply for a screen of this size: BGRX pixels, deflated at worst not at all."""
    raw = width * height * 4
    return base64_bytes(raw + raw // 16384 * 5 + _ZLIB_SLACK) + 4096


async def _call(agent: AgentClient, op: str, budget: int = SMALL_REPLY_BYTES, **arguments: Any) -> dict[str, Any]:
    return await agent.call(f"desktop_{op}", timeout=_CALL_SECONDS, reply_budget=budget, **arguments)


async def env(agent: AgentClient) -> dict[str, str]:
    """DISPLAY and XAUTHORITY of the session's display (started if needed)."""
    async with translated(agent, "desktop_status"):
        reply = await _call(agent, "status", start=True)
        found = reply.get("env")
        if not isinstance(found, dict) or set(found) != {"DISPLAY", "XAUTHORITY"}:
            raise ReplyShapeError("'env' is not DISPLAY and XAUTHORITY")
        if not all(isinstance(v, str) and len(v) <= 4096 and "\0" not in v for v in found.values()):
            raise ReplyShapeError("'env' holds something that is not a short string")
        return {str(k): str(v) for k, v in found.items()}


async def installed_apps(agent: AgentClient, include_system: bool) -> list[InstalledApp]:
    """`.desktop` applications."""
    async with translated(agent, "desktop_apps"):
        reply = await _call(agent, "apps", MAX_APPS * APP_BYTES, include_system=include_system)
        return [InstalledApp.model_validate(app) for app in records(reply, "apps", MAX_APPS)]


async def launch(agent: AgentClient, start_cmd: str, work_directory: str | None) -> AppLaunch:
    """Start an application."""
    async with translated(agent, "desktop_start_app"):
        return AppLaunch.model_validate(
            await _call(
                agent,
                "start_app",
                SMALL_REPLY_BYTES + MAX_WINDOWS * 24 + MAX_PROCESSES * PROCESS_BYTES,
                start_cmd=start_cmd,
                work_directory=work_directory,
            )
        )


async def app_status(agent: AgentClient, launch: AppLaunch) -> AppStatus:
    """An application's processes and first window."""
    async with translated(agent, "desktop_app_status"):
        return AppStatus.model_validate(
            await _call(
                agent,
                "app_status",
                WINDOW_BYTES * (1 + MAX_CHILDREN) + MAX_PROCESSES * PROCESS_BYTES,
                pid=launch.pid,
                windows_before=launch.windows_before,
            )
        )


async def stop_app(agent: AgentClient, pid: int | None, pname: str | None) -> list[AppProcess]:
    """Stop process trees."""
    async with translated(agent, "desktop_stop_app"):
        reply = await _call(agent, "stop_app", MAX_PROCESSES * PROCESS_BYTES, pid=pid, pname=pname)
        return [AppProcess.model_validate(p) for p in records(reply, "stopped", MAX_PROCESSES)]


async def visible_apps(agent: AgentClient) -> list[VisibleApp]:
    """Processes with a visible window."""
    async with translated(agent, "desktop_visible_apps"):
        reply = await _call(agent, "visible_apps", MAX_WINDOWS * (PROCESS_BYTES + 24))
        return [VisibleApp.model_validate(app) for app in records(reply, "apps", MAX_WINDOWS)]


async def windows(agent: AgentClient) -> WindowList:
    """Top-level windows."""
    async with translated(agent, "desktop_windows"):
        reply = await _call(agent, "windows", MAX_WINDOWS * WINDOW_BYTES * (1 + MAX_CHILDREN) + 1024)
        records(reply, "windows", MAX_WINDOWS)
        return WindowList.model_validate(reply)


async def active(agent: AgentClient) -> WindowInfo | None:
    """The active window."""
    async with translated(agent, "desktop_active"):
        reply = await _call(agent, "active", WINDOW_BYTES * (1 + MAX_CHILDREN))
        return None if reply.get("window") is None else WindowInfo.model_validate(reply["window"])


async def detail(agent: AgentClient, window_id: int) -> WindowDetail:
    """One window, with its size increments."""
    async with translated(agent, "desktop_window"):
        reply = await _call(agent, "window", WINDOW_BYTES * (1 + MAX_CHILDREN), window_id=window_id)
        increments = reply.pop("size_increments", (1, 1))
        active_now = reply.pop("active", False)
        return WindowDetail.model_validate(
            {"window": WindowInfo.model_validate(reply), "active": active_now, "size_increments": increments}
        )


async def action(agent: AgentClient, window_id: int, name: str, width: int | None, height: int | None) -> None:
    """Send a window-manager request."""
    async with translated(agent, "desktop_window_action"):
        await _call(agent, "window_action", window_id=window_id, action=name, width=width, height=height)


async def focus_mode(agent: AgentClient, on: bool) -> FocusMode:
    """Turn focus mode on or off."""
    async with translated(agent, "desktop_focus_mode"):
        return FocusMode.model_validate(await _call(agent, "focus_mode", on=on))


def _inflate(data: Any, width: int, height: int) -> bytes:
    """BGRX pixels of a `width` x `height` screen: never more than that many bytes are inflated."""
    packed = base64_field(data, "data")
    expected = width * height * 4
    inflater = zlib.decompressobj()
    try:
        pixels = inflater.decompress(packed, expected + 1)  # the +1 tells "too much" from "exactly"
    except zlib.error:
        raise ReplyShapeError("'data' is not zlib data") from None
    if len(pixels) != expected or not inflater.eof:
        raise ReplyShapeError("the pixels do not match the screen size the reply claims")
    return pixels


async def screenshot(agent: AgentClient, screen: tuple[int, int]) -> Screenshot:
    """Raw screen pixels of a display the server made `screen` (width, height) in size."""
    async with translated(agent, "desktop_screenshot"):
        reply = await _call(agent, "screenshot", screenshot_budget(*screen))
        if reply.get("compression") != "zlib" or reply.get("format") != "bgrx":
            raise ReplyShapeError("the screenshot is not zlib-compressed BGRX")
        width, height = field(reply, "width", int), field(reply, "height", int)
        # Checked before inflating: the claim may only shrink what the server's own screen size allows.
        if not (0 < width <= screen[0] and 0 < height <= screen[1]):
            raise ReplyShapeError(f"a {width}x{height} screenshot of a {screen[0]}x{screen[1]} screen")
        pixels = await anyio.to_thread.run_sync(_inflate, reply["data"], width, height)
        return Screenshot(data=pixels, format="bgrx", width=width, height=height)


async def input_action(agent: AgentClient, request: dict[str, Any]) -> InputResult:
    """Mouse or keyboard input."""
    async with translated(agent, "desktop_input"):
        reply = await _call(agent, "input", **request)
        return InputResult.model_validate({**reply, "action": request["action"]})
