"""The agent's desktop operations: display lifecycle, windows, focus mode, screenshots, input, apps.

Runs in the agent, inside the sandbox. The display starts on the first desktop operation and is
restarted if it died. Every X exchange runs under a SIGALRM deadline: a wedged or stopped X server
makes the operation fail with `desktop_timeout` and the connection is dropped (python-xlib's state
is unknown after an interrupted request), never a hung agent. Operations return at once; waiting
for an effect (a window appearing, a state change) is the host's job, by polling.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import os
import signal
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentbay_mcp.backends.local.agent import desktop_apps, error_names, proc_table
    from agentbay_mcp.backends.local.agent.display_stack import DisplayError, DisplayStack
    from agentbay_mcp.backends.local.agent.error_names import AgentError
else:
    import desktop_apps
    import error_names
    import proc_table
    from display_stack import DisplayError, DisplayStack
    from error_names import AgentError

X_SECONDS = 5.0
WM_READY_SECONDS = 10.0
MAX_WINDOWS = 200
STOP_GRACE_SECONDS = 1.0  # stop_app: SIGTERM, then SIGKILL for what is left after this
STRIP_BYTES = 256 * 1024
ACTIONS = ("activate", "maximize", "minimize", "restore", "close", "fullscreen", "resize")


class _DeadlineError(Exception):
    pass


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise _DeadlineError in this (the main) thread if the block runs longer than `seconds`."""

    end = time.monotonic() + seconds

    def expire(signum: int, frame: object) -> None:
        # Only our own timer counts: a SIGALRM the session manages to send early changes nothing.
        if time.monotonic() >= end:
            raise _DeadlineError
        signal.setitimer(signal.ITIMER_REAL, max(end - time.monotonic(), 0.001))

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class Desktop:
    """One session's desktop, owned by the agent."""

    def __init__(
        self,
        config: dict[str, Any],
        spawn: Callable[[dict[str, object]], dict[str, object]],
        kill_later: Callable[[list[tuple[int, int]], float], None],
        keepers: Callable[[], set[int]] = set,
    ) -> None:
        settings = config.get("desktop") or {}
        self.width = int(settings.get("width", 1280))
        self.height = int(settings.get("height", 800))
        self.home = str(config["home"])
        self.stack = DisplayStack(
            os.path.join(str(config.get("output_dir", "/tmp/.agentbay")), "display"),
            self.width,
            self.height,
            str(settings.get("window_manager", "openbox")),
        )
        self.spawn = spawn
        self.kill_later = kill_later  # the agent's timer: stop_app never sleeps in the event loop
        self.keepers = keepers  # the agent's keeper processes (keeper.py): never stopped by stop_app
        vendor = str(config.get("vendor_dir") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "vendor"))
        if vendor not in sys.path:
            sys.path.insert(0, vendor)
        self.display: Any = None
        # python-xlib and the modules using it are imported on first use (vendored onto sys.path above).
        self.x_windows: Any = importlib.import_module("x_windows")
        self.x_input: Any = importlib.import_module("x_input")
        self.windows: Any = None
        self.keyboard: Any = None
        self.pointer: Any = None
        self.focus_lock: int | None = None
        self.focus_mode = False

    # ---- lifecycle ---------------------------------------------------------------------------

    def fileno(self) -> int | None:
        """The X connection's socket (the agent watches it for focus-mode events)."""
        return self.display.fileno() if self.display is not None else None

    def child_exited(self, pid: int) -> None:
        """The agent reaped `pid`; note it if it was Xvfb or the window manager."""
        if pid in self.stack.pids:
            self.stack.exited.add(pid)

    def _drop_connection(self) -> None:
        if self.display is not None:
            with contextlib.suppress(Exception):
                self.display.socket.close()
        self.display = self.windows = self.keyboard = self.pointer = None

    def stop(self) -> None:
        """Tear the display down (the session is going away)."""
        self._drop_connection()
        self.stack.stop()

    def ensure(self) -> None:
        """Connect to the display, starting (or restarting) it when it is not running."""
        if self.stack.alive() and self.display is not None:
            return
        if self.stack.alive():
            # The connection was dropped (a timeout, an X error): reconnect and keep the session's apps.
            try:
                self._connect()
                return
            except _DeadlineError:
                self._drop_connection()
                raise AgentError(error_names.DESKTOP_TIMEOUT, self._timeout_message()) from None
            except Exception:
                self._drop_connection()
        self._start()

    def _connect(self) -> None:
        """Open the X connection and the helpers that use it (the window manager already runs)."""
        self.stack.restore_cookie_file()  # the session may have changed it; python-xlib reads it
        with deadline(X_SECONDS):
            self.display = importlib.import_module("Xlib.display").Display(self.stack.display)
            windows = self.x_windows.Windows(self.display)
            windows.watch_root()
            self.display.sync()
            self.keyboard = self.x_input.Keyboard(self.display)
        self.windows = windows
        self.pointer = self.x_input.Pointer(self.display, self.width, self.height)

    def _start(self) -> None:
        self._drop_connection()
        self.stack.stop()
        self.focus_lock, self.focus_mode = None, False
        try:
            self.stack.start_xvfb()
            os.environ["XAUTHORITY"] = self.stack.xauthority  # python-xlib reads the cookie from here
            self.stack.start_window_manager()
            # Poll on the connection _connect then sets up fully (keyboard map, root events).
            self._connect()
            ready_by = time.monotonic() + WM_READY_SECONDS
            while True:
                with deadline(X_SECONDS):
                    if self.windows.wm_ready():
                        break
                if time.monotonic() > ready_by or not self.stack.alive():
                    raise DisplayError("the window manager did not start")
                time.sleep(0.005)
        except DisplayError as exc:
            self.stop()
            raise AgentError(error_names.NO_DESKTOP, str(exc)) from None
        except Exception as exc:  # python-xlib raises its own, unrelated errors (and the deadline's)
            self.stop()
            raise AgentError(error_names.NO_DESKTOP, f"the desktop could not start: {exc.__class__.__name__}") from None

    def _timeout_message(self) -> str:
        return (
            f"the session's X server did not answer within {X_SECONDS:.0f} s (a command may have stopped, "
            "grabbed or flooded it); its applications keep running. Try again once it is free."
        )

    @contextlib.contextmanager
    def x(self) -> Iterator[Any]:
        """Run X requests with a deadline; a failure drops the connection (reconnected next time)."""
        from Xlib.error import BadDrawable, BadWindow  # noqa: PLC0415 - vendored, see ensure()

        self.ensure()
        try:
            with deadline(X_SECONDS):
                yield self.windows
        except (BadWindow, BadDrawable):
            raise AgentError(error_names.WINDOW_NOT_FOUND, "the window went away while it was being used") from None
        except self.x_windows.WindowError as exc:
            raise AgentError(error_names.WINDOW_NOT_FOUND, str(exc)) from None
        except self.x_input.InputError as exc:
            raise AgentError(error_names.INVALID, str(exc)) from None
        except _DeadlineError:
            self._drop_connection()
            raise AgentError(error_names.DESKTOP_TIMEOUT, self._timeout_message()) from None
        except (AgentError, ValueError, KeyError, TypeError):
            raise
        except Exception as exc:
            self._drop_connection()
            raise AgentError(error_names.DESKTOP_ERROR, f"X request failed: {exc.__class__.__name__}") from None

    def on_readable(self) -> None:
        """X events arrived: enforce focus mode."""
        if self.display is None:
            return
        try:
            with deadline(X_SECONDS):
                while self.display.pending_events():
                    self.display.next_event()
                if self.focus_mode and self.focus_lock is not None:
                    windows = self.windows
                    active = windows.active_id()
                    if active != self.focus_lock:
                        if self.focus_lock in windows.client_ids():
                            windows.activate(windows.window(self.focus_lock))
                            self.display.flush()
                        else:  # the locked window closed: the next active window inherits the lock
                            self.focus_lock = active
        except Exception:
            self._drop_connection()

    # ---- operations (one per agent op `desktop_<name>`) ---------------------------------------

    def _describe(self, windows: Any, window_id: int, children: bool = True) -> dict[str, object] | None:
        """A window's description with its process name, or None if it vanished meanwhile."""
        from Xlib.error import BadDrawable, BadWindow  # noqa: PLC0415 - vendored, see ensure()

        try:
            window = self.display.create_resource_object("window", window_id)
            info: dict[str, object] = windows.describe(window, children)
        except (BadWindow, BadDrawable):
            return None
        pid = info.get("pid")
        process = proc_table.process_info(pid) if isinstance(pid, int) else None
        info["pname"] = process["pname"] if process else None
        return info

    def op_status(self, request: dict[str, object]) -> dict[str, object]:
        if request.get("start"):
            self.ensure()
        running = self.stack.alive()
        return {
            "running": running,
            "env": self.stack.env() if running else {},
            "width": self.width,
            "height": self.height,
        }

    def op_windows(self, request: dict[str, object]) -> dict[str, object]:
        with self.x() as windows:
            # The newest windows matter most; a session that opens thousands gets its last MAX_WINDOWS.
            ids = windows.client_ids()
            found = [self._describe(windows, window_id) for window_id in ids[-MAX_WINDOWS:]]
            return {
                "windows": [w for w in found if w is not None],
                "truncated": len(ids) > MAX_WINDOWS,
                "active_window_id": windows.active_id(),
                "focus_mode": self.focus_mode,
                "screen_width": self.width,
                "screen_height": self.height,
            }

    def op_window(self, request: dict[str, object]) -> dict[str, object]:
        with self.x() as windows:
            window = windows.window(int(request["window_id"]))  # type: ignore[call-overload]
            info = self._describe(windows, int(window.id), children=False) or {}  # polled: keep it cheap
            info["size_increments"] = list(windows.size_increments(window))
            info["active"] = windows.active_id() == int(window.id)
            return info

    def op_active(self, request: dict[str, object]) -> dict[str, object]:
        with self.x() as windows:
            active = windows.active_id()
            if active is None or active not in windows.client_ids():
                return {"window": None}
            return {"window": self._describe(windows, active)}

    def op_window_action(self, request: dict[str, object]) -> dict[str, object]:
        action = str(request["action"])
        if action not in ACTIONS:
            raise AgentError(error_names.INVALID, f"unknown window action {action!r}; use one of {', '.join(ACTIONS)}")
        with self.x() as windows:
            window = windows.window(int(request["window_id"]))  # type: ignore[call-overload]
            if action == "resize":
                windows.resize(window, int(request["width"]), int(request["height"]))  # type: ignore[call-overload]
            else:
                getattr(windows, action)(window)
            if action == "activate" and self.focus_mode:
                self.focus_lock = int(window.id)
            self.display.sync()
        return {"sent": action}

    def op_focus_mode(self, request: dict[str, object]) -> dict[str, object]:
        with self.x() as windows:
            self.focus_mode = bool(request.get("on"))
            self.focus_lock = windows.active_id() if self.focus_mode else None
        return {"on": self.focus_mode, "window_id": self.focus_lock}

    def op_screenshot(self, request: dict[str, object]) -> dict[str, object]:
        # In strips of ~256 KiB: python-xlib gathers a reply by concatenating what each recv gives,
        # quadratic in the reply's size (one 4 MB grab: 8-30 ms; sixteen strips: ~2.5 ms).
        rows = max(1, STRIP_BYTES // (self.width * 4))
        with self.x() as windows:
            strips = [
                windows.root.get_image(0, top, self.width, min(rows, self.height - top), 2, 0xFFFFFFFF).data
                for top in range(0, self.height, rows)
            ]  # 2 = ZPixmap
        data = b"".join(strips)
        if len(data) != self.width * self.height * 4:
            raise AgentError(error_names.DESKTOP_ERROR, "unexpected screen format (expected 32 bits per pixel)")
        # zlib level 1: ~5 ms for a 1280x800 screen, and a desktop shrinks 50-200x, which saves far more
        # than that in base64 and JSON on the way to the host.
        packed = base64.b64encode(zlib.compress(data, 1)).decode()
        return {"width": self.width, "height": self.height, "format": "bgrx", "compression": "zlib", "data": packed}

    def op_input(self, request: dict[str, object]) -> dict[str, object]:
        action = str(request.get("action"))

        def number(key: str, default: int = 0) -> int:
            value = request.get(key)
            return default if value is None else int(value)  # type: ignore[call-overload]

        with self.x():
            button = str(request.get("button") or "left")  # names: Pointer checks them
            if action == "click":
                self.pointer.click(number("x"), number("y"), button, max(1, min(number("count", 1), 3)))
            elif action == "move":
                self.pointer.move(number("x"), number("y"))
            elif action == "drag":
                self.pointer.drag(number("x"), number("y"), number("to_x"), number("to_y"), button)
            elif action == "scroll":
                direction = str(request.get("direction") or "down")
                self.pointer.scroll(number("x"), number("y"), direction, max(1, min(number("amount", 1), 100)))
            elif action == "type":
                self.keyboard.type_text(str(request.get("text") or ""))
            elif action == "keys":
                keys = request.get("keys")
                if not isinstance(keys, list) or not keys:
                    raise AgentError(error_names.INVALID, "keys must be a non-empty list such as ['ctrl', 'c']")
                self.keyboard.combo([str(k) for k in keys])
            else:
                raise AgentError(error_names.INVALID, f"unknown input action {action!r}")
            x, y = self.pointer.position()
        return {"pointer_x": x, "pointer_y": y}

    def op_apps(self, request: dict[str, object]) -> dict[str, object]:
        return {"apps": desktop_apps.installed_apps(self.home, bool(request.get("include_system")))}

    def op_start_app(self, request: dict[str, object]) -> dict[str, object]:
        with self.x() as windows:
            before = windows.client_ids()
        spawned = self.spawn(
            {
                "command": request["start_cmd"],
                "cwd": request.get("work_directory") or self.home,
                "env": self.stack.env(),
                "foreground": False,
                "keep_full_output": False,
            }
        )
        return {**spawned, "windows_before": before}

    def op_app_status(self, request: dict[str, object]) -> dict[str, object]:
        """The started app's process tree, and the first new window one of them owns (if any yet)."""
        pids = proc_table.tree(int(request["pid"]))  # type: ignore[call-overload]
        processes = [p for p in (proc_table.process_info(pid) for pid in pids) if p is not None]
        before = {int(w) for w in request.get("windows_before") or []}  # type: ignore[attr-defined]
        with self.x() as windows:  # polled while start_app waits: describe only the window returned
            ids = windows.client_ids()
            # Ownership first: X reuses a closed client's window ids, so "not there before" alone can
            # miss a new window that got a just-closed window's id.
            owned = [w for w in ids if windows.pid(self.display.create_resource_object("window", w)) in pids]
            chosen = (owned or [w for w in ids if w not in before])[:1]
            window = self._describe(windows, chosen[0]) if chosen else None
        return {"processes": processes, "window": window}

    def _protected(self) -> set[int]:
        return {1, os.getpid()} | self.stack.pids | self.keepers()

    def op_stop_app(self, request: dict[str, object]) -> dict[str, object]:
        protected = self._protected()
        table = proc_table.table()
        mine = set(proc_table.tree(os.getpid(), table)) - protected  # only this session's processes
        if request.get("pid") is not None:
            pid = int(request["pid"])  # type: ignore[call-overload]
            if pid in protected:
                raise AgentError(
                    error_names.INVALID, f"pid {pid} is the session's agent or desktop and cannot be stopped"
                )
            if pid not in mine:
                raise AgentError(error_names.INVALID, f"no process with pid {pid} in this session")
            roots = [pid]
        else:
            pname = str(request.get("pname") or "")
            roots = [p for p in proc_table.matching(pname, table) if p in mine]
            if not roots:
                raise AgentError(error_names.INVALID, f"no process named {pname!r} in this session")
        stopped, marked = desktop_apps.terminate_trees(roots, protected, table)
        self.kill_later(marked, STOP_GRACE_SECONDS)
        return {"stopped": stopped}

    def op_visible_apps(self, request: dict[str, object]) -> dict[str, object]:
        apps: dict[int, dict[str, object]] = {}
        for window in self.op_windows(request)["windows"]:  # type: ignore[attr-defined]
            pid = window.get("pid")
            if window["state"] == "minimized" or not isinstance(pid, int):
                continue
            if pid not in apps:
                info = proc_table.process_info(pid)
                if info is None:
                    continue
                apps[pid] = {**info, "window_ids": []}
            apps[pid]["window_ids"].append(window["window_id"])  # type: ignore[attr-defined]
        return {"apps": list(apps.values())}


#: The desktop operations, by the name a request gives (the agent's dispatch table binds them to
#: its Desktop, started on first use). Each raises AgentError, or KeyError/ValueError/TypeError
#: for bad input.
OPERATIONS: dict[str, Callable[[Desktop, dict[str, object]], dict[str, object]]] = {
    "desktop_status": Desktop.op_status,
    "desktop_windows": Desktop.op_windows,
    "desktop_window": Desktop.op_window,
    "desktop_active": Desktop.op_active,
    "desktop_window_action": Desktop.op_window_action,
    "desktop_focus_mode": Desktop.op_focus_mode,
    "desktop_screenshot": Desktop.op_screenshot,
    "desktop_input": Desktop.op_input,
    "desktop_apps": Desktop.op_apps,
    "desktop_start_app": Desktop.op_start_app,
    "desktop_app_status": Desktop.op_app_status,
    "desktop_stop_app": Desktop.op_stop_app,
    "desktop_visible_apps": Desktop.op_visible_apps,
}
