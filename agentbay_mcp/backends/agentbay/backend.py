"""The AgentBay backend: sessions are Wuying AgentBay cloud sessions, reached over the OpenAPI.

Session actions (and the ownership labels that make orphan reaping safe) are in sessions.py;
its capability objects (capabilities.py) run commands, files and the desktop through the in-session
tools (tools.py), over the route the session's channel offers (routing.py: its direct LinkUrl, else
CallMcpTool). Contexts are the cloud's own (contexts.py): mounted by PersistenceDataList at create,
written back before every release.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import anyio
from anyio.abc import TaskGroup

from agentbay_mcp.backends.agentbay import desktop
from agentbay_mcp.backends.agentbay.capabilities import (
    AgentBayDesktop,
    AgentBayFiles,
    AgentBayProcesses,
)
from agentbay_mcp.backends.agentbay.client import AgentBayClient
from agentbay_mcp.backends.agentbay.commands import BACKGROUND_UNSUPPORTED
from agentbay_mcp.backends.agentbay.contexts import CloudContexts
from agentbay_mcp.backends.agentbay.network import AgentBayNetwork
from agentbay_mcp.backends.agentbay.routing import ToolRouter
from agentbay_mcp.backends.agentbay.sessions import EGRESS_UNSUPPORTED, CloudSessions, default_instance
from agentbay_mcp.backends.common.server_lock import ServerLock, new_server_id
from agentbay_mcp.backends.common.unsupported import unsupported_mounts
from agentbay_mcp.backends.records import Capabilities, ImageInfo, NetworkPolicy, SessionRecord
from agentbay_mcp.backends.records_contexts import ContextMount
from agentbay_mcp.errors import (
    BackendUnavailableError,
)

logger = logging.getLogger(__name__)

IMAGES: tuple[ImageInfo, ...] = (
    ImageInfo(image_id="linux_latest", description="Linux cloud desktop: shell, files, apps, windows.", desktop=True),
    ImageInfo(image_id="code_latest", description="Linux for code: shell, files, run_code; no desktop.", desktop=False),
    ImageInfo(image_id="browser_latest", description="Browser image (no window or app control).", desktop=False),
    ImageInfo(image_id="windows_latest", description="Windows cloud desktop.", desktop=True),
    ImageInfo(image_id="mobile_latest", description="Android cloud phone.", desktop=False),
)
CAPABILITIES = Capabilities(
    process_handles=False,
    window_states=False,
    sandbox_side_timeouts=True,
    desktop=True,
    port_links=True,
    contexts=True,
    unsupported={
        "process_handles": BACKGROUND_UNSUPPORTED,
        "egress_rules": EGRESS_UNSUPPORTED,
        "workspaces": "The agentbay backend cannot show this host's directories in a cloud session: workspaces "
        "need the local backend. Use a context to carry files into cloud sessions.",
    },
)


class AgentBayBackend:
    """Sessions in the AgentBay cloud. One instance per server process."""

    def __init__(
        self,
        client: AgentBayClient,
        *,
        state_dir: Path,
        instance: str | None = None,
        idle_timeout_seconds: float = 1800.0,
        delete_wait_seconds: float = 60.0,
        server_id: str | None = None,
        page_size: int = 100,
    ) -> None:
        self._client = client
        self._servers_dir = state_dir / "agentbay-servers"
        self._server_id = server_id or new_server_id()
        self._lock = ServerLock(self._servers_dir, self._server_id)
        self.instance = instance or default_instance(state_dir)
        self._sessions = CloudSessions(
            client,
            servers_dir=self._servers_dir,
            server_id=self._server_id,
            instance=self.instance,
            idle_timeout_seconds=idle_timeout_seconds,
            delete_wait_seconds=delete_wait_seconds,
            page_size=page_size,
        )
        self._route = ToolRouter(client, self._sessions)
        # What it can do (no process handles, no window states, no egress rules), and its capability objects.
        self.capabilities: Final = CAPABILITIES
        self.processes: Final = AgentBayProcesses(self._route, self._known)
        self.process_handles: Final = None
        self.files: Final = AgentBayFiles(self._route)
        self.desktop: Final = AgentBayDesktop(self._route, self._fetch_screenshot)
        self.network: Final = AgentBayNetwork(client)  # port links (GetLink); no egress rules
        notices = state_dir / "agentbay-context-notices.json"
        self.contexts: Final = CloudContexts(client, self._sessions.get, notices_file=notices)
        self._sessions.before_delete = self.contexts.write_back  # contexts go back before a release
        self.workspaces: Final = None

    @property
    def name(self) -> str:
        """Backend name."""
        return "agentbay"

    @property
    def server_id(self) -> str:
        """This server instance's id (label agentbay-mcp.server)."""
        return self._server_id

    def images(self) -> list[ImageInfo]:
        """AgentBay's standard images (custom imgc-... images of the account work too)."""
        return list(IMAGES)

    async def start(self, task_group: TaskGroup) -> list[str]:
        """Claim this server's lock, check the key (the first API call does), and reap orphans."""
        try:
            self._lock.acquire()
        except OSError as exc:
            raise BackendUnavailableError(
                f"State dir {self._servers_dir.parent} is not usable ({exc.strerror or exc}); the agentbay "
                "backend keeps its server locks there. Point --state-dir at a writable directory."
            ) from exc
        try:
            return await self.reap_orphans()
        except BaseException:
            self._lock.release()
            raise

    async def close(self) -> None:
        """Give up the server lock."""
        self._lock.release()

    # Sessions -------------------------------------------------------------------------------

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
        """CreateMcpSession, never retried once sent; an answer lost in transit is found and deleted."""
        unsupported_mounts(self.capabilities, contexts, workspaces)
        record = await self._sessions.create(
            image_id=image_id, labels=labels, owner=owner, network=network, contexts=contexts
        )
        if contexts:
            try:
                await self.contexts.mounted(record.session_id, record.contexts)
            except BaseException:
                # Not written back: the contexts' content may not have arrived, so it must not be written over.
                self.contexts.mounts.pop(record.session_id, None)
                with anyio.CancelScope(shield=True):
                    await self._sessions.delete(record.session_id, write_back=False)
                raise
        return record

    async def get_session(self, session_id: str) -> SessionRecord:
        """GetSession (status, channel) and GetLabel (labels, ownership)."""
        return await self._sessions.get(session_id)

    async def set_labels(self, session_id: str, labels: dict[str, str]) -> SessionRecord:
        """SetLabel with the new map plus this server's ownership labels."""
        return await self._sessions.set_labels(session_id, labels)

    async def keep_alive(self, session_id: str) -> None:
        """RefreshSessionIdleTime, best effort."""
        await self._sessions.keep_alive(session_id)

    async def delete_session(self, session_id: str) -> None:
        """Write its contexts back (contexts.py), DeleteSessionAsync, then poll until it is gone (bounded).
        Idempotent."""
        self.processes.drop_session(session_id)
        self.desktop.drop_session(session_id)
        await self._sessions.delete(session_id)

    async def reap_orphans(self) -> list[str]:
        """Delete this instance's sessions whose server is gone."""
        return await self._sessions.reap()

    async def list_all(self) -> list[SessionRecord]:
        """Every live session of this instance (any server's); never other people's sessions."""
        return await self._sessions.list_all()

    async def _known(self, session_id: str) -> None:
        """SessionNotFoundError unless the session is known (a GetSession call if it was not seen yet)."""
        if session_id not in self._sessions.channels:
            await self.get_session(session_id)

    async def _fetch_screenshot(self, url: str) -> bytes:
        return await self._client.fetch(url, max_bytes=desktop.MAX_SCREENSHOT_BYTES)
