"""The memory backend's contexts: each a copy of a subtree, kept in this process's memory.

The same semantics as the real backends: a context's content is copied into a session at its path when
the session is created, and copied back (the whole subtree: the last sync wins) on sync_context and when
the session is deleted; a sync that finds the context moved on since the session last saw it warns.
"""

from __future__ import annotations

import copy
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agentbay_mcp.backends.records import SessionRecord
from agentbay_mcp.backends.records_contexts import CONTEXT_NAME, ContextMount, ContextRecord, ContextSynced
from agentbay_mcp.errors import ContextNotFoundError, InvalidArgumentError, SessionNotFoundError
from agentbay_mcp.testing.memory_files import Node, Tree


@dataclass
class _Context:
    record: ContextRecord
    nodes: dict[str, Node] = field(default_factory=dict)  # relative path -> node
    version: int = 0
    synced_by: str = ""


class MemoryContexts:
    """Contexts by (owner, name); the sessions' records and trees are the backend's."""

    def __init__(self, records: dict[str, SessionRecord], trees: dict[str, Tree]) -> None:
        self._records = records
        self._trees = trees
        self._contexts: dict[tuple[str, str], _Context] = {}
        self._bases: dict[tuple[str, str], int] = {}  # (session, context id) -> version it last saw

    async def get_context(self, owner: str, name: str, *, create: bool) -> ContextRecord:
        """The owner's context, made empty first if asked."""
        if not CONTEXT_NAME.match(name):
            raise ContextNotFoundError(name)
        found = self._contexts.get((owner, name))
        if found is None:
            if not create:
                raise ContextNotFoundError(name)
            record = ContextRecord(
                context_id="ctx-" + secrets.token_hex(8), name=name, owner=owner, created_at=datetime.now(UTC)
            )
            found = self._contexts[(owner, name)] = _Context(self._sized(record, {}))
        return self._live(found)

    async def list_contexts(self, owner: str) -> list[ContextRecord]:
        """The owner's contexts, by name."""
        return [self._live(found) for (who, _), found in sorted(self._contexts.items()) if who == owner]

    async def delete_context(self, owner: str, name: str) -> None:
        """Forget the context, unless a session has it."""
        found = self._contexts.get((owner, name))
        if found is None:
            raise ContextNotFoundError(name)
        users = self._users(found.record.context_id)
        if users:
            raise InvalidArgumentError(
                f"Context {name!r} is in use by session {', '.join(users)}: delete it after that session ends."
            )
        del self._contexts[(owner, name)]

    async def sync_context(self, session_id: str, name: str | None = None) -> list[ContextSynced]:
        """Copy the session's subtrees back into their contexts."""
        record = self._records.get(session_id)
        if record is None:
            raise SessionNotFoundError(session_id)
        mounts = [mount for mount in record.contexts if name is None or mount.name == name]
        if name is not None and not mounts:
            raise InvalidArgumentError(f"Session {session_id} has no context named {name!r}.")
        return [self._sync(session_id, mount) for mount in mounts]

    # ---- for the backend ----------------------------------------------------------------------

    def mount(self, session_id: str, mounts: tuple[ContextMount, ...]) -> None:
        """Copy each context into the new session's tree at its path."""
        tree = self._trees[session_id]
        for mount in mounts:
            found = self._by_id(mount)
            tree.makedirs(mount.path)
            for rel, node in found.nodes.items():
                tree.nodes[f"{mount.path}/{rel}"] = copy.deepcopy(node)
            self._bases[(session_id, mount.context_id)] = found.version
            found.record = found.record.model_copy(update={"last_used_at": datetime.now(UTC)})

    def unmount(self, session_id: str) -> None:
        """Write the session's contexts back (it is being deleted)."""
        record = self._records.get(session_id)
        for mount in record.contexts if record else ():
            if self._contexts.get((mount.owner, mount.name)) is not None:
                self._sync(session_id, mount)
            self._bases.pop((session_id, mount.context_id), None)

    # ---- inside -------------------------------------------------------------------------------

    def _by_id(self, mount: ContextMount) -> _Context:
        found = self._contexts.get((mount.owner, mount.name))
        if found is None or found.record.context_id != mount.context_id:
            raise ContextNotFoundError(mount.name)
        return found

    def _sync(self, session_id: str, mount: ContextMount) -> ContextSynced:
        found = self._by_id(mount)
        prefix = mount.path + "/"
        nodes = {
            path[len(prefix) :]: copy.deepcopy(node)
            for path, node in self._trees[session_id].nodes.items()
            if path.startswith(prefix)
        }
        warning = ""
        if found.version != self._bases.get((session_id, mount.context_id), found.version):
            warning = f"This sync replaced what session {found.synced_by} synced since this session last saw it."
        found.nodes, found.version, found.synced_by = nodes, found.version + 1, session_id
        self._bases[(session_id, mount.context_id)] = found.version
        found.record = self._sized(found.record, nodes).model_copy(update={"last_used_at": datetime.now(UTC)})
        record = found.record
        return ContextSynced(
            name=mount.name,
            path=mount.path,
            size_bytes=record.size_bytes,
            file_count=record.file_count,
            warning=warning,
        )

    @staticmethod
    def _sized(record: ContextRecord, nodes: dict[str, Node]) -> ContextRecord:
        files = [node for node in nodes.values() if not node.directory]
        return record.model_copy(update={"size_bytes": sum(len(n.data) for n in files), "file_count": len(files)})

    def _users(self, context_id: str) -> list[str]:
        return sorted(
            session_id
            for session_id, record in self._records.items()
            if any(mount.context_id == context_id for mount in record.contexts)
        )

    def _live(self, found: _Context) -> ContextRecord:
        return found.record.model_copy(update={"in_use_by": tuple(self._users(found.record.context_id))})
