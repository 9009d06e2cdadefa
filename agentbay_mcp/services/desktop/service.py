"""DesktopService: the desktop tools' rules over any backend. Never imports mcp.

Checks that the session's image has a desktop, validates input, waits for an application's window
and checks every window action's effect (backends only send requests), and encodes screenshots
under the size budget. The display itself starts lazily in the backend on the first call.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal, get_args

import anyio

from agentbay_mcp.backends import records_desktop
from agentbay_mcp.backends.protocols import Desktop, Processes
from agentbay_mcp.backends.records import Capabilities
from agentbay_mcp.backends.records_desktop import AppLaunch, WindowDetail
from agentbay_mcp.errors import DesktopUnavailableError, InvalidArgumentError, WindowNotFoundError
from agentbay_mcp.services.desktop.models import (
    ActiveWindow,
    AppStarted,
    AppStopped,
    FocusMode,
    InputKind,
    InputResult,
    InstalledApps,
    ScreenshotInfo,
    VisibleApps,
    WindowAction,
    WindowControlResult,
    WindowList,
)
from agentbay_mcp.services.model_base import from_records
from agentbay_mcp.services.session_paths import session_path
from agentbay_mcp.services.sessions.service import SessionService

if TYPE_CHECKING:
    from agentbay_mcp.services.desktop.screenshot_encoding import EncodedImage

VERIFY_SECONDS = 3.0
POLL_SECONDS = 0.02
MAX_APP_WAIT_MS = 30_000
MAX_TEXT_CHARS = 10_000
MAX_KEYS = 8
MAX_SIZE = 16_384
#: Resize tolerance where the backend reports no size steps (AgentBay): a large terminal cell.
UNKNOWN_SIZE_STEP = 32
_COMMAND_NOT_FOUND = 127
_EXPECTED_STATE = {"maximize": "maximized", "minimize": "minimized", "restore": "normal", "fullscreen": "fullscreen"}


def _tail(data: bytes, limit: int = 500) -> str:
    return data.decode("utf-8", "replace").strip()[-limit:]


class DesktopService:
    """Apps, windows, focus, screenshots and input of desktop sessions."""

    def __init__(
        self,
        sessions: SessionService,
        desktop: Desktop | None,
        processes: Processes,
        capabilities: Capabilities,
        *,
        app_wait_ms: int = 5_000,
    ) -> None:
        self.sessions = sessions
        #: None on a backend without a desktop (every tool refuses).
        self.desktop = desktop
        #: For an app's process, where the backend has process handles.
        self.processes = processes
        self.capabilities = capabilities
        self.app_wait_ms = app_wait_ms

    @asynccontextmanager
    async def _desktop(self, conversation: str, session_id: str) -> AsyncIterator[Desktop]:
        async with self.sessions.in_use(conversation, session_id) as record:
            if self.desktop is None:
                raise DesktopUnavailableError(
                    self.capabilities.unsupported.get("desktop", "This backend has no desktop: shell and files only.")
                )
            images = {image.image_id: image for image in self.sessions.backend.images()}
            image = images.get(record.image_id)
            if image is not None and not image.desktop:
                with_desktop = [i.image_id for i in images.values() if i.desktop]
                raise DesktopUnavailableError(
                    f"Session {session_id} runs image {record.image_id!r}, which has no desktop (shell and files "
                    f"only). For apps, windows and screenshots create a session with image_id "
                    f"{with_desktop[0] if with_desktop else 'linux_latest'!r}."
                )
            yield self.desktop

    # ---- apps --------------------------------------------------------------------------------

    async def get_installed_apps(self, conversation: str, session_id: str, include_system: bool) -> InstalledApps:
        """Applications from the session's `.desktop` entries."""
        async with self._desktop(conversation, session_id) as desktop:
            return from_records(InstalledApps, {"apps": await desktop.installed_apps(session_id, include_system)})

    async def start_app(
        self, conversation: str, session_id: str, start_cmd: str, work_directory: str | None, wait_ms: int | None
    ) -> AppStarted:
        """Start an application; wait (up to wait_ms) for its window, or fail if it exits at once."""
        if not isinstance(start_cmd, str) or not start_cmd.strip() or "\0" in start_cmd:
            raise InvalidArgumentError("start_cmd must be a non-empty command, e.g. 'xterm' (see get_installed_apps)")
        cwd = session_path(work_directory, "work_directory") if work_directory else None
        wait = self.app_wait_ms if wait_ms is None else wait_ms
        if not 0 <= wait <= MAX_APP_WAIT_MS:
            raise InvalidArgumentError(f"wait_ms must be between 0 and {MAX_APP_WAIT_MS}")
        async with self._desktop(conversation, session_id) as desktop:
            launch = await desktop.launch_app(session_id, start_cmd, cwd)
            return await self._await_window(desktop, session_id, start_cmd, launch, wait / 1000)

    async def _await_window(
        self, desktop: Desktop, session_id: str, start_cmd: str, launch: AppLaunch, wait: float
    ) -> AppStarted:
        # Without process handles (AgentBay) the window is all there is to wait for.
        proc_id = launch.proc_id if self.capabilities.process_handles else None
        deadline = time.monotonic() + wait
        exited_ok = False
        while True:
            status = await desktop.app_status(session_id, launch)
            if status.window is not None:
                started = {"proc_id": proc_id, "processes": status.processes, "window": status.window}
                return from_records(AppStarted, started)
            if proc_id is None:
                if not launch.processes:
                    raise InvalidArgumentError(
                        f"The application was not found or exited at once: {start_cmd!r} started no process. "
                        "Check the command with get_installed_apps or execute_command."
                    )
                if time.monotonic() >= deadline:
                    break
                await anyio.sleep(POLL_SECONDS)
                continue
            info = await self.processes.wait_process(session_id, proc_id, 0)
            if not info.running and info.exit_code != 0 and not status.processes:
                summary = await self.processes.process_output_summary(session_id, proc_id, 2000)
                stderr = _tail(summary.streams["stderr"].tail or summary.streams["stderr"].head)
                what = (
                    "was not found"
                    if info.exit_code == _COMMAND_NOT_FOUND
                    else f"exited at once (code {info.exit_code})"
                )
                raise InvalidArgumentError(
                    f"The application {what}: {start_cmd!r}{': ' + stderr if stderr else ''}. "
                    "Check the command with get_installed_apps or execute_command."
                )
            exited_ok = exited_ok or not info.running
            if time.monotonic() >= deadline:
                break
            await anyio.sleep(POLL_SECONDS)
        if exited_ok and not status.processes:
            note = "The command exited (code 0) without a window of its own; call list_windows to see if one appeared."
        elif proc_id is None:
            note = f"No window appeared within {wait:.1f} s; call list_windows later, or take_screenshot to look."
        else:
            note = (
                f"No window appeared within {wait:.1f} s; call list_windows later, or read_process_output for errors."
            )
        started = {"proc_id": proc_id, "processes": status.processes, "window": None, "note": note}
        return from_records(AppStarted, started)

    async def stop_app(
        self, conversation: str, session_id: str, pid: int | None, pname: str | None, stop_cmd: str | None
    ) -> AppStopped:
        """Stop by exactly one of pid (its tree), pname (every such process's tree) or stop_cmd (run it)."""
        given = [name for name, value in (("pid", pid), ("pname", pname), ("stop_cmd", stop_cmd)) if value is not None]
        if len(given) != 1:
            raise InvalidArgumentError("Pass exactly one of pid, pname or stop_cmd.")
        if pid is not None and not 0 < pid < 2**22:
            raise InvalidArgumentError("pid must be a process id from start_app or list_visible_apps")
        if pname is not None and (not pname.strip() or len(pname) > 255):
            raise InvalidArgumentError("pname must be a process name such as 'xterm'")
        if stop_cmd is not None and (not stop_cmd.strip() or "\0" in stop_cmd):
            raise InvalidArgumentError("stop_cmd must be a non-empty command")
        async with self._desktop(conversation, session_id) as desktop:
            stopped = await desktop.stop_app(session_id, pid=pid, pname=pname, stop_cmd=stop_cmd)
        return from_records(AppStopped, stopped)

    async def list_visible_apps(self, conversation: str, session_id: str) -> VisibleApps:
        """Processes that own a visible window."""
        async with self._desktop(conversation, session_id) as desktop:
            return from_records(VisibleApps, {"apps": await desktop.visible_apps(session_id)})

    # ---- windows -----------------------------------------------------------------------------

    async def list_windows(self, conversation: str, session_id: str) -> WindowList:
        """Top-level windows."""
        async with self._desktop(conversation, session_id) as desktop:
            return from_records(WindowList, await desktop.list_windows(session_id))

    async def get_active_window(self, conversation: str, session_id: str) -> ActiveWindow:
        """The focused window."""
        async with self._desktop(conversation, session_id) as desktop:
            return from_records(ActiveWindow, {"window": await desktop.active_window(session_id)})

    async def control_window(
        self,
        conversation: str,
        session_id: str,
        window_id: int,
        action: WindowAction,
        width: int | None,
        height: int | None,
    ) -> WindowControlResult:
        """Ask for an action, then check the window until it took effect (or report that it did not)."""
        if action not in get_args(WindowAction):
            raise InvalidArgumentError(f"action must be one of {', '.join(get_args(WindowAction))}")
        if action == "resize" and (
            width is None or height is None or not (1 <= width <= MAX_SIZE and 1 <= height <= MAX_SIZE)
        ):
            raise InvalidArgumentError(f"resize needs width and height between 1 and {MAX_SIZE} pixels")
        async with self._desktop(conversation, session_id) as desktop:
            await desktop.window_detail(session_id, window_id)  # WindowNotFoundError before acting
            await desktop.window_action(session_id, window_id, action, width, height)
            deadline = time.monotonic() + VERIFY_SECONDS
            previous = None
            while True:
                try:
                    detail = await desktop.window_detail(session_id, window_id)
                except WindowNotFoundError:
                    if action == "close":
                        return WindowControlResult(
                            window_id=window_id, action=action, verified=True, closed=True, window=None
                        )
                    raise
                if not self.capabilities.window_states and action in _EXPECTED_STATE:
                    return self._control_result(
                        window_id,
                        action,
                        verified=False,
                        window=detail.window,
                        note="This backend does not report window states: take_screenshot to check the result.",
                    )
                # The window manager updates state and geometry separately: done once the state is right
                # and the window held still for one poll.
                if self._took_effect(detail, action, width, height) and detail.window == previous:
                    return self._control_result(window_id, action, verified=True, window=detail.window)
                previous = detail.window
                if time.monotonic() >= deadline:
                    break
                await anyio.sleep(POLL_SECONDS)
        note = f"The window did not reach the requested result within {VERIFY_SECONDS:.0f} s; it is shown as it is now."
        if action == "close":
            note = "The window is still open: the application may be asking for confirmation (take_screenshot to see)."
        return self._control_result(window_id, action, verified=False, window=detail.window, note=note)

    @staticmethod
    def _control_result(
        window_id: int, action: WindowAction, *, verified: bool, window: records_desktop.WindowInfo, note: str = ""
    ) -> WindowControlResult:
        result = {"window_id": window_id, "action": action, "verified": verified, "window": window, "note": note}
        return from_records(WindowControlResult, result)

    def _took_effect(self, detail: WindowDetail, action: str, width: int | None, height: int | None) -> bool:
        window = detail.window
        if action == "activate":
            return detail.active and window.state != "minimized"
        if action == "resize":
            assert width is not None
            assert height is not None
            step_w, step_h = detail.size_increments
            if not self.capabilities.window_states:  # such backends report no size steps either: a large cell
                step_w, step_h = max(step_w, UNKNOWN_SIZE_STEP), max(step_h, UNKNOWN_SIZE_STEP)
            # Applications with size steps (a terminal's character cell) get the nearest size they allow.
            return abs(window.width - width) < max(step_w, 2) and abs(window.height - height) < max(step_h, 2)
        if action == "close":
            return False
        return window.state == _EXPECTED_STATE[action]

    async def set_focus_mode(self, conversation: str, session_id: str, on: bool) -> FocusMode:
        """Turn focus mode on or off."""
        async with self._desktop(conversation, session_id) as desktop:
            return from_records(FocusMode, await desktop.set_focus_mode(session_id, bool(on)))

    # ---- screen and input --------------------------------------------------------------------

    async def take_screenshot(
        self, conversation: str, session_id: str, fmt: Literal["png", "jpeg"], max_width: int | None
    ) -> tuple[EncodedImage, ScreenshotInfo]:
        """The screen as PNG or JPEG, scaled to max_width and always under 1 MB."""
        if fmt not in ("png", "jpeg"):
            raise InvalidArgumentError("format must be 'png' or 'jpeg'")
        if max_width is not None and not 16 <= max_width <= MAX_SIZE:
            raise InvalidArgumentError(f"max_width must be between 16 and {MAX_SIZE}")
        async with self._desktop(conversation, session_id) as desktop:
            shot = await desktop.screenshot(session_id)
        # Pillow is imported by the first screenshot, not by every server's start (bench/bench_start.py).
        from agentbay_mcp.services.desktop.screenshot_encoding import encode  # noqa: PLC0415

        image = await anyio.to_thread.run_sync(encode, shot, fmt, max_width)
        info = ScreenshotInfo(
            format=image.format,
            width=image.width,
            height=image.height,
            screen_width=shot.width,
            screen_height=shot.height,
            bytes=len(image.data),
            scaled=image.width != shot.width,
        )
        return image, info

    async def input_action(self, conversation: str, session_id: str, action: InputKind, **fields: Any) -> InputResult:
        """Mouse or keyboard input, validated per action."""
        request = self._input_request(action, fields)
        async with self._desktop(conversation, session_id) as desktop:
            return from_records(InputResult, await desktop.input_action(session_id, request))

    @staticmethod
    def _input_request(action: str, fields: dict[str, Any]) -> dict[str, Any]:
        needs = {
            "click": ("x", "y"),
            "move": ("x", "y"),
            "drag": ("x", "y", "to_x", "to_y"),
            "scroll": ("x", "y"),
            "type": ("text",),
            "keys": ("keys",),
        }
        if action not in needs:
            raise InvalidArgumentError(f"action must be one of {', '.join(needs)}")
        missing = [name for name in needs[action] if fields.get(name) is None]
        if missing:
            raise InvalidArgumentError(f"{action} needs {', '.join(missing)}")
        request: dict[str, Any] = {"action": action}
        request.update(
            _pointer_fields(action, fields) if action not in ("type", "keys") else _keyboard_fields(action, fields)
        )
        return request


