"""Desktop tools: applications, windows, focus mode, screenshots and input (images with a desktop)."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult, ImageContent
from pydantic import Field

from agentbay_mcp.auth.scopes import ToolsetServer
from agentbay_mcp.services.desktop import models
from agentbay_mcp.tools.common import CHANGES, CREATES, READ_ONLY, REPLACES, SETS, SessionId, tool, tool_call
from agentbay_mcp.tools.text import desktop as answers

WindowId = int
Coordinate = Annotated[int | None, Field(ge=0)]


def register(mcp: ToolsetServer[Any]) -> None:
    """Add the desktop tools to `mcp`."""

    @tool(mcp, READ_ONLY, answers.INSTALLED)
    async def get_installed_apps(
        ctx: Context,
        session_id: SessionId,
        include_system: Annotated[bool, Field(description="Also hidden and settings entries.")] = False,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.desktop.get_installed_apps(call.conversation, session_id, include_system)
        return answers.INSTALLED.answer(result)

    @tool(mcp, CREATES, answers.STARTED)
    async def start_app(
        ctx: Context,
        session_id: SessionId,
        start_cmd: str,
        work_directory: str | None = None,
        wait_ms: Annotated[int | None, Field(ge=0, le=30000, description="Default 5000.")] = None,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.desktop.start_app(call.conversation, session_id, start_cmd, work_directory, wait_ms)
        return answers.STARTED.answer(result)

    @tool(mcp, REPLACES, answers.STOPPED)
    async def stop_app(
        ctx: Context,
        session_id: SessionId,
        pid: int | None = None,
        pname: str | None = None,
        stop_cmd: str | None = None,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.desktop.stop_app(call.conversation, session_id, pid, pname, stop_cmd)
        return answers.STOPPED.answer(result)

    @tool(mcp, READ_ONLY, answers.VISIBLE)
    async def list_visible_apps(ctx: Context, session_id: SessionId) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.desktop.list_visible_apps(call.conversation, session_id)
        return answers.VISIBLE.answer(result)

    @tool(mcp, READ_ONLY, answers.WINDOWS)
    async def list_windows(ctx: Context, session_id: SessionId) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.desktop.list_windows(call.conversation, session_id)
        return answers.WINDOWS.answer(result)

    @tool(mcp, READ_ONLY, answers.ACTIVE)
    async def get_active_window(ctx: Context, session_id: SessionId) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.desktop.get_active_window(call.conversation, session_id)
        return answers.ACTIVE.answer(result)

    @tool(mcp, CHANGES, answers.CONTROLLED)
    async def control_window(
        ctx: Context,
        session_id: SessionId,
        window_id: WindowId,
        action: models.WindowAction,
        width: Annotated[int | None, Field(ge=1, description="For resize: outer pixels.")] = None,
        height: Annotated[int | None, Field(ge=1)] = None,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.desktop.control_window(call.conversation, session_id, window_id, action, width, height)
        return answers.CONTROLLED.answer(result)

    @tool(mcp, SETS, answers.FOCUS)
    async def set_focus_mode(ctx: Context, session_id: SessionId, on: bool) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.desktop.set_focus_mode(call.conversation, session_id, on)
        return answers.FOCUS.answer(result)

    @tool(mcp, READ_ONLY, answers.SCREENSHOT)
    async def take_screenshot(
        ctx: Context,
        session_id: SessionId,
        format: Literal["png", "jpeg"] = "png",
        max_width: Annotated[int | None, Field(ge=16)] = None,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            image, info = await call.desktop.take_screenshot(call.conversation, session_id, format, max_width)
        data = base64.b64encode(image.data).decode()
        return answers.SCREENSHOT.answer(
            info, image=ImageContent(type="image", data=data, mime_type=f"image/{image.format}")
        )

    @tool(mcp, CHANGES, answers.INPUT)
    async def input_action(
        ctx: Context,
        session_id: SessionId,
        action: models.InputKind,
        x: Coordinate = None,
        y: Coordinate = None,
        to_x: Coordinate = None,
        to_y: Coordinate = None,
        button: Literal["left", "middle", "right"] | None = None,
        count: Annotated[int | None, Field(ge=1, le=3, description="2 = double click.")] = None,
        direction: Literal["up", "down", "left", "right"] | None = None,
        amount: Annotated[int | None, Field(ge=1, le=100)] = None,
        text: str | None = None,
        keys: list[str] | None = None,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.desktop.input_action(
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
        return answers.INPUT.answer(result)
