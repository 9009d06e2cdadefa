"""Desktop tools: applications, windows, focus mode, screenshots and input (images with a desktop)."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ImageContent, TextContent
from pydantic import Field

from agentbay_mcp.services.desktop import models
from agentbay_mcp.tools.common import CHANGES, CREATES, READ_ONLY, REPLACES, SETS, SessionId, tool, tool_call

WindowId = Annotated[int, Field(description="A window_id from list_windows or get_active_window.")]
Coordinate = Annotated[int | None, Field(ge=0, description="Screen pixels from the top-left corner.")]


def register(mcp: MCPServer[Any]) -> None:
    """Add the desktop tools to `mcp`."""

    @tool(mcp, READ_ONLY)
    async def get_installed_apps(
        ctx: Context,
        session_id: SessionId,
        include_system: Annotated[bool, Field(description="Also list hidden and settings entries.")] = False,
    ) -> models.InstalledApps:
        async with tool_call(ctx) as call:
            return await call.desktop.get_installed_apps(call.conversation, session_id, include_system)

    @tool(mcp, CREATES)
    async def start_app(
        ctx: Context,
        session_id: SessionId,
        start_cmd: Annotated[str, Field(description="Command that starts the application.")],
        work_directory: Annotated[str | None, Field(description="Working directory (default /home/user).")] = None,
        wait_ms: Annotated[
            int | None, Field(ge=0, le=30000, description="How long to wait for a window (default 5000).")
        ] = None,
    ) -> models.AppStarted:
        async with tool_call(ctx) as call:
            return await call.desktop.start_app(call.conversation, session_id, start_cmd, work_directory, wait_ms)

    @tool(mcp, REPLACES)
    async def stop_app(
        ctx: Context,
        session_id: SessionId,
        pid: Annotated[int | None, Field(description="Process id from start_app or list_visible_apps.")] = None,
        pname: Annotated[str | None, Field(description="Process name, e.g. 'xterm'.")] = None,
        stop_cmd: Annotated[str | None, Field(description="Shell command that stops the application.")] = None,
    ) -> models.AppStopped:
        async with tool_call(ctx) as call:
            return await call.desktop.stop_app(call.conversation, session_id, pid, pname, stop_cmd)

    @tool(mcp, READ_ONLY)
    async def list_visible_apps(ctx: Context, session_id: SessionId) -> models.VisibleApps:
        async with tool_call(ctx) as call:
            return await call.desktop.list_visible_apps(call.conversation, session_id)

    @tool(mcp, READ_ONLY)
    async def list_windows(ctx: Context, session_id: SessionId) -> models.WindowList:
        async with tool_call(ctx) as call:
            return await call.desktop.list_windows(call.conversation, session_id)

    @tool(mcp, READ_ONLY)
    async def get_active_window(ctx: Context, session_id: SessionId) -> models.ActiveWindow:
        async with tool_call(ctx) as call:
            return await call.desktop.get_active_window(call.conversation, session_id)

    @tool(mcp, CHANGES)
    async def control_window(
        ctx: Context,
        session_id: SessionId,
        window_id: WindowId,
        action: Annotated[models.WindowAction, Field(description="What to do with the window.")],
        width: Annotated[int | None, Field(ge=1, description="For resize: outer width in pixels.")] = None,
        height: Annotated[int | None, Field(ge=1, description="For resize: outer height in pixels.")] = None,
    ) -> models.WindowControlResult:
        async with tool_call(ctx) as call:
            return await call.desktop.control_window(call.conversation, session_id, window_id, action, width, height)

    @tool(mcp, SETS)
    async def set_focus_mode(
        ctx: Context, session_id: SessionId, on: Annotated[bool, Field(description="true to lock the focus.")]
    ) -> models.FocusMode:
        async with tool_call(ctx) as call:
            return await call.desktop.set_focus_mode(call.conversation, session_id, on)

    @tool(mcp, READ_ONLY)
    async def take_screenshot(
        ctx: Context,
        session_id: SessionId,
        format: Annotated[Literal["png", "jpeg"], Field(description="Image format.")] = "png",
        max_width: Annotated[int | None, Field(ge=16, description="Scale down to at most this width.")] = None,
    ) -> Annotated[CallToolResult, models.ScreenshotInfo]:
        async with tool_call(ctx) as call:
            image, info = await call.desktop.take_screenshot(call.conversation, session_id, format, max_width)
        return CallToolResult(
            content=[
                ImageContent(
                    type="image", data=base64.b64encode(image.data).decode(), mime_type=f"image/{image.format}"
                ),
                TextContent(
                    type="text",
                    text=f"{info.width}x{info.height} {info.format} screenshot"
                    + (f" (screen {info.screen_width}x{info.screen_height}, scaled)" if info.scaled else ""),
                ),
            ],
            structured_content=info.model_dump(mode="json"),
        )

    @tool(mcp, CHANGES)
    async def input_action(
        ctx: Context,
        session_id: SessionId,
        action: Annotated[models.InputKind, Field(description="Which input to deliver.")],
        x: Coordinate = None,
        y: Coordinate = None,
        to_x: Coordinate = None,
        to_y: Coordinate = None,
        button: Annotated[Literal["left", "middle", "right"] | None, Field(description="Mouse button.")] = None,
        count: Annotated[int | None, Field(ge=1, le=3, description="Clicks (2 = double click).")] = None,
        direction: Annotated[Literal["up", "down", "left", "right"] | None, Field(description="Scroll way.")] = None,
        amount: Annotated[int | None, Field(ge=1, le=100, description="Scroll notches.")] = None,
        text: Annotated[str | None, Field(description="Text to type.")] = None,
        keys: Annotated[list[str] | None, Field(description="Key names pressed together.")] = None,
    ) -> models.InputResult:
        async with tool_call(ctx) as call:
            return await call.desktop.input_action(
                call.conversation,
                session_id,
                action,
                x=x,
                y=y,
                to_x=to_x,
                to_y=to_y,
                button=button,
                count=count,
                direction=direction,
                amount=amount,
                text=text,
                keys=keys,
            )
