"""An in-memory backend: the project's test double (what httpx's MockTransport is to httpx).

Sessions are records in a dict, files a tree per session (memory_files.py), processes a small
scripted shell (memory_processes.py). It has no desktop and declares so; it keeps process handles.
It starts in microseconds and needs neither bubblewrap nor a network, so service rules can be
tested on it; it runs the shared contract suite (`tests/contract/`), which skips what it lacks.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Sequence
from typing import Final

from anyio.abc import TaskGroup

from agentbay_mcp.backends.common.unsupported import unsupported_mounts
from agentbay_mcp.backends.records import Capabilities, ImageInfo, LinkRecord, NetworkPolicy, SessionRecord
from agentbay_mcp.backends.records_contexts import ContextMount
from agentbay_mcp.errors import BackendUnavailableError, SessionNotFoundError, UnknownImageError
from agentbay_mcp.testing.memory_contexts import MemoryContexts
from agentbay_mcp.testing.memory_files import MemoryFiles, Tree
from agentbay_mcp.testing.memory_processes import MemoryProcesses

CAPABILITIES = Capabilities(
    process_handles=True,
    window_states=False,
    sandbox_side_timeouts=False,
    desktop=False,
    egress_rules=True,
    contexts=True,
    unsupported={
        "desktop": "The memory backend has no desktop: apps, windows and screenshots need the local or agentbay "
        "backend.",
        "port_links": "The memory backend serves no ports: links need the local or agentbay backend.",
        "workspaces": "The memory backend has no host directories: workspaces need the local backend.",
    },
)


class MemoryNetwork:
    """Egress policies kept in the records (nothing runs to enforce them); no port links."""

    def __init__(self, records: dict[str, SessionRecord]) -> None:
        self._records = records

    async def set_egress(self, session_id: str, policy: NetworkPolicy) -> None:
        """Keep the policy in the session's record."""
        if session_id not in self._records:
            raise SessionNotFoundError(session_id)
        self._records[session_id] = self._records[session_id].model_copy(update={"network": policy})

    async def open_link(self, session_id: str, port: int, protocol: str) -> LinkRecord:
        """Not here: see CAPABILITIES.unsupported."""
        raise BackendUnavailableError(CAPABILITIES.unsupported["port_links"])


IMAGES: tuple[ImageInfo, ...] = (
    ImageInfo(
        image_id="linux_latest", description="In memory: files and scripted commands (no desktop).", desktop=False
    ),
    ImageInfo(image_id="code_latest", description="In memory: files and scripted commands.", desktop=False),
)


class MemoryBackend:
    """Sessions, files and processes in this process's memory. One instance per server (or test)."""

    def __init__(self, *, server_id: str | None = None) -> None:
        self.name: Final = "memory"
        self.server_id: Final = server_id or "memory-" + secrets.token_hex(4)
        self._records: dict[str, SessionRecord] = {}
        self._trees: dict[str, Tree] = {}
        self._ids = itertools.count(1)
        # What it can do (no desktop), and its capability objects (see backends/protocols.py).
        self.capabilities: Final = CAPABILITIES
        self.files: Final = MemoryFiles(self._trees)
        self.processes: Final = MemoryProcesses(self._known, self._read)
        self.process_handles: Final = self.processes
        self.desktop: Final = None
        self.network: Final = MemoryNetwork(self._records)
        self.contexts: Final = MemoryContexts(self._records, self._trees)
        self.workspaces: Final = None
        #: Session ids whose keep_alive was called, in order (tests look).
        self.kept_alive: list[str] = []

    # ---- what it is --------------------------------------------------------------------------

    def images(self) -> list[ImageInfo]:
        """Two images, neither with a desktop."""
        return list(IMAGES)

    # ---- the session lifecycle ---------------------------------------------------------------

    async def start(self, task_group: TaskGroup) -> list[str]:
        """Nothing to reap: memory dies with the process. Processes run in `task_group`."""
        self.processes.start(task_group)
        return []

    async def close(self) -> None:
        """Kill what still runs."""
        for session_id in list(self._records):
            self.processes.drop_session(session_id)

    async def create_session(
        self,
        *,
        image_id: str,
        labels: dict[str, str],
        owner: str,
        network: NetworkPolicy | None = None,
        contexts: Sequence[ContextMount] = (),
        workspaces: Sequence[str] = (),
    ) -> SessionRecord:
        """A record and an empty tree (with /home/user and /tmp)."""
        unsupported_mounts(self.capabilities, contexts, workspaces)
        if image_id not in {image.image_id for image in IMAGES}:
            raise UnknownImageError(
                f"Unknown image_id {image_id!r}. The memory backend offers: {', '.join(i.image_id for i in IMAGES)}."
            )
        session_id = f"session-{next(self._ids):024d}"
        record = SessionRecord.new(
            session_id,
            image_id=image_id,
            labels=labels,
            owner=owner,
            server_id=self.server_id,
            network=network,
            contexts=contexts,
        )
        self._trees[session_id] = Tree()
        try:
            self.contexts.mount(session_id, record.contexts)
        except BaseException:
            del self._trees[session_id]  # a failed mount leaves nothing behind
            raise
        self._records[session_id] = record
        return record

    def _known(self, session_id: str) -> None:
        if session_id not in self._records:
            raise SessionNotFoundError(session_id)

    def _read(self, session_id: str, path: str) -> bytes:
        tree = self.files.tree(session_id)
        return bytes(tree.file(tree.resolve(path)).data)

    async def get_session(self, session_id: str) -> SessionRecord:
        """The record, or SessionNotFoundError."""
        self._known(session_id)
        return self._records[session_id]

    async def set_labels(self, session_id: str, labels: dict[str, str]) -> SessionRecord:
        """Replace the label map."""
        self._known(session_id)
        record = self._records[session_id].model_copy(update={"labels": dict(labels)})
        self._records[session_id] = record
        return record

    async def keep_alive(self, session_id: str) -> None:
        """Noted in `kept_alive`; unknown ids are fine (best effort, as everywhere)."""
        if session_id in self._records:
            self.kept_alive.append(session_id)

    async def delete_session(self, session_id: str) -> None:
        """Write its contexts back, then forget the session, its files and its processes. Idempotent."""
        self.contexts.unmount(session_id)
        self._records.pop(session_id, None)
        self._trees.pop(session_id, None)
        self.processes.drop_session(session_id)

    async def reap_orphans(self) -> list[str]:
        """Nothing: no other server shares this memory."""
        return []

    async def list_all(self) -> list[SessionRecord]:
        """Every session."""
        return list(self._records.values())
