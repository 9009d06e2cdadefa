"""Mouse and keyboard input through the XTEST extension (what xdotool does, in-process).

Runs in the agent, inside the sandbox; the caller bounds every call with a deadline. Characters
with no key on the keyboard map (non-ASCII text) are typed by binding a spare keycode to them for
the duration of the key press.
"""

from __future__ import annotations

from Xlib import XK, X
from Xlib.display import Display
from Xlib.ext import xtest

BUTTONS = {"left": 1, "middle": 2, "right": 3}
#: Scroll directions are buttons 4-7 in X.
SCROLL_BUTTONS = {"up": 4, "down": 5, "left": 6, "right": 7}
KEY_ALIASES = {
    "ctrl": "Control_L",
    "control": "Control_L",
    "shift": "Shift_L",
    "alt": "Alt_L",
    "meta": "Meta_L",
    "super": "Super_L",
    "win": "Super_L",
    "cmd": "Super_L",
    "enter": "Return",
    "return": "Return",
    "esc": "Escape",
    "escape": "Escape",
    "tab": "Tab",
    "space": "space",
    "backspace": "BackSpace",
    "delete": "Delete",
    "del": "Delete",
    "insert": "Insert",
    "home": "Home",
    "end": "End",
    "pageup": "Prior",
    "pagedown": "Next",
    "up": "Up",
    "down": "Down",
    "left": "Left",
    "right": "Right",
}
_CONTROL_CHARS = {"\n": XK.XK_Return, "\r": XK.XK_Return, "\t": XK.XK_Tab, "\b": XK.XK_BackSpace}


class InputError(Exception):
    """Input that cannot be delivered (an unknown key name, a point off the screen)."""


def char_keysym(char: str) -> int:
    """The keysym of one character (X11's Unicode keysyms for anything beyond Latin-1)."""
    if char in _CONTROL_CHARS:
        return _CONTROL_CHARS[char]
    code = ord(char)
    if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF:
        return code
    return 0x01000000 | code


def key_keysym(name: str) -> int:
    """The keysym of a key name such as 'Return', 'F4', 'a' or 'ctrl'."""
    keysym = XK.string_to_keysym(KEY_ALIASES.get(name.lower(), name))
    if keysym == X.NoSymbol and len(name) == 1:
        keysym = char_keysym(name)
    if keysym == X.NoSymbol:
        raise InputError(f"Unknown key {name!r}: use names like Return, Escape, Tab, F5, ctrl, shift, alt, a.")
    return keysym


class Keyboard:
    """Presses keys by keysym on one display."""

    def __init__(self, display: Display) -> None:
        self.d = display
        self.shift = self.d.keysym_to_keycode(XK.XK_Shift_L)
        self._spare: int | None = None

    def _spare_keycode(self) -> int:
        """A keycode with no keysyms, to bind characters the keyboard map lacks."""
        if self._spare is None:
            first = self.d.display.info.min_keycode
            count = self.d.display.info.max_keycode - first + 1
            mapping = self.d.get_keyboard_mapping(first, count)
            for offset in range(count - 1, -1, -1):
                if not any(mapping[offset]):
                    self._spare = first + offset
                    break
            else:
                raise InputError("The keyboard map has no free keycode to type this character.")
        return self._spare

    def _keycode(self, keysym: int) -> tuple[int, bool]:
        """(keycode, needs shift) for a keysym, binding the spare keycode if none has it."""
        keycode = self.d.keysym_to_keycode(keysym)
        if keycode:
            return keycode, self.d.keycode_to_keysym(keycode, 0) != keysym
        spare = self._spare_keycode()
        self.d.change_keyboard_mapping(spare, [(keysym, keysym)])
        self.d.sync()
        return spare, False

    def tap(self, keysym: int) -> None:
        """Press and release one keysym (with shift where the keyboard map needs it)."""
        keycode, shifted = self._keycode(keysym)
        if shifted:
            xtest.fake_input(self.d, X.KeyPress, self.shift)
        xtest.fake_input(self.d, X.KeyPress, keycode)
        xtest.fake_input(self.d, X.KeyRelease, keycode)
        if shifted:
            xtest.fake_input(self.d, X.KeyRelease, self.shift)
        if keycode == self._spare:
            self.d.sync()  # the press must be delivered before the spare is rebound

    def combo(self, names: list[str]) -> None:
        """Hold every key of a combination (e.g. ctrl, shift, t) in order, then release in reverse."""
        keycodes = []
        for name in names:
            keycode, _ = self._keycode(key_keysym(name))
            keycodes.append(keycode)
        for keycode in keycodes:
            xtest.fake_input(self.d, X.KeyPress, keycode)
        for keycode in reversed(keycodes):
            xtest.fake_input(self.d, X.KeyRelease, keycode)
        self.d.sync()

    def type_text(self, text: str) -> None:
        """Type text character by character."""
        for char in text:
            self.tap(char_keysym(char))
        self.d.sync()


class Pointer:
    """Moves and clicks the pointer on one display."""

    def __init__(self, display: Display, width: int, height: int) -> None:
        self.d = display
        self.width = width
        self.height = height

    @staticmethod
    def _button(name: str) -> int:
        if name not in BUTTONS:
            raise InputError(f"button must be one of {', '.join(BUTTONS)}")
        return BUTTONS[name]

    def _check(self, x: int, y: int) -> None:
        if not (0 <= x < self.width and 0 <= y < self.height):
            raise InputError(f"({x}, {y}) is off the {self.width}x{self.height} screen.")

    def move(self, x: int, y: int) -> None:
        """Move to (x, y)."""
        self._check(x, y)
        xtest.fake_input(self.d, X.MotionNotify, x=x, y=y)
        self.d.sync()

    def click(self, x: int, y: int, button_name: str, count: int) -> None:
        """Click `count` times at (x, y)."""
        button = self._button(button_name)
        self.move(x, y)
        for _ in range(count):
            xtest.fake_input(self.d, X.ButtonPress, button)
            xtest.fake_input(self.d, X.ButtonRelease, button)
        self.d.sync()

    def drag(self, x: int, y: int, to_x: int, to_y: int, button_name: str, steps: int = 10) -> None:
        """Press at (x, y), move in steps to (to_x, to_y), release."""
        button = self._button(button_name)
        self._check(to_x, to_y)
        self.move(x, y)
        xtest.fake_input(self.d, X.ButtonPress, button)
        for step in range(1, steps + 1):
            xtest.fake_input(self.d, X.MotionNotify, x=x + (to_x - x) * step // steps, y=y + (to_y - y) * step // steps)
        xtest.fake_input(self.d, X.ButtonRelease, button)
        self.d.sync()

    def scroll(self, x: int, y: int, direction: str, amount: int) -> None:
        """Scroll `amount` notches at (x, y)."""
        if direction not in SCROLL_BUTTONS:
            raise InputError(f"direction must be one of {', '.join(SCROLL_BUTTONS)}")
        button = SCROLL_BUTTONS[direction]
        self.move(x, y)
        for _ in range(amount):
            xtest.fake_input(self.d, X.ButtonPress, button)
            xtest.fake_input(self.d, X.ButtonRelease, button)
        self.d.sync()

    def position(self) -> tuple[int, int]:
        """Where the pointer is."""
        reply = self.d.screen().root.query_pointer()
        return int(reply.root_x), int(reply.root_y)
