"""A session's own commands abusing its desktop: huge titles and a thousand windows, the X socket and
the Xauthority file deleted, overwritten or replaced, and a session deleted while a desktop call runs.
Real MCP tools on real sandboxes with Xvfb + openbox; each test fails if its protection were missing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import call, call_error, error_text
from agentbay_mcp.testing.desktop import new_desktop_session, start_xterm, window_titles
from agentbay_mcp.testing.host import sandbox_namespace
from tests.security import desktop_attacks as attacks

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


# 5. Resource abuse by an application ------------------------------------------------------------

HUGE_TITLE = """
w = d.screen().root.create_window(0, 0, 200, 100, 0, X.CopyFromParent)
chunk = ('big-' + 'x' * 199_996).encode()
for atom, kind in ((d.intern_atom('_NET_WM_NAME'), d.intern_atom('UTF8_STRING')), (Xatom.WM_NAME, Xatom.STRING)):
    w.change_property(atom, kind, 8, b'')
    for _ in range(26):  # 5.2 MB, appended in requests under the core protocol's size limit
        w.change_property(atom, kind, 8, chunk, X.PropModeAppend)
w.map(); d.sync()
print('mapped', flush=True)
import time; time.sleep(120)
"""


async def test_a_five_megabyte_window_title_is_capped(settings: Settings) -> None:
    async with attacks.serve(settings) as client:
        session_id = await new_desktop_session(client)
        with anyio.fail_after(20):
            started = await call(
                client, "start_app", session_id=session_id, start_cmd=attacks.x_client(HUGE_TITLE), wait_ms=15_000
            )
        assert started["window"] is not None
        assert len(started["window"]["title"]) == 1024
        for _ in range(3):
            began = time.monotonic()
            listed = await call(client, "list_windows", session_id=session_id)
            assert time.monotonic() - began < 2
            (window,) = listed["windows"]
            assert window["title"] == "big-" + "x" * 1020


MANY_WINDOWS = """
root = d.screen().root
for i in range(1000):
    w = root.create_window(i % 600, i % 400, 50, 50, 0, X.CopyFromParent)
    w.set_wm_name(f'flood-{i}')
    w.set_wm_normal_hints(flags=3, x=i % 600, y=i % 400)  # USPosition | USSize: openbox places nothing
    w.map()
d.sync()
import time
clients = d.intern_atom('_NET_CLIENT_LIST')
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    prop = root.get_full_property(clients, 0)
    if prop is not None and len(prop.value) >= 1000:
        break
    time.sleep(0.05)
