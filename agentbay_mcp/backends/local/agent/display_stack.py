"""The session's virtual display: Xvfb plus an EWMH window manager, started inside the sandbox.

Runs in the agent (stdlib only). Xvfb picks a free display itself (`-displayfd`), listens only on
its socket in the sandbox's private /tmp (no TCP, no abstract socket, which a session sharing the
host's network namespace could otherwise reach), and accepts only clients holding the session's
cookie. Both processes are children of the agent, so they die with the sandbox.
"""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import socket
import struct
import subprocess
import time

START_SECONDS = 10.0
_FAMILY_LOCAL = 256
_FAMILY_WILD = 65535
_COOKIE_NAME = b"MIT-MAGIC-COOKIE-1"


class DisplayError(Exception):
    """The display could not be started; the message says why and what to install."""


def _xauth_entry(family: int, address: bytes, number: bytes, cookie: bytes) -> bytes:
    parts = [struct.pack(">H", family)]
    for field in (address, number, _COOKIE_NAME, cookie):
        parts.append(struct.pack(">H", len(field)) + field)
    return b"".join(parts)


def xauthority_entries(cookie: bytes) -> bytes:
    """Xauthority entries granting `cookie` for any display (libX11) and for this host (python-xlib)."""
    entries = _xauth_entry(_FAMILY_WILD, b"", b"", cookie)
    return entries + _xauth_entry(_FAMILY_LOCAL, socket.gethostname().encode(), b"", cookie)


def write_xauthority(path: str, entries: bytes) -> None:
    """The clients' cookie file, written to a fresh name and renamed into place.

    The session owns the directory: whatever it put at `path` (a FIFO, a symlink) is replaced,
    never opened, so it cannot make the agent block or write elsewhere.
    """
    staged = f"{path}.{os.urandom(4).hex()}"
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(entries)
    try:
        os.replace(staged, path)
    except OSError:
        os.unlink(staged)
        raise


def sealed_copy(data: bytes) -> int:
    """A memfd holding `data`, sealed against any change: the X server's own copy of the cookie.

    Xvfb re-reads its -auth file whenever its mtime moves; a file the session can write would let it
    empty the list and switch authentication off. The session can reach this fd through /proc, but a
    sealed memfd cannot be written, truncated or grown.
    """
    fd = os.memfd_create("agentbay-xauth", os.MFD_ALLOW_SEALING)
    os.write(fd, data)
    seals = fcntl.F_SEAL_WRITE | fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


class DisplayStack:
    """Xvfb and the window manager of one session."""

    def __init__(self, work_dir: str, width: int, height: int, window_manager: str = "openbox") -> None:
        self.work_dir = work_dir
        self.width = width
        self.height = height
        self.window_manager = window_manager
        self.display: str | None = None
        self.xauthority = os.path.join(work_dir, "Xauthority")
        self.xvfb: subprocess.Popen[bytes] | None = None
        self.wm: subprocess.Popen[bytes] | None = None
        self.exited: set[int] = set()
        self.cookie_entries = b""

    @property
    def pids(self) -> set[int]:
        """Pids of the display's own processes (never stopped by stop_app)."""
        return {p.pid for p in (self.xvfb, self.wm) if p is not None}

    def env(self) -> dict[str, str]:
        """What an application needs to reach the display."""
        assert self.display is not None
        return {"DISPLAY": self.display, "XAUTHORITY": self.xauthority}

    def alive(self) -> bool:
        """Whether Xvfb and the window manager are both still running."""
        return self.display is not None and not (self.pids & self.exited) and len(self.pids) == 2

    def start_xvfb(self) -> None:
        """Start Xvfb and wait until it reports its display number."""
        xvfb = shutil.which("Xvfb")
        if xvfb is None:
            raise DisplayError("Xvfb is not installed on the host (Debian/Ubuntu: apt install xvfb).")
        entries = self.cookie_entries = xauthority_entries(os.urandom(16))
        try:
            os.makedirs(self.work_dir, mode=0o700, exist_ok=True)
            os.makedirs("/tmp/.X11-unix", mode=0o1777, exist_ok=True)
            write_xauthority(self.xauthority, entries)
            auth_fd = sealed_copy(entries)
        except OSError as exc:
            raise DisplayError(f"cannot prepare the display's files in the session's /tmp: {exc}") from None
        read_fd, write_fd = os.pipe()
        try:
            self.xvfb = subprocess.Popen(
                [
                    *(xvfb, "-displayfd", str(write_fd), "-screen", "0", f"{self.width}x{self.height}x24"),
                    *("-nolisten", "tcp", "-nolisten", "local", "-auth", f"/proc/self/fd/{auth_fd}", "-noreset"),
                ],
                pass_fds=(write_fd, auth_fd),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            os.close(write_fd)
            write_fd = -1
            number = b""
            deadline = time.monotonic() + START_SECONDS
            while not number.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not select.select([read_fd], [], [], remaining)[0]:
                    raise DisplayError(f"Xvfb did not start within {START_SECONDS:.0f} s.")
                chunk = os.read(read_fd, 16)
                if not chunk:
                    raise DisplayError("Xvfb exited at start-up (is another display server misconfigured?).")
                number += chunk
        finally:
            os.close(read_fd)
            os.close(auth_fd)
            if write_fd >= 0:
                os.close(write_fd)
        self.display = f":{int(number.strip())}"

    def restore_cookie_file(self) -> None:
        """Put the clients' cookie file back as written at start-up (the session may have changed it)."""
        try:
            write_xauthority(self.xauthority, self.cookie_entries)
        except OSError:
            pass  # e.g. the directory is gone: connecting will fail and say so

    def start_window_manager(self) -> None:
        """Start the window manager (the caller waits for it to claim the screen)."""
        wm = shutil.which(self.window_manager)
        if wm is None:
            raise DisplayError(
                f"The window manager {self.window_manager!r} is not installed on the host "
                "(Debian/Ubuntu: apt install openbox)."
            )
        env = dict(os.environ, **self.env())
        self.wm = subprocess.Popen(
            [wm, *(("--startup", "/bin/true") if self.window_manager == "openbox" else ())],
            env=env,
            cwd=os.environ.get("HOME", "/"),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self) -> None:
        """Kill both processes (the agent reaps them)."""
        for proc in (self.wm, self.xvfb):
            if proc is not None and proc.pid not in self.exited:
                try:
                    os.killpg(proc.pid, 9)
                except OSError:
                    pass
                proc.returncode = -9  # reaped by the agent's waitpid(-1); keep Popen from waiting again
        self.wm = self.xvfb = None
        self.display = None
