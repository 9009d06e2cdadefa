"""Cloud sessions of the AgentBay backend: create, look up, label, list, delete and reap over the API.

Ownership lives in the cloud, as labels under `agentbay-mcp.` on every session this server
creates: the instance (host and state dir, or AGENTBAY_MCP_AGENTBAY_INSTANCE), the server process,
the conversation, the image and the creation time. Each server holds a lock file for its life (as
the local backend does), so a restarted server reaps the sessions of dead servers of its own
instance and never touches a live neighbour's, nor any session without its instance label.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio

from agentbay_mcp.backends.agentbay import context_wire, tools
from agentbay_mcp.backends.agentbay.client import AgentBayClient
from agentbay_mcp.backends.agentbay.json_text import loads
from agentbay_mcp.backends.common.labels import RESERVED_PREFIX
from agentbay_mcp.backends.common.server_lock import is_server_id, server_alive
from agentbay_mcp.backends.records import NetworkPolicy, SessionRecord, SessionStatus
from agentbay_mcp.backends.records_contexts import ContextMount
from agentbay_mcp.errors import (
    AgentBayMCPError,
    BackendError,
    BackendUnavailableError,
    CloudAPIError,
    SessionNotFoundError,
)

logger = logging.getLogger(__name__)

LABEL_INSTANCE = RESERVED_PREFIX + "instance"
LABEL_SERVER = RESERVED_PREFIX + "server"
LABEL_OWNER = RESERVED_PREFIX + "owner"
LABEL_IMAGE = RESERVED_PREFIX + "image"
LABEL_CREATED = RESERVED_PREFIX + "created"
#: A fresh value per create call, so an answer lost in transit can still be found and deleted.
LABEL_CREATE = RESERVED_PREFIX + "create"
#: The cloud's own idle release comes this long after our lease: our lease decides, the cloud is the net.
CLOUD_IDLE_MARGIN_SECONDS = 300
_GONE = {"DELETED", "FINISH", "RELEASED"}


def default_instance(state_dir: Path) -> str:
    """This host and state dir, hashed: servers that share both reap each other's orphans."""
    seed = f"{socket.gethostname()}:{state_dir.expanduser().absolute()}"
    return "inst-" + hashlib.sha256(seed.encode()).hexdigest()[:16]


#: A cloud session has the cloud's own network: always on, and no egress rules to apply.
CLOUD_NETWORK = NetworkPolicy(mode="on")
EGRESS_UNSUPPORTED = (
    "The agentbay backend cannot apply egress rules: a cloud session has AgentBay's own network. Use "
    "network='on' (or leave it out), or the local backend for allow-lists."
)


@dataclass
class Channel:
    """How to reach a session's tools: LinkUrl + token (direct) and tool -> server names."""

    link_url: str = ""
    token: str = ""
    servers: dict[str, str] = field(default_factory=dict)

    def direct_for(self, tool: str) -> bool:
        """Whether `tool` goes over LinkUrl (no message size limit): the session offers LinkUrl and lists
        the server that has the tool (else it goes through CallMcpTool)."""
        return bool(self.link_url and self.token and self.servers.get(tool))


def channel_of(data: Any) -> Channel:
    """The channel a GetSession/CreateMcpSession reply describes."""
    if not isinstance(data, dict):
        return Channel()
    return Channel(
        link_url=str(data.get("LinkUrl") or ""),
        token=str(data.get("Token") or ""),
        servers=tools.tool_servers(data.get("ToolList")),
    )


