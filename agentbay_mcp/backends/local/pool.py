"""A small pool of pre-started sessions, so create_session hands out a sandbox that already answers.

Starting a sandbox (bubblewrap, then the agent's python3 answering) is most of create_session's cost;
the pool pays it ahead of time. Each pooled entry is a whole session of this server, built by the very
path create_session takes (its own directory, disk quota, cgroup with the session limits, sandbox),
owned by POOL_OWNER until it is handed out. So everything that holds for a session holds for it: the
host's accounting (cgroups, disks, `agentbay-mcp sessions list`) sees it, a SIGKILLed server's pooled
sessions are reaped by the next start-up like any orphan, and shutdown deletes them.

Hand-out is synchronous (`take`), so on one event loop no two callers can get the same entry, and an
entry leaves the pool for good when taken: a pooled sandbox serves exactly one session, then a fresh
one is built in the background. Refills run one at a time, so a burst of creations costs the other
calls at most one sandbox start at once on a small host.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import TaskGroup

from agentbay_mcp.backends.records import SessionRecord

logger = logging.getLogger(__name__)

#: The owner a pooled session's record carries until it is handed out (never a conversation id).
POOL_OWNER = "(pool)"
#: After a failed refill, wait this long before the next try (doubling up to the maximum).
RETRY_SECONDS = 1.0
MAX_RETRY_SECONDS = 60.0
#: A refill waits this long after a hand-out: the new session's first commands usually follow at once,
#: and should not share this host's cores with a sandbox start.
REFILL_DELAY_SECONDS = 0.1
#: Upper bound for deleting the pool at shutdown (part of the server's 2 s exit budget).
CLOSE_TIMEOUT_SECONDS = 1.0


class SessionPool:
    """Up to `size` pre-started sessions, refilled in the background; `size` 0 is no pool at all."""

    def __init__(
        self,
        size: int,
        *,
        make: Callable[[], Awaitable[SessionRecord]],
        usable: Callable[[str], bool],
        delete: Callable[[str], Awaitable[None]],
    ) -> None:
        self.size = size
        self._make = make
        self._usable = usable
        self._delete = delete
        self._ready: collections.deque[str] = collections.deque()
        self._closed = False
        # Made by `start`, on the event loop (a backend may be built before one runs, e.g. by the CLI).
        self._task_group: TaskGroup | None = None
        self._scope: anyio.CancelScope | None = None
        self._wanted: anyio.Event | None = None
        self._stopped: anyio.Event | None = None

    def __len__(self) -> int:
        return len(self._ready)

    def start(self, task_group: TaskGroup) -> None:
        """Fill the pool in the background, and keep it filled until `close`."""
        if self.size > 0 and self._task_group is None and not self._closed:
            self._task_group = task_group
            self._scope, self._wanted, self._stopped = anyio.CancelScope(), anyio.Event(), anyio.Event()
            task_group.start_soon(self._refill, self._scope, self._stopped)

    def take(self) -> str | None:
        """A pooled session, removed from the pool for good; None if none is ready."""
        taken = None
        while not self._closed and self._ready and taken is None:
            session_id = self._ready.popleft()
            if self._usable(session_id):
                taken = session_id
            else:  # its sandbox died while waiting: nobody gets it
                logger.info("pooled session %s lost its sandbox; discarding it", session_id)
                if self._task_group is not None:
                    self._task_group.start_soon(self._delete_quietly, session_id)
        if self._wanted is not None:
            self._wanted.set()
        return taken

    async def close(self) -> None:
        """Stop refilling and delete every pooled session (bounded in time; start-up reaps the rest)."""
        self._closed = True
        if self._scope is not None:
            self._scope.cancel()
        with anyio.move_on_after(CLOSE_TIMEOUT_SECONDS, shield=True):
            if self._stopped is not None:
                await self._stopped.wait()  # a refill in progress finishes, into the pool
            pooled, self._ready = list(self._ready), collections.deque()
            async with anyio.create_task_group() as tg:
                for session_id in pooled:
                    tg.start_soon(self._delete_quietly, session_id)

    async def _refill(self, scope: anyio.CancelScope, stopped: anyio.Event) -> None:
        retry = RETRY_SECONDS
        try:
            with scope:
                while True:
                    while len(self._ready) < self.size and not self._closed:
                        try:
                            # Shielded: a start cut short could leave half a session behind. `close`
                            # waits for it (a sandbox starts in well under its bound) and deletes it.
                            with anyio.CancelScope(shield=True):
                                session_id = (await self._make()).session_id
                            self._ready.append(session_id)
                            logger.debug("pooled session %s is ready (%d of %d)", session_id, len(self), self.size)
                            retry = RETRY_SECONDS
                        except Exception as exc:
                            # Not fatal: create_session still works without the pool (and says why if not).
                            logger.warning("could not pre-start a pooled session (%s); retrying in %.0f s", exc, retry)
                            await anyio.sleep(retry)
                            retry = min(retry * 2, MAX_RETRY_SECONDS)
                    assert self._wanted is not None
                    await self._wanted.wait()
                    self._wanted = anyio.Event()
                    await anyio.sleep(REFILL_DELAY_SECONDS)
        finally:
            stopped.set()

    async def _delete_quietly(self, session_id: str) -> None:
        try:
            await self._delete(session_id)
        except Exception as exc:  # start-up reaps what could not be deleted now
            logger.warning("could not delete pooled session %s: %s", session_id, exc)
