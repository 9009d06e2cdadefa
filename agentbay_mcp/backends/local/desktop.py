"""Desktop primitives of the local backend: calls into the session's agent, replies validated.

The display, the window manager and every X request live in the agent inside the sandbox; this
module only sends operations and validates what comes back (the agent is not trusted).
"""

from __future__ import annotations

import base64
import zlib
from typing import Any

from agentbay_mcp.backends.base import AppLaunch, AppStatus, Screenshot, WindowDetail
from agentbay_mcp.backends.local.agent_client import AgentClient
from agentbay_mcp.backends.local.agent_errors import translated
from agentbay_mcp.models import (
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


async def _call(agent: AgentClient, op: str, **arguments: Any) -> dict[str, Any]:
    return await agent.call(f"desktop_{op}", timeout=_CALL_SECONDS, **arguments)


async def env(agent: AgentClient) -> dict[str, str]:
    """DISPLAY and XAUTHORITY of the session's display (started if needed)."""
    async with translated():
        reply = await _call(agent, "status", start=True)
        found = reply.get("env")
        if not isinstance(found, dict) or set(found) != {"DISPLAY", "XAUTHORITY"}:
            raise ValueError("bad display environment")
        return {str(k): str(v) for k, v in found.items()}


async def installed_apps(agent: AgentClient, include_system: bool) -> list[InstalledApp]:
    """`.desktop` applications."""
    async with translated():
        reply = await _call(agent, "apps", include_system=include_system)
        return [InstalledApp.model_validate(app) for app in reply["apps"]]


async def launch(agent: AgentClient, start_cmd: str, work_directory: str | None) -> AppLaunch:
    """Start an application."""
    async with translated():
        return AppLaunch.model_validate(
            await _call(agent, "start_app", start_cmd=start_cmd, work_directory=work_directory)
        )


async def app_status(agent: AgentClient, launch: AppLaunch) -> AppStatus:
    """An application's processes and first window."""
    async with translated():
        return AppStatus.model_validate(
            await _call(agent, "app_status", pid=launch.pid, windows_before=launch.windows_before)
        )


async def stop_app(agent: AgentClient, pid: int | None, pname: str | None) -> list[AppProcess]:
    """Stop process trees."""
    async with translated():
        reply = await _call(agent, "stop_app", pid=pid, pname=pname)
        return [AppProcess.model_validate(p) for p in reply["stopped"]]


async def visible_apps(agent: AgentClient) -> list[VisibleApp]:
    """Processes with a visible window."""
    async with translated():
        reply = await _call(agent, "visible_apps")
        return [VisibleApp.model_validate(app) for app in reply["apps"]]


async def windows(agent: AgentClient) -> WindowList:
    """Top-level windows."""
    async with translated():
        return WindowList.model_validate(await _call(agent, "windows"))


async def active(agent: AgentClient) -> WindowInfo | None:
    """The active window."""
    async with translated():
        reply = await _call(agent, "active")
        return None if reply.get("window") is None else WindowInfo.model_validate(reply["window"])


async def detail(agent: AgentClient, window_id: int) -> WindowDetail:
    """One window, with its size increments."""
    async with translated():
        reply = await _call(agent, "window", window_id=window_id)
        increments = reply.pop("size_increments", (1, 1))
        active_now = bool(reply.pop("active", False))
        return WindowDetail(window=WindowInfo.model_validate(reply), active=active_now, size_increments=increments)


async def action(agent: AgentClient, window_id: int, name: str, width: int | None, height: int | None) -> None:
    """Send a window-manager request."""
    async with translated():
        await _call(agent, "window_action", window_id=window_id, action=name, width=width, height=height)


async def focus_mode(agent: AgentClient, on: bool) -> FocusMode:
    """Turn focus mode on or off."""
    async with translated():
        return FocusMode.model_validate(await _call(agent, "focus_mode", on=on))


async def screenshot(agent: AgentClient) -> Screenshot:
    """Raw screen pixels."""
    async with translated():
        reply = await _call(agent, "screenshot")
        if reply.pop("compression", None) != "zlib":
            raise ValueError("screenshot not compressed")
        width, height = int(reply["width"]), int(reply["height"])
        # Bounded: a hostile agent's zlib bomb stops at the size the screen can have.
        inflater = zlib.decompressobj()
        pixels = inflater.decompress(base64.b64decode(reply["data"]), width * height * 4 + 1)
        shot = Screenshot.model_validate({**reply, "data": pixels})
        if shot.format != "bgrx" or len(shot.data) != shot.width * shot.height * 4:
            raise ValueError("screenshot size does not match its dimensions")
        return shot


async def input_action(agent: AgentClient, request: dict[str, Any]) -> InputResult:
    """Mouse or keyboard input."""
    async with translated():
        reply = await _call(agent, "input", **request)
        return InputResult.model_validate({**reply, "action": request["action"]})
