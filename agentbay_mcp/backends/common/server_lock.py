"""Which server processes on this state dir are alive, without trusting pids.

Each server holds an exclusive `flock` on `servers/<server_id>.lock` for its whole life. The kernel
drops the lock when the process dies, however it dies (SIGKILL included), so "can I take the lock?"
answers "is that server gone?" with no pid-reuse race. The lock file appears already locked: it is
created and locked under a temporary name and then renamed into place, so a neighbour's reaper can
never grab a starting server's lock.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import secrets
import time
from pathlib import Path

from pydantic import BaseModel


class ServerInfo(BaseModel):
    """What a lock file says about the server that holds it."""

    server_id: str
    pid: int
    started_at: float


#: The shape of the server ids new_server_id makes.
_SERVER_ID = re.compile(r"srv-[0-9a-f]{16}")


def is_server_id(text: str) -> bool:
    """Whether `text` has the shape of a server id this program makes (check ids read from foreign data)."""
    return bool(_SERVER_ID.fullmatch(text))


def new_server_id() -> str:
    """A fresh, unguessable server instance id."""
    return "srv-" + secrets.token_hex(8)


class ServerLock:
    """The lock this process holds for its server identity."""

    def __init__(self, servers_dir: Path, server_id: str) -> None:
        self.servers_dir = servers_dir
        self.server_id = server_id
        self.path = servers_dir / f"{server_id}.lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        """Create, lock and publish the lock file."""
        self.servers_dir.mkdir(parents=True, exist_ok=True)
        staging = self.servers_dir / f".{self.server_id}.{os.getpid()}.tmp"
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            info = ServerInfo(server_id=self.server_id, pid=os.getpid(), started_at=time.time())
            os.write(fd, info.model_dump_json().encode())
            staging.rename(self.path)
        except BaseException:
            os.close(fd)
            staging.unlink(missing_ok=True)
            raise
        self._fd = fd

    def release(self) -> None:
        """Unpublish and unlock (idempotent)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        except OSError:
            pass  # a read-only state dir: the unlocked file is litter the next reaper removes
        finally:
            os.close(self._fd)
            self._fd = None


def server_alive(servers_dir: Path, server_id: str) -> bool:
    """True while the server `server_id` holds its lock; cleans up the lock file of a dead one."""
    path = servers_dir / f"{server_id}.lock"
    try:
        # Read-only is enough for flock, and works on a read-only state dir (operators look at those too).
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                return True
            raise
        # We got the lock, so its owner is dead: the file is litter now (kept if the dir is read-only).
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        return False
    finally:
        os.close(fd)


def read_server_info(servers_dir: Path, server_id: str) -> ServerInfo | None:
    """The lock file's contents, if it is there and readable."""
    with contextlib.suppress(OSError, ValueError):
        return ServerInfo.model_validate_json((servers_dir / f"{server_id}.lock").read_bytes())
    return None


def live_servers(servers_dir: Path) -> dict[str, ServerInfo | None]:
    """Every server whose lock is held right now."""
    alive: dict[str, ServerInfo | None] = {}
    with contextlib.suppress(FileNotFoundError):
        for entry in servers_dir.iterdir():
            if entry.suffix == ".lock" and not entry.name.startswith("."):
                server_id = entry.stem
                if server_alive(servers_dir, server_id):
                    alive[server_id] = read_server_info(servers_dir, server_id)
    return alive