print('managed', len(prop.value), flush=True)
time.sleep(120)
"""


async def test_a_thousand_windows_are_listed_fast_and_capped(settings: Settings) -> None:
    async with attacks.serve(settings) as client:
        session_id = await new_desktop_session(client)
        await window_titles(client, session_id)
        flood = await attacks.start_background(client, session_id, attacks.x_client(MANY_WINDOWS))
        output = await attacks.wait_for_output(client, session_id, flood, "managed", timeout=40)
        assert "managed 1000" in output
        for _ in range(3):
            began = time.monotonic()
            listed = await call(client, "list_windows", session_id=session_id)
            assert time.monotonic() - began < 2
            # The newest 200 (in the window manager's mapping order).
            assert [w["title"] for w in listed["windows"]] == [f"flood-{i}" for i in range(800, 1000)]
            assert listed["truncated"] is True


# 6. Tampering with the desktop's files ----------------------------------------------------------


async def test_deleting_the_x_socket(settings: Settings, state_dir: Path) -> None:
    async with attacks.serve(settings) as client, attacks.desktop_session(client, state_dir) as session_id:
        await start_xterm(client, session_id, "connected")
        await attacks.run(client, session_id, f"rm -f {attacks.SOCKET}")
        # The agent's connection is already open: the desktop keeps answering.
        assert await window_titles(client, session_id) == ["connected"]
        # A new application cannot connect: a clear error, not a hang.
        with anyio.fail_after(15):
            message = await call_error(client, "start_app", session_id=session_id, start_cmd="xterm -T orphan")
        assert "exited at once" in message
        assert ":0" in message
        # Killing the display brings up a fresh one, with a socket again.
        await attacks.run(client, session_id, attacks.kill_9("Xvfb"))
        with anyio.fail_after(30):
            await attacks.desktop_answers(client, session_id)
        await start_xterm(client, session_id, "reconnected")


async def test_overwriting_the_xauthority_file(settings: Settings, state_dir: Path) -> None:
    async with attacks.serve(settings) as client, attacks.desktop_session(client, state_dir) as session_id:
        await start_xterm(client, session_id, "connected")
        await attacks.run(client, session_id, f"head -c 95 /dev/urandom > {attacks.XAUTHORITY}")
        assert await window_titles(client, session_id) == ["connected"]  # the agent's connection is open
        # A new application either cannot authenticate (a clear error) or, if the X server re-read the
        # file, gets in (see test_a_session_cannot_switch_off_x_authentication): never a hang.
        with anyio.fail_after(15):
            result = await client.call_tool("start_app", {"session_id": session_id, "start_cmd": "xterm -T orphan"})
        if result.is_error:
            assert "exited at once" in error_text(result)
        # A restarted display writes a fresh cookie file: new applications work again.
        await attacks.run(client, session_id, attacks.kill_9("openbox"))
        with anyio.fail_after(30):
            assert await attacks.desktop_answers(client, session_id) == []
        await start_xterm(client, session_id, "fresh-cookie")
        assert attacks.probe_x("unix", attacks.host_socket(state_dir, session_id), "") in ("reply:0", "reply:2")


async def test_a_session_cannot_switch_off_x_authentication(settings: Settings, state_dir: Path) -> None:
    async with attacks.serve(settings) as client:
        session_id = await new_desktop_session(client)
        await window_titles(client, session_id)
        path = attacks.host_socket(state_dir, session_id)
        assert attacks.probe_x("unix", path, "") in ("reply:0", "reply:2")
        # Empty the cookie file; the future mtime makes the X server's one-second change check see it.
        await attacks.run(
            client, session_id, f": > {attacks.XAUTHORITY}; touch -d @$(( $(date +%s) + 5 )) {attacks.XAUTHORITY}"
        )
        assert attacks.probe_x("unix", path, "") in ("reply:0", "reply:2")


async def test_a_display_directory_that_is_a_file_is_a_clear_error(settings: Settings, state_dir: Path) -> None:
    async with attacks.serve(settings) as client, attacks.desktop_session(client, state_dir) as session_id:
        display_dir = "/tmp/.agentbay/display"
        await attacks.run(
            client, session_id, f"rm -rf {display_dir}; echo x > {display_dir}; " + attacks.kill_9("Xvfb")
        )
        with anyio.fail_after(20):
            message = await call_error(client, "list_windows", session_id=session_id)
        assert "desktop is unavailable: cannot prepare the display's files" in message
        await attacks.run(client, session_id, f"rm {display_dir}")
        with anyio.fail_after(30):
            assert await attacks.desktop_answers(client, session_id) == []


async def test_a_fifo_in_place_of_the_xauthority_file_does_not_hang_the_agent(
    settings: Settings, state_dir: Path
) -> None:
    async with attacks.serve(settings) as client, attacks.desktop_session(client, state_dir) as session_id:
        await attacks.run(
            client, session_id, f"rm -f {attacks.XAUTHORITY}; mkfifo {attacks.XAUTHORITY}; " + attacks.kill_9("Xvfb")
        )
        with anyio.move_on_after(8) as waited:
            result = await client.call_tool("list_windows", {"session_id": session_id})
            if result.is_error:
                message = error_text(result)
                assert any(clear in message for clear in attacks.CLEAR_ERRORS), message
            # The session itself must still work.
            assert (await attacks.run(client, session_id, "echo alive", timeout_ms=2000))["stdout"] == "alive\n"
        assert not waited.cancelled_caught, "the session's agent hung"


# 7. Deleting a session while a desktop call runs ------------------------------------------------


async def test_deleting_a_session_during_start_app(settings: Settings, state_dir: Path) -> None:
    async with attacks.serve(settings) as client:
        session_id = await new_desktop_session(client)
        namespace = sandbox_namespace(state_dir, session_id)
        await window_titles(client, session_id)
        outcome: dict[str, Any] = {}

        async def start() -> None:
            began = time.monotonic()
            result = await client.call_tool(
                "start_app", {"session_id": session_id, "start_cmd": "sleep 600", "wait_ms": 5000}
            )
            outcome["result"] = result
            outcome["ended"] = time.monotonic()
            outcome["took"] = time.monotonic() - began

        with anyio.fail_after(15):
            async with anyio.create_task_group() as group:
                group.start_soon(start)
                await anyio.sleep(0.5)
                deleted_at = time.monotonic()
                await call(client, "delete_session", session_id=session_id)
                assert time.monotonic() - deleted_at < 3
        result = outcome["result"]
        assert result.is_error, result.structured_content
        assert outcome["ended"] - deleted_at < 2
        attacks.no_processes_left(namespace)
