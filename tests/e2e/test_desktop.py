"""Desktop tools through the MCP protocol, on real Xvfb + openbox inside real sandboxes, driving xterm."""

from __future__ import annotations

import base64
import functools
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp_types import ImageContent
from PIL import Image

from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.answers import unpack
from agentbay_mcp.testing.calls import call, call_error, structured
from agentbay_mcp.testing.desktop import new_desktop_session, start_xterm, window_titles
from agentbay_mcp.testing.host import processes_in, sandbox_namespace
from agentbay_mcp.testing.waiting import until, wait_until

pytestmark = pytest.mark.anyio

SCREEN = (1280, 800)


@pytest.fixture
async def desk(settings: Settings) -> AsyncIterator[Client]:
    """One client (the desktop's behaviour does not depend on the protocol era; one test covers both)."""
    async with Client(build_server(settings), mode="legacy") as connected:
        yield connected


async def read_text(client: Client, session_id: str, path: str) -> str | None:
    result = await client.call_tool("read_file", {"session_id": session_id, "path": path})
    return None if result.is_error else str(unpack("read_file", result)["content"])


async def test_window_lifecycle_with_verified_geometry_and_states(desk: Client) -> None:
    session_id = await new_desktop_session(desk)
    started = await start_xterm(desk, session_id, "lifecycle")
    window = started["window"]
    assert window["pid"] in [p["pid"] for p in started["processes"]]
    assert window["pname"] == "xterm"
    assert any(p["pname"] == "xterm" for p in started["processes"])
    window_id = window["window_id"]

    maximized = await call(desk, "control_window", session_id=session_id, window_id=window_id, action="maximize")
    assert maximized["verified"] is True
    geometry = maximized["window"]
    assert (geometry["x"], geometry["y"], geometry["width"], geometry["height"]) == (0, 0, *SCREEN)
    assert geometry["state"] == "maximized"

    minimized = await call(desk, "control_window", session_id=session_id, window_id=window_id, action="minimize")
    assert minimized["verified"] is True
    assert minimized["window"]["state"] == "minimized"
    listed = await call(desk, "list_windows", session_id=session_id)
    assert [w["state"] for w in listed["windows"] if w["window_id"] == window_id] == ["minimized"]
    assert listed["truncated"] is False

    restored = await call(desk, "control_window", session_id=session_id, window_id=window_id, action="restore")
    assert restored["verified"] is True
    assert restored["window"]["state"] == "normal"
    assert restored["window"]["width"] < SCREEN[0]

    resized = await call(
        desk, "control_window", session_id=session_id, window_id=window_id, action="resize", width=640, height=420
    )
    assert resized["verified"] is True
    # xterm sizes in character cells (6x13 here): the outer size is within one cell of the request.
    assert abs(resized["window"]["width"] - 640) < 7
    assert abs(resized["window"]["height"] - 420) < 14

    full = await call(desk, "control_window", session_id=session_id, window_id=window_id, action="fullscreen")
    assert full["verified"] is True
    assert (full["window"]["width"], full["window"]["height"]) == SCREEN

    active = await call(desk, "get_active_window", session_id=session_id)
    assert active["window"]["window_id"] == window_id

    closed = await call(desk, "control_window", session_id=session_id, window_id=window_id, action="close")
    assert closed == {
        "window_id": window_id,
        "action": "close",
        "verified": True,
        "closed": True,
        "window": None,
        "note": "",
    }
    assert "lifecycle" not in await window_titles(desk, session_id)


async def test_typing_and_key_combinations_reach_the_app(desk: Client) -> None:
    session_id = await new_desktop_session(desk)
    window_id = (await start_xterm(desk, session_id, "typing"))["window"]["window_id"]
    await call(desk, "control_window", session_id=session_id, window_id=window_id, action="activate")

    typed = await call(desk, "input_action", session_id=session_id, action="type", text="echo typed-ok-é > out.txt\n")
    assert typed["action"] == "type"

    async def written() -> bool:
        return await read_text(desk, session_id, "out.txt") == "typed-ok-é\n"

    assert await until(written), await read_text(desk, session_id, "out.txt")

    # A key combination: ctrl+d at the shell prompt ends the shell, and xterm closes with it.
    await call(desk, "input_action", session_id=session_id, action="keys", keys=["ctrl", "d"])

    async def gone() -> bool:
        return "typing" not in await window_titles(desk, session_id)

    assert await until(gone)