def _pointer_fields(action: str, fields: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {}
    for name in ("x", "y", "to_x", "to_y"):
        if fields.get(name) is not None:
            value = fields[name]
            if not isinstance(value, int) or not 0 <= value < MAX_SIZE:
                raise InvalidArgumentError(f"{name} must be a pixel coordinate on the screen")
            request[name] = value
    if action in ("click", "drag"):
        request["button"] = fields.get("button") or "left"
    if action == "click":
        request["count"] = int(fields.get("count") or 1)
        if not 1 <= request["count"] <= 3:
            raise InvalidArgumentError("count must be 1, 2 (double click) or 3")
    if action == "scroll":
        request["direction"] = fields.get("direction") or "down"
        request["amount"] = int(fields.get("amount") or 1)
        if not 1 <= request["amount"] <= 100:
            raise InvalidArgumentError("amount must be between 1 and 100")
    return request


def _keyboard_fields(action: str, fields: dict[str, Any]) -> dict[str, Any]:
    if action == "type":
        text = fields["text"]
        if not isinstance(text, str) or not text or len(text) > MAX_TEXT_CHARS or "\0" in text:
            raise InvalidArgumentError(f"text must be 1 to {MAX_TEXT_CHARS} characters")
        return {"text": text}
    keys = fields["keys"]
    if not isinstance(keys, list) or not 1 <= len(keys) <= MAX_KEYS or not all(isinstance(k, str) and k for k in keys):
        raise InvalidArgumentError(f"keys must be 1 to {MAX_KEYS} key names, e.g. ['ctrl', 'shift', 't']")
    return {"keys": keys}
