"""Windows over the X protocol (python-xlib, EWMH): listing, state, and window-manager requests.

Runs in the agent, inside the sandbox. Every function here talks X synchronously; the caller
(`desktop_ops`) bounds each call with a deadline, so a wedged X server can never hang the agent.
Only top-level windows the window manager manages (_NET_CLIENT_LIST) are addressed by id.
"""

from __future__ import annotations

from Xlib import X
from Xlib.display import Display
from Xlib.protocol import event as xevent
from Xlib.xobject.drawable import Window

MAX_CHILDREN = 50
MAX_TITLE = 1024  # characters: a hostile app can set a megabyte-long title
_STATE_ADD, _STATE_REMOVE = 1, 0
_STATES = (
    "_NET_WM_STATE_HIDDEN",
    "_NET_WM_STATE_MAXIMIZED_VERT",
    "_NET_WM_STATE_MAXIMIZED_HORZ",
    "_NET_WM_STATE_FULLSCREEN",
)
_ICONIC = 3


class WindowError(Exception):
    """A window id that is not a managed top-level window of this display."""


class Windows:
    """EWMH views and requests on one display connection."""

    def __init__(self, display: Display) -> None:
        self.d = display
        self.root = display.screen().root
        self._atoms: dict[str, int] = {}

    def atom(self, name: str) -> int:
        """An interned atom, cached."""
        if name not in self._atoms:
            self._atoms[name] = self.d.intern_atom(name)
        return self._atoms[name]

    def _prop(self, window: Window, name: str) -> list[int] | None:
        prop = window.get_full_property(self.atom(name), 0)  # AnyPropertyType
        return list(prop.value) if prop is not None else None

    def _text(self, window: Window, name: str) -> str | None:
        prop = window.get_property(self.atom(name), 0, 0, MAX_TITLE)  # reads at most 4 * MAX_TITLE bytes
        if prop is None:
            return None
        value = prop.value
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        return text[:MAX_TITLE]

    def wm_ready(self) -> bool:
        """Whether an EWMH window manager has claimed the screen and finished starting up.

        _NET_SUPPORTING_WM_CHECK comes early in openbox's start-up; _NET_CLIENT_LIST (even empty)
        only once it manages windows. An application mapped in between can be left unmanaged.
        """
        if not self._prop(self.root, "_NET_SUPPORTING_WM_CHECK"):
            return False
        return self.root.get_full_property(self.atom("_NET_CLIENT_LIST"), 0) is not None

    def client_ids(self) -> list[int]:
        """Managed top-level windows, in mapping order."""
        return [int(w) for w in self._prop(self.root, "_NET_CLIENT_LIST") or []]

    def active_id(self) -> int | None:
        """The active window, if any."""
        value = self._prop(self.root, "_NET_ACTIVE_WINDOW")
        return int(value[0]) if value and value[0] else None

    def window(self, window_id: int) -> Window:
        """A managed top-level window by id (WindowError otherwise)."""
        if window_id not in self.client_ids():
            raise WindowError(
                f"There is no window {window_id} on this session's desktop (it closed, or the id is "
                "from another session); call list_windows for the current ids."
            )
        return self.d.create_resource_object("window", window_id)

    def title(self, window: Window) -> str:
        """_NET_WM_NAME, falling back to WM_NAME."""
        return self._text(window, "_NET_WM_NAME") or self._text(window, "WM_NAME") or ""

    def states(self, window: Window) -> set[str]:
        """The EWMH state atoms of a window, by name."""
        names = {self.atom(n): n for n in _STATES}
        found = {names[a] for a in self._prop(window, "_NET_WM_STATE") or [] if a in names}
        wm_state = self._prop(window, "WM_STATE")
        if wm_state and wm_state[0] == _ICONIC:
            found.add("_NET_WM_STATE_HIDDEN")
        return found

    def state(self, window: Window) -> str:
        """normal, minimized, maximized or fullscreen."""
        states = self.states(window)
        if "_NET_WM_STATE_HIDDEN" in states:
            return "minimized"
        if "_NET_WM_STATE_FULLSCREEN" in states:
            return "fullscreen"
        if {"_NET_WM_STATE_MAXIMIZED_VERT", "_NET_WM_STATE_MAXIMIZED_HORZ"} <= states:
            return "maximized"
        return "normal"

    def frame_extents(self, window: Window) -> tuple[int, int, int, int]:
        """Decorations around the client: left, right, top, bottom."""
        value = self._prop(window, "_NET_FRAME_EXTENTS")
        if value and len(value) == 4:
            return value[0], value[1], value[2], value[3]
        return 0, 0, 0, 0

    def geometry(self, window: Window) -> dict[str, int]:
        """The window's outer (frame) rectangle on the screen, and its client size."""
        geo = window.get_geometry()
        origin = self.root.translate_coords(window, 0, 0)
        left, right, top, bottom = self.frame_extents(window)
        return {
            "x": origin.x - left,
            "y": origin.y - top,
            "width": geo.width + left + right,
            "height": geo.height + top + bottom,
            "client_width": geo.width,
            "client_height": geo.height,
        }

    def pid(self, window: Window) -> int | None:
        """_NET_WM_PID, as the client set it (a pid in the sandbox)."""
        value = self._prop(window, "_NET_WM_PID")
        return int(value[0]) if value else None

    def describe(self, window: Window, children: bool = True) -> dict[str, object]:
        """Everything list_windows reports about one window."""
        info: dict[str, object] = {
            "window_id": int(window.id),
            "title": self.title(window),
            **self.geometry(window),
            "pid": self.pid(window),
            "state": self.state(window),
        }
        if children:
            kids = []
            for child in window.query_tree().children[:MAX_CHILDREN]:
                geo = child.get_geometry()
                kids.append(
                    {
                        "window_id": int(child.id),
                        "title": self.title(child),
                        "x": geo.x,
                        "y": geo.y,
                        "width": geo.width,
                        "height": geo.height,
                    }
                )
            info["child_windows"] = kids
        return info

    def size_increments(self, window: Window) -> tuple[int, int]:
        """The client's resize steps (e.g. a terminal's character cell), 1 if it has none."""
        hints = window.get_wm_normal_hints()
        if hints is None:
            return 1, 1
        return max(1, int(getattr(hints, "width_inc", 1) or 1)), max(1, int(getattr(hints, "height_inc", 1) or 1))

    # ---- requests to the window manager ------------------------------------------------------

    def _message(self, window: Window, name: str, data: list[int]) -> None:
        message = xevent.ClientMessage(window=window, client_type=self.atom(name), data=(32, (data + [0] * 5)[:5]))
        self.root.send_event(message, event_mask=X.SubstructureRedirectMask | X.SubstructureNotifyMask)

    def _set_state(self, window: Window, action: int, first: str, second: str = "") -> None:
        self._message(window, "_NET_WM_STATE", [action, self.atom(first), self.atom(second) if second else 0, 2])

    def activate(self, window: Window) -> None:
        """Raise and focus (un-minimizes too)."""
        self._message(window, "_NET_ACTIVE_WINDOW", [2, X.CurrentTime, 0])

    def maximize(self, window: Window) -> None:
        """Maximize both ways (leaving fullscreen first)."""
        self._set_state(window, _STATE_REMOVE, "_NET_WM_STATE_FULLSCREEN")
        self._set_state(window, _STATE_ADD, "_NET_WM_STATE_MAXIMIZED_VERT", "_NET_WM_STATE_MAXIMIZED_HORZ")

    def minimize(self, window: Window) -> None:
        """Iconify (ICCCM WM_CHANGE_STATE)."""
        self._message(window, "WM_CHANGE_STATE", [_ICONIC])

    def restore(self, window: Window) -> None:
        """Back to normal: un-minimize, leave maximized and fullscreen."""
        if "_NET_WM_STATE_HIDDEN" in self.states(window):
            self.activate(window)
        self._set_state(window, _STATE_REMOVE, "_NET_WM_STATE_FULLSCREEN")
        self._set_state(window, _STATE_REMOVE, "_NET_WM_STATE_MAXIMIZED_VERT", "_NET_WM_STATE_MAXIMIZED_HORZ")

    def fullscreen(self, window: Window) -> None:
        """Fullscreen."""
        self._set_state(window, _STATE_ADD, "_NET_WM_STATE_FULLSCREEN")

    def close(self, window: Window) -> None:
        """Ask the window manager to close it (the application may ask the user first)."""
        self._message(window, "_NET_CLOSE_WINDOW", [X.CurrentTime, 2])

    def resize(self, window: Window, width: int, height: int) -> None:
        """Ask for an outer size of width x height (leaving maximized/fullscreen first)."""
        self._set_state(window, _STATE_REMOVE, "_NET_WM_STATE_FULLSCREEN")
        self._set_state(window, _STATE_REMOVE, "_NET_WM_STATE_MAXIMIZED_VERT", "_NET_WM_STATE_MAXIMIZED_HORZ")
        left, right, top, bottom = self.frame_extents(window)
        window.configure(width=max(1, width - left - right), height=max(1, height - top - bottom))

    def watch_root(self) -> None:
        """Receive PropertyNotify on the root window (focus mode follows _NET_ACTIVE_WINDOW)."""
        self.root.change_attributes(event_mask=X.PropertyChangeMask)