async def test_mouse_click_and_drag_are_delivered(desk: Client) -> None:
    session_id = await new_desktop_session(desk)
    await start_xterm(desk, session_id, "mouse")
    moved = await call(desk, "input_action", session_id=session_id, action="move", x=100, y=120)
    assert (moved["pointer_x"], moved["pointer_y"]) == (100, 120)
    clicked = await call(desk, "input_action", session_id=session_id, action="click", x=300, y=200, button="left")
    assert (clicked["pointer_x"], clicked["pointer_y"]) == (300, 200)
    dragged = await call(desk, "input_action", session_id=session_id, action="drag", x=10, y=10, to_x=400, to_y=300)
    assert (dragged["pointer_x"], dragged["pointer_y"]) == (400, 300)
    scrolled = await call(desk, "input_action", session_id=session_id, action="scroll", x=50, y=60, direction="up")
    assert (scrolled["pointer_x"], scrolled["pointer_y"]) == (50, 60)


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
async def test_screenshot_is_a_real_image_of_the_screen(settings: Settings, era: str) -> None:
    async with Client(build_server(settings), mode=era) as client:
        session_id = await new_desktop_session(client)
        blank = await client.call_tool("take_screenshot", {"session_id": session_id})
        await start_xterm(client, session_id, "shot")
        result = await client.call_tool("take_screenshot", {"session_id": session_id})
        info = structured(result)
        image_block = next(b for b in result.content if isinstance(b, ImageContent))
        assert image_block.mime_type == "image/png"
        data = base64.b64decode(image_block.data)
        assert len(data) == info["bytes"] < 1_000_000
        image = Image.open(io.BytesIO(data))
        assert image.format == "PNG"
        assert image.size == SCREEN == (info["width"], info["height"])
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or []) > 2  # xterm: not one flat colour
        blank_block = next(b for b in blank.content if isinstance(b, ImageContent))
        assert blank_block.data != image_block.data  # the window shows up in the picture

        small = await client.call_tool(
            "take_screenshot", {"session_id": session_id, "format": "jpeg", "max_width": 640}
        )
        small_info = unpack("take_screenshot", small)  # scaled is in the text
        jpeg = Image.open(
            io.BytesIO(base64.b64decode(next(b for b in small.content if isinstance(b, ImageContent)).data))
        )
        assert jpeg.format == "JPEG"
        assert jpeg.size == (640, 400)
        assert small_info["scaled"] is True
        assert (small_info["screen_width"], small_info["screen_height"]) == SCREEN


async def test_two_sessions_desktops_are_isolated(desk: Client) -> None:
    session_a = await new_desktop_session(desk)
    session_b = await new_desktop_session(desk)
    window_a = (await start_xterm(desk, session_a, "only-in-a"))["window"]["window_id"]
    await start_xterm(desk, session_b, "only-in-b")

    assert await window_titles(desk, session_b) == ["only-in-b"]
    assert await window_titles(desk, session_a) == ["only-in-a"]
    # A's window id means nothing on B's display: either no such window, or one of B's own.
    result = await desk.call_tool("control_window", {"session_id": session_b, "window_id": window_a, "action": "close"})
    if not result.is_error:
        assert await window_titles(desk, session_b) == []  # it closed B's own window, which had that id
    assert await window_titles(desk, session_a) == ["only-in-a"]
    # B cannot see A's X socket or processes at all: one display socket, none of A's processes.
    listing = await call(desk, "execute_command", session_id=session_b, command="ls -m /tmp/.X11-unix; ps -eo args")
    assert listing["stdout"].splitlines()[0] == "X0"
    assert "only-in-a" not in listing["stdout"]


async def test_another_conversation_cannot_touch_the_desktop(settings: Settings) -> None:
    server = build_server(settings)
    async with Client(server, mode="legacy") as owner, Client(server, mode="legacy") as other:
        session_id = await new_desktop_session(owner)
        await start_xterm(owner, session_id, "private")
        for tool, arguments in (
            ("list_windows", {}),
            ("take_screenshot", {}),
            ("input_action", {"action": "type", "text": "x"}),
            ("stop_app", {"pname": "xterm"}),
        ):
            assert "not found" in await call_error(other, tool, session_id=session_id, **arguments)
        assert await window_titles(owner, session_id) == ["private"]


