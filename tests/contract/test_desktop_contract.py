"""The desktop part of the `SandboxBackend` contract (primitives only: the service checks effects)."""

from __future__ import annotations

import pytest

from agentbay_mcp.backends.protocols import Desktop, SandboxBackend
from agentbay_mcp.backends.records_desktop import AppProcess
from agentbay_mcp.errors import InvalidArgumentError, WindowNotFoundError
from agentbay_mcp.testing.waiting import until
from tests.contract.test_backend_contract import backend, requires  # noqa: F401 - the parametrized fixture

pytestmark = pytest.mark.anyio


def desktop_of(backend: SandboxBackend) -> Desktop:  # noqa: F811
    """The backend's desktop; skips the test on a backend that declares none."""
    requires(backend, "desktop")
    assert backend.desktop is not None
    return backend.desktop


async def test_a_fresh_desktop_has_no_windows_and_a_screen(backend: SandboxBackend) -> None:  # noqa: F811
    desktop = desktop_of(backend)
    record = await backend.create_session(image_id="linux_latest", labels={}, owner="c")
    listed = await desktop.list_windows(record.session_id)
    assert listed.windows == []
    assert listed.screen_width > 0
    assert listed.screen_height > 0
    shot = await desktop.screenshot(record.session_id)
    assert (shot.width, shot.height) == (listed.screen_width, listed.screen_height)
    assert shot.data
    assert await desktop.active_window(record.session_id) is None


async def test_an_app_window_can_be_found_driven_and_closed(backend: SandboxBackend) -> None:  # noqa: F811
    desktop = desktop_of(backend)
    session_id = (await backend.create_session(image_id="linux_latest", labels={}, owner="c")).session_id
    launch = await desktop.launch_app(session_id, "xterm -T contract", None)
    assert launch.windows_before == []

    async def has_window() -> bool:
        return (await desktop.app_status(session_id, launch)).window is not None

    assert await until(has_window)
    status = await desktop.app_status(session_id, launch)
    assert status.window is not None
    window_id = status.window.window_id
    assert status.window.title == "contract"
    assert status.window.pname == "xterm"
    assert status.window.pid in [p.pid for p in status.processes]

    screen = await desktop.list_windows(session_id)
    await desktop.window_action(session_id, window_id, "maximize", None, None)

    async def maximized() -> bool:  # by geometry: not every backend reports window states
        window = (await desktop.window_detail(session_id, window_id)).window
        return (window.width, window.height) == (screen.screen_width, screen.screen_height)

    assert await until(maximized)
    assert (await desktop.window_detail(session_id, window_id)).window.state in ("maximized", "unknown")
    # A backend declares whether it reports window states; the service relies on that, not on "unknown".
    expected = "maximized" if backend.capabilities.window_states else "unknown"
    assert (await desktop.window_detail(session_id, window_id)).window.state == expected
    moved = await desktop.input_action(session_id, {"action": "move", "x": 10, "y": 20})
    assert (moved.pointer_x, moved.pointer_y) == (10, 20)
    assert [a.pname for a in await desktop.visible_apps(session_id)] == ["xterm"]

    await desktop.window_action(session_id, window_id, "close", None, None)

    async def closed() -> bool:
        try:
            await desktop.window_detail(session_id, window_id)
        except WindowNotFoundError:
            return True
        return False

    assert await until(closed)


async def test_unknown_windows_and_stopping_apps(backend: SandboxBackend) -> None:  # noqa: F811
    desktop = desktop_of(backend)
    session_id = (await backend.create_session(image_id="linux_latest", labels={}, owner="c")).session_id
    with pytest.raises(WindowNotFoundError):
        await desktop.window_detail(session_id, 4242)
    launch = await desktop.launch_app(session_id, "exec sleep 300", None)
    stopped: list[AppProcess] = []

    async def stopped_once_exec_done() -> bool:  # the shell becomes sleep when it has exec'd
        nonlocal stopped
        try:
            stopped = (await desktop.stop_app(session_id, pid=None, pname="sleep", stop_cmd=None)).stopped
        except InvalidArgumentError:
            return False
        return True

    assert await until(stopped_once_exec_done)
    assert [(p.pid, p.pname) for p in stopped] == [(launch.pid, "sleep")]

    async def gone() -> bool:  # SIGTERM was sent; the process ends a moment later (SIGKILL after 1 s)
        try:
            await desktop.stop_app(session_id, pid=None, pname="sleep", stop_cmd=None)
        except InvalidArgumentError:
            return True
        return False

    assert await until(gone)
    apps = await desktop.installed_apps(session_id, include_system=True)
    assert all(app.start_cmd for app in apps)
