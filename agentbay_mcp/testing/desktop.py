"""Desktop steps many tests take through the MCP tools: a desktop session, an xterm, the window titles."""

from __future__ import annotations

from typing import Any

from mcp import Client

from agentbay_mcp.testing.calls import call


async def new_desktop_session(client: Client) -> str:
    return str((await call(client, "create_session", image_id="linux_latest"))["session_id"])


async def start_xterm(client: Client, session_id: str, title: str, extra: str = "") -> dict[str, Any]:
    started = await call(client, "start_app", session_id=session_id, start_cmd=f"xterm -T {title} {extra}".strip())
    assert started["window"] is not None, started
    assert started["window"]["title"] == title
    return started


async def window_titles(client: Client, session_id: str) -> list[str]:
    return [w["title"] for w in (await call(client, "list_windows", session_id=session_id))["windows"]]