async def test_deleting_the_session_leaves_no_display_process(desk: Client, state_dir: Path) -> None:
    session_id = await new_desktop_session(desk)
    await start_xterm(desk, session_id, "doomed")
    namespace = sandbox_namespace(state_dir, session_id)
    running = processes_in(namespace)
    assert {"Xvfb", "openbox", "xterm"} <= set(running), running
    await call(desk, "delete_session", session_id=session_id)
    assert wait_until(lambda: processes_in(namespace) == [], timeout=5), processes_in(namespace)


async def test_code_image_has_no_desktop(desk: Client) -> None:
    session_id = str((await call(desk, "create_session", image_id="code_latest"))["session_id"])
    for tool, arguments in (("list_windows", {}), ("take_screenshot", {}), ("start_app", {"start_cmd": "xterm"})):
        message = await call_error(desk, tool, session_id=session_id, **arguments)
        assert "no desktop" in message
        assert "linux_latest" in message


async def test_bad_input_gets_clear_errors_and_the_desktop_stays_usable(desk: Client) -> None:
    session_id = await new_desktop_session(desk)
    window_id = (await start_xterm(desk, session_id, "steady"))["window"]["window_id"]

    def errors(tool: str, **arguments: Any) -> Any:
        return call_error(desk, tool, session_id=session_id, **arguments)

    assert "no window 123456" in (await errors("control_window", window_id=123456, action="maximize")).lower()
    assert "width and height" in await errors("control_window", window_id=window_id, action="resize", width=10)
    assert "not found" in await errors("start_app", start_cmd="no-such-app-anywhere")
    exited = await errors("start_app", start_cmd="sh -c 'echo broken >&2; exit 3'")
    assert "exited at once (code 3)" in exited
    assert "broken" in exited
    assert "exactly one" in await errors("stop_app", pid=5, pname="xterm")
    assert "exactly one" in await errors("stop_app")
    assert "cannot be stopped" in await errors("stop_app", pid=1)
    assert "no process named" in await errors("stop_app", pname="nothing-like-this")
    assert "unknown key" in (await errors("input_action", action="keys", keys=["ctrl", "nokey"])).lower()
    assert "off the" in await errors("input_action", action="click", x=5000, y=10)
    assert "needs x, y" in await errors("input_action", action="move")
    assert "needs text" in await errors("input_action", action="type")
    # Nothing above broke the session's desktop.
    assert await window_titles(desk, session_id) == ["steady"]


async def test_stop_app_by_pid_name_and_command(desk: Client) -> None:
    session_id = await new_desktop_session(desk)
    first = await start_xterm(desk, session_id, "by-pid", "-e sleep 600")
    pid = first["window"]["pid"]
    stopped = await call(desk, "stop_app", session_id=session_id, pid=pid)
    names = sorted(p["pname"] for p in stopped["stopped"])
    assert names == ["sleep", "xterm"]  # the whole tree

    await start_xterm(desk, session_id, "by-name-1")
    await start_xterm(desk, session_id, "by-name-2")
    stopped = await call(desk, "stop_app", session_id=session_id, pname="xterm")
    assert [p["pname"] for p in stopped["stopped"]].count("xterm") == 2

    await start_xterm(desk, session_id, "by-cmd")
    by_cmd = await call(desk, "stop_app", session_id=session_id, stop_cmd="pkill -x xterm")
    assert by_cmd["stop_cmd_exit_code"] == 0

    async def no_windows() -> bool:
        return await window_titles(desk, session_id) == []

    assert await until(no_windows)
    # The desktop itself survived all of it.
    assert (await call(desk, "list_windows", session_id=session_id))["windows"] == []


