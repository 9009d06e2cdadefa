"""Per-process state of the in-sandbox agent: output streams with bounded memory, and processes.

Standard library only (see sandbox_agent.py). For each output stream the agent keeps the first
HEAD bytes, a ring of the last RING bytes (absolute offsets serve cursors), a count, and, once the
stream outgrows `spill_after` bytes, a full copy in a file (up to a size limit): memory per process
is bounded whatever a command prints.
"""

from __future__ import annotations

import base64
import errno
import os
import stat
import time

READ_CHUNK = 64 * 1024


def _now() -> float:
    return time.monotonic()


class Stream:
    """One output stream of a process: head, ring buffer, count, optional spill file."""

    def __init__(
        self,
        name: str,
        head_size: int,
        ring_size: int,
        spill_path: str | None,
        spill_after: int,
        spill_limit: int,
    ) -> None:
        self.name = name
        self.head_size = head_size
        self.ring_size = max(ring_size, spill_after + READ_CHUNK)
        self.head = bytearray()
        self.ring = bytearray()
        self.ring_start = 0
        self.total = 0
        self.spill_path = spill_path
        self.spill_after = spill_after
        self.spill_limit = spill_limit
        self.spill_fd: int | None = None
        self.spilled = 0
        self.spill_error = ""
        self.eof = False

    def feed(self, data: bytes) -> None:
        if len(self.head) < self.head_size:
            self.head += data[: self.head_size - len(self.head)]
        first_spill = (
            self.spill_fd is None
            and self.spill_path
            and not self.spilled
            and not self.spill_error
            and self.total + len(data) > self.spill_after
        )
        self.total += len(data)
        self.ring += data
        if first_spill:
            self._open_spill()
        elif self.spill_fd is not None:
            self._spill(data)
        if len(self.ring) > self.ring_size:
            drop = len(self.ring) - self.ring_size
            del self.ring[:drop]
            self.ring_start += drop

    def _open_spill(self) -> None:
        try:
            self.spill_fd = open_private_file(self.spill_path or "")
        except OSError as exc:
            self.spill_error = f"could not keep the full output: {exc.strerror or exc}"
            self.spill_path = None
            return
        # ring_start is 0 here: the ring is larger than spill_after plus one read.
        self._spill(bytes(self.ring))

    def _spill(self, data: bytes) -> None:
        room = self.spill_limit - self.spilled
        if room <= 0 or self.spill_fd is None:
            return
        try:
            view = memoryview(data)[:room]
            while view:
                written = os.write(self.spill_fd, view)
                view = view[written:]
                self.spilled += written
        except OSError as exc:
            self.spill_error = f"full output file stopped at {self.spilled} bytes: {exc.strerror}"
            self.close_spill()

    def close_spill(self) -> None:
        if self.spill_fd is not None:
            os.close(self.spill_fd)
            self.spill_fd = None

    def read_from(self, cursor: int, max_bytes: int) -> dict[str, object]:
        """Bytes from absolute offset `cursor` (clamped to what the ring still holds)."""
        dropped = max(0, self.ring_start - cursor)
        start = max(cursor, self.ring_start)
        chunk = bytes(self.ring[start - self.ring_start : start - self.ring_start + max_bytes])
        return {
            "data": base64.b64encode(chunk).decode(),
            "start": start,
            "next_cursor": start + len(chunk),
            "dropped": dropped,
            "total": self.total,
        }

    def summary(self, cap: int) -> dict[str, object]:
        """Everything if it fits in `cap`, else the first quarter and the last three quarters."""
        if self.total <= cap:
            data = bytes(self.ring[-self.total :]) if self.total else b""
            head, tail = data, b""
        else:
            head = bytes(self.head[: cap // 4])
            tail = bytes(self.ring[-(cap - len(head)) :])
        return {
            "head": base64.b64encode(head).decode(),
            "tail": base64.b64encode(tail).decode(),
            "total": self.total,
            "full_path": self.spill_path if self.spill_fd is not None or self.spilled else None,
            "full_bytes": self.spilled,
            "full_complete": self.spilled == self.total and not self.spill_error,
            "note": self.spill_error,
        }


class Proc:
    """A command the agent started through a keeper (see keeper.py); the command leads its own group."""

    def __init__(
        self,
        proc_id: str,
        pid: int,
        keeper_pid: int,
        status_fd: int,
        pipes: dict[str, int],
        stdin_fd: int | None,
        command: str,
        streams: dict[str, Stream],
        foreground: bool,
    ) -> None:
        self.id = proc_id
        self.pid = pid
        self.keeper_pid = keeper_pid
        #: The keeper's reports (JSON lines); None once closed.
        self.status_fd: int | None = status_fd
        self.status_buffer = b""
        #: Our read ends of the command's stdout and stderr, until their EOF.
        self.pipes = dict(pipes)
        self.command = command
        self.streams = streams
        self.foreground = foreground
        self.started = _now()
        self.ended: float | None = None
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.kill_at: float | None = None  # SIGKILL deadline after a SIGTERM
        self.killed_by: str = ""
        self.stdin_fd = stdin_fd
        #: The keeper lives as long as anything of the command's tree does.
        self.keeper_alive = True

    def exited(self, status: int) -> None:
        """Record the command's wait status."""
        self.ended = _now()
        if os.WIFSIGNALED(status):
            self.signal = os.WTERMSIG(status)
            self.exit_code = 128 + self.signal
        else:
            self.exit_code = os.WEXITSTATUS(status)

    @property
    def running(self) -> bool:
        return self.ended is None

    def info(self) -> dict[str, object]:
        end = self.ended if self.ended is not None else _now()
        return {
            "proc_id": self.id,
            "pid": self.pid,
            "command": self.command,
            "running": self.running,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "killed_by": self.killed_by,
            "elapsed_ms": int((end - self.started) * 1000),
            "stdout_bytes": self.streams["stdout"].total,
            "stderr_bytes": self.streams["stderr"].total,
            "stdin_open": self.stdin_fd is not None,
        }


def open_private_file(path: str) -> int:
    """Create `path` afresh for writing, never through a symlink, FIFO or device someone planted.

    The directory is opened without following a symlink; whatever sits at the name is removed and
    the file created with O_EXCL (which never follows a symlink nor opens a FIFO), so the agent
    cannot be made to block on a FIFO or to write through a link. Raises OSError.
    """
    directory, name = os.path.split(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for _ in range(3):
            try:
                fd = os.open(
                    name,
                    os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                    0o600,
                    dir_fd=dir_fd,
                )
            except FileExistsError:
                try:
                    os.unlink(name, dir_fd=dir_fd)
                except IsADirectoryError:
                    raise OSError(errno.EEXIST, f"{path} is a directory") from None
                except FileNotFoundError:
                    pass
                continue
            if not stat.S_ISREG(os.fstat(fd).st_mode):  # cannot happen with O_EXCL; be explicit
                os.close(fd)
                raise OSError(errno.EINVAL, f"{path} is not a regular file")
            return fd
        raise OSError(errno.EEXIST, f"something keeps re-creating {path}")
    finally:
        os.close(dir_fd)