class CloudSessions:
    """The session actions, for one server instance."""

    def __init__(
        self,
        client: AgentBayClient,
        *,
        servers_dir: Path,
        server_id: str,
        instance: str,
        idle_timeout_seconds: float,
        delete_wait_seconds: float,
        page_size: int = 100,
    ) -> None:
        self.client = client
        self.servers_dir = servers_dir
        self.server_id = server_id
        self.instance = instance
        self.cloud_idle_seconds = int(idle_timeout_seconds) + CLOUD_IDLE_MARGIN_SECONDS
        self.delete_wait_seconds = delete_wait_seconds
        self.page_size = page_size
        self.channels: dict[str, Channel] = {}
        #: Runs before a session is released (the contexts' write-back); set by the backend.
        self.before_delete: Callable[[str], Awaitable[None]] | None = None

    async def create(
        self,
        *,
        image_id: str,
        labels: dict[str, str],
        owner: str,
        network: NetworkPolicy | None = None,
        contexts: Sequence[ContextMount] = (),
    ) -> SessionRecord:
        """CreateMcpSession, never retried once sent; an answer lost in transit is found and deleted."""
        if network is not None and network.mode == "allow":
            raise BackendUnavailableError(EGRESS_UNSUPPORTED)
        created_at = datetime.now(UTC)
        nonce = secrets.token_hex(8)
        cloud_labels = {
            **labels,
            LABEL_INSTANCE: self.instance,
            LABEL_SERVER: self.server_id,
            LABEL_OWNER: owner,
            LABEL_IMAGE: image_id,
            LABEL_CREATED: created_at.isoformat(timespec="microseconds"),
            LABEL_CREATE: nonce,
        }
        if contexts:  # the mounts, for whoever rebuilds this session's record from the cloud (context_wire.py)
            cloud_labels[context_wire.LABEL_CONTEXTS] = context_wire.mounts_label(contexts)
        params: dict[str, str | int | bool | None] = {
            "ImageId": image_id,
            "Labels": json.dumps(cloud_labels),
            "Timeout": self.cloud_idle_seconds,
            "PersistenceDataList": context_wire.persistence_data_list(contexts) if contexts else None,
        }
        try:
            reply = await self.client.call("CreateMcpSession", params, idempotent=False)
            data = reply.data if isinstance(reply.data, dict) else {}
            if data.get("Success") is False:
                raise CloudAPIError(f"AgentBay could not create the session: {data.get('ErrMsg') or 'no reason given'}")
            session_id = data.get("SessionId")
            if not isinstance(session_id, str) or not session_id:
                raise BackendError("AgentBay's CreateMcpSession reply has no SessionId.")
        except BackendError:
            # Timeouts, broken connections and garbled replies may hide a session that was created.
            with anyio.CancelScope(shield=True):
                await self._delete_by_label(LABEL_CREATE, nonce)
            raise
        self.channels[session_id] = channel_of(data)
        # Cloud sessions reach the network their image gives them; the local network policy cannot apply.
        return SessionRecord(
            session_id=session_id,
            image_id=image_id,
            labels=dict(labels),
            owner=owner,
            server_id=self.server_id,
            created_at=created_at,
            network=CLOUD_NETWORK,
            contexts=tuple(contexts),
        )

    async def get(self, session_id: str) -> SessionRecord:
        """GetSession (status, channel) and GetLabel (labels, ownership)."""
        return (await self._get(session_id))[0]

    async def _get(self, session_id: str) -> tuple[SessionRecord, dict[str, str]]:
        reply = await self.client.call("GetSession", {"SessionId": session_id}, idempotent=True)
        data = reply.data if isinstance(reply.data, dict) else {}
        status = str(data.get("Status") or "RUNNING").upper()
        if status in _GONE:
            self.channels.pop(session_id, None)
            raise SessionNotFoundError(session_id)
        self.channels[session_id] = channel_of(data)
        cloud_labels = await self._labels(session_id)
        return _record(session_id, cloud_labels, status, str(data.get("ImageId") or "")), cloud_labels

    async def set_labels(self, session_id: str, labels: dict[str, str]) -> SessionRecord:
        """SetLabel with the new map plus this server's ownership labels (the map is replaced whole)."""
        record, current = await self._get(session_id)
        cloud_labels = {k: v for k, v in current.items() if k.startswith(RESERVED_PREFIX)}
        cloud_labels.update(labels)
        await self.client.call(
            "SetLabel", {"SessionId": session_id, "Labels": json.dumps(cloud_labels)}, idempotent=True
        )
        return record.model_copy(update={"labels": dict(labels)})

    async def keep_alive(self, session_id: str) -> None:
        """RefreshSessionIdleTime, best effort."""
        try:
            await self.client.call("RefreshSessionIdleTime", {"SessionId": session_id}, idempotent=True)
        except AgentBayMCPError as exc:
            logger.debug("keep-alive of a session failed: %s", exc)

    async def delete(self, session_id: str, *, write_back: bool = True) -> None:
        """Write the session's contexts back (`before_delete`, unless not `write_back`), DeleteSessionAsync,
        then poll GetSessionDetail until it is gone (bounded). Idempotent."""
        if write_back and self.before_delete is not None:
            await self.before_delete(session_id)
        self.channels.pop(session_id, None)
        try:
            await self.client.call("DeleteSessionAsync", {"SessionId": session_id}, idempotent=True)
        except SessionNotFoundError:
            return
        deadline = time.monotonic() + self.delete_wait_seconds
        pause = 0.05
        while time.monotonic() < deadline:
            try:
                query = {"SessionId": session_id}
                reply = await self.client.call("GetSessionDetail", {}, idempotent=True, query=query)
            except SessionNotFoundError:
                return
            data = reply.data if isinstance(reply.data, dict) else {}
            if str(data.get("Status") or "").upper() in _GONE:
                return
            await anyio.sleep(pause)
            pause = min(pause * 2, 2.0)
        logger.warning(
            "session %s still deleting after %.0f s; the cloud finishes it", session_id, self.delete_wait_seconds
        )

    async def reap(self) -> list[str]:
        """Delete this instance's sessions whose server is gone (its lock is free).

        Listing failures propagate (a bad key must stop start-up); one session that cannot be
        checked or deleted is left for the next start-up instead.
        """
        reaped = []
        alive: dict[str, bool] = {self.server_id: True}
        for session_id in await self._list_ids({LABEL_INSTANCE: self.instance}):
            try:
                server = (await self._labels(session_id)).get(LABEL_SERVER, "")
                if server not in alive:
                    alive[server] = self._server_alive(server)
                if not alive[server]:
                    await self.delete(session_id)
                    reaped.append(session_id)
            except AgentBayMCPError as exc:
                logger.warning("could not reap session %s (left for the next start-up): %s", session_id, exc)
        if reaped:
            logger.info("reaped %d orphaned cloud session(s) of dead servers of this instance", len(reaped))
        return reaped

    def _server_alive(self, server_id: str) -> bool:
        """Whether a server (named by a cloud label, so untrusted) still holds its lock; unsure means alive."""
        # Checked before it names a lock file, so a label can never point a path elsewhere.
        if not is_server_id(server_id):
            return True  # not a label this program writes: not ours to judge
        try:
            return server_alive(self.servers_dir, server_id)
        except OSError:
            return True

    async def list_all(self) -> list[SessionRecord]:
        """Every live session of this instance (any server's); never other people's sessions."""
        records = []
        for session_id in await self._list_ids({LABEL_INSTANCE: self.instance}):
            try:
                records.append(await self.get(session_id))
            except SessionNotFoundError:
                continue
        return records

    async def _list_ids(self, labels: Mapping[str, str]) -> list[str]:
        found: list[str] = []
        token = ""
        for _ in range(1000):  # a bound, in case a broken service keeps handing out tokens
            params: dict[str, str | int | None] = {"Labels": json.dumps(dict(labels)), "MaxResults": self.page_size}
            params["NextToken"] = token or None
            reply = await self.client.call("ListSession", params, idempotent=True)
            items = reply.data if isinstance(reply.data, list) else []
            found.extend(str(i["SessionId"]) for i in items if isinstance(i, dict) and i.get("SessionId"))
            token = str(reply.body.get("NextToken") or "")
            if not token:
                break
        return list(dict.fromkeys(found))

    async def _labels(self, session_id: str) -> dict[str, str]:
        reply = await self.client.call("GetLabel", {"SessionId": session_id, "MaxResults": 100}, idempotent=True)
        raw = reply.data.get("Labels") if isinstance(reply.data, dict) else None
        try:
            labels = loads(raw) if isinstance(raw, str) and raw else {}
        except json.JSONDecodeError as exc:
            raise BackendError("AgentBay's GetLabel reply holds labels that are not JSON.") from exc
        if not isinstance(labels, dict):
            raise BackendError("AgentBay's GetLabel reply holds labels that are not a JSON object.")
        return {str(k): str(v) for k, v in labels.items()}

    async def _delete_by_label(self, key: str, value: str) -> None:
        try:
            for session_id in await self._list_ids({key: value}):
                logger.warning("deleting session %s whose create call failed in transit", session_id)
                # Not written back: its contexts may not have arrived yet, and nobody used it.
                await self.delete(session_id, write_back=False)
        except AgentBayMCPError as exc:
            logger.warning("could not check for a half-created session (the next start-up reaps it): %s", exc)


def _record(session_id: str, cloud_labels: dict[str, str], status: str, image_id: str) -> SessionRecord:
    """A SessionRecord from the cloud's labels (ownership under agentbay-mcp.) and status."""
    try:
        created_at = datetime.fromisoformat(cloud_labels.get(LABEL_CREATED, ""))
    except ValueError:
        created_at = datetime.fromtimestamp(0, UTC)
    shown: SessionStatus = "DELETING" if status == "DELETING" else "RUNNING"
    return SessionRecord(
        session_id=session_id,
        image_id=cloud_labels.get(LABEL_IMAGE) or image_id or "unknown",
        labels={k: v for k, v in cloud_labels.items() if not k.startswith(RESERVED_PREFIX)},
        owner=cloud_labels.get(LABEL_OWNER, ""),
        server_id=cloud_labels.get(LABEL_SERVER, ""),
        created_at=created_at,
        status=shown,
        network=CLOUD_NETWORK,
        contexts=context_wire.mounts_from_label(cloud_labels.get(context_wire.LABEL_CONTEXTS)),
    )