async def test_installed_and_visible_apps(desk: Client) -> None:
    session_id = await new_desktop_session(desk)
    entry = "[Desktop Entry]\nType=Application\nName=My Tool\nExec=xterm -T mytool %F\nPath=/tmp\n"
    await call(
        desk, "write_file", session_id=session_id, path=".local/share/applications/mytool.desktop", content=entry
    )
    hidden = "[Desktop Entry]\nType=Application\nName=Hidden\nExec=true\nNoDisplay=true\n"
    await call(
        desk, "write_file", session_id=session_id, path=".local/share/applications/hidden.desktop", content=hidden
    )

    apps = (await call(desk, "get_installed_apps", session_id=session_id))["apps"]
    mine = next(a for a in apps if a["name"] == "My Tool")
    assert mine["start_cmd"] == "xterm -T mytool"  # field codes dropped
    assert mine["work_directory"] == "/tmp"
    assert any(a["start_cmd"].startswith("xterm") and a["name"] != "My Tool" for a in apps)  # Debian's XTerm
    assert "Hidden" not in [a["name"] for a in apps]
    with_system = (await call(desk, "get_installed_apps", session_id=session_id, include_system=True))["apps"]
    assert "Hidden" in [a["name"] for a in with_system]

    started = await call(desk, "start_app", session_id=session_id, start_cmd=mine["start_cmd"], work_directory="/tmp")
    assert started["window"]["title"] == "mytool"
    visible = (await call(desk, "list_visible_apps", session_id=session_id))["apps"]
    assert [(a["pname"], a["window_ids"]) for a in visible] == [("xterm", [started["window"]["window_id"]])]
    await call(
        desk, "control_window", session_id=session_id, window_id=started["window"]["window_id"], action="minimize"
    )
    assert (await call(desk, "list_visible_apps", session_id=session_id))["apps"] == []


async def test_focus_mode_keeps_the_focus_on_the_locked_window(desk: Client) -> None:
    session_id = await new_desktop_session(desk)
    locked = (await start_xterm(desk, session_id, "locked"))["window"]["window_id"]
    await call(desk, "control_window", session_id=session_id, window_id=locked, action="activate")
    mode = await call(desk, "set_focus_mode", session_id=session_id, on=True)
    assert mode["on"] is True
    assert mode["window_id"] == locked
    # What focus mode does is said once, in the tool's description, not in every answer.
    described = {tool.name: tool.description for tool in (await desk.list_tools()).tools}["set_focus_mode"]
    assert "keeps the focus" in (described or "")

    intruder = (await start_xterm(desk, session_id, "intruder"))["window"]["window_id"]
    await call(desk, "input_action", session_id=session_id, action="click", x=5, y=5)  # clicks elsewhere, too

    async def focus_on(window_id: int) -> bool:
        await anyio.sleep(0.2)  # give a focus change the chance to happen and be undone
        active = await call(desk, "get_active_window", session_id=session_id)
        return bool(active["window"]) and active["window"]["window_id"] == window_id

    assert await until(lambda: focus_on(locked))

    # Activating another window moves the lock; turning the mode off frees the focus.
    await call(desk, "control_window", session_id=session_id, window_id=intruder, action="activate")
    assert await until(lambda: focus_on(intruder))
    assert (await call(desk, "set_focus_mode", session_id=session_id, on=False))["on"] is False
    activated = await call(desk, "control_window", session_id=session_id, window_id=locked, action="activate")
    assert activated["verified"] is True


async def test_a_stopped_x_server_times_out_instead_of_hanging(desk: Client) -> None:
    session_id = await new_desktop_session(desk)
    other = await new_desktop_session(desk)
    await call(desk, "list_windows", session_id=session_id)
    stopped = await call(
        desk, "execute_command", session_id=session_id, command="pkill -STOP -x Xvfb; ps -o stat= -C Xvfb"
    )
    assert stopped["stdout"].startswith("T"), stopped
    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            # While one session's X server is wedged, the server keeps answering for others.
            group.start_soon(functools.partial(call, desk, "list_windows", session_id=other))
            message = await call_error(desk, "list_windows", session_id=session_id)
    assert "did not answer" in message
    await call(desk, "execute_command", session_id=session_id, command="pkill -CONT -x Xvfb")
    assert (await call(desk, "list_windows", session_id=session_id))["windows"] == []


async def test_missing_window_manager_is_a_clear_error(state_dir: Path) -> None:
    settings = Settings(state_dir=state_dir, window_manager="no-such-window-manager")
    async with Client(build_server(settings), mode="legacy") as client:
        session_id = await new_desktop_session(client)
        message = await call_error(client, "list_windows", session_id=session_id)
        assert "no-such-window-manager" in message
        assert "apt install openbox" in message
        # The session itself is fine: commands still run.
        assert (await call(client, "execute_command", session_id=session_id, command="echo ok"))["stdout"] == "ok\n"
