"""The AgentBay backend's network capability: port links through the cloud's `GetLink` action.

`GetLink(SessionId, ProtocolType, Port)` answers `Data.Url`, a gateway URL that reaches the port
inside the session. What the cloud accepts (the SDK's documentation; the SDK itself no longer
checks): ProtocolType `https` or `wss` only (`http` is refused as "No enum constant
ProtocolTypeEnum.http"), and ports 30100-30199 only. The gateway speaks TLS on the outside and plain
HTTP/WebSocket to the port, so a dev server serving http is linked as https and one serving ws as
wss. A raw TCP link the gateway does not offer. Egress rules cannot apply to a cloud session at all.

The reply is the cloud's, so hostile until checked: `Data` (an object, or that object as JSON text)
must hold a `Url` that is a short http(s)/ws(s) URL with a host, else the call fails cleanly.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from agentbay_mcp.backends.agentbay.client import AgentBayClient
from agentbay_mcp.backends.agentbay.json_text import loads
from agentbay_mcp.backends.agentbay.sessions import EGRESS_UNSUPPORTED
from agentbay_mcp.backends.records import LinkRecord, NetworkPolicy
from agentbay_mcp.errors import BackendError, BackendUnavailableError, InvalidArgumentError, NotSupportedError

#: The ports the cloud's gateway links (documented by the SDK: "must be in range [30100, 30199]").
LINK_PORTS = range(30100, 30200)
#: Our protocol -> the cloud's ProtocolType: its gateway offers https and wss URLs only.
CLOUD_PROTOCOLS = {"http": "https", "https": "https", "ws": "wss", "wss": "wss"}
TCP_UNSUPPORTED = (
    "The agentbay backend links HTTP and WebSocket ports only (AgentBay's gateway offers https and wss URLs); "
    "use protocol 'http' or 'ws', or the local backend for a raw TCP link."
)
#: A gateway URL is a host and a token path; anything much longer is not one.
MAX_URL_CHARS = 2048
_SCHEMES = ("http", "https", "ws", "wss")


class AgentBayNetwork:
    """Port links of cloud sessions; no egress rules."""

    def __init__(self, client: AgentBayClient) -> None:
        self._client = client

    async def set_egress(self, session_id: str, policy: NetworkPolicy) -> None:
        """Not here: a cloud session has AgentBay's own network (see CAPABILITIES.unsupported)."""
        raise BackendUnavailableError(EGRESS_UNSUPPORTED)

    async def open_link(self, session_id: str, port: int, protocol: str) -> LinkRecord:
        """GetLink: the gateway URL of `port` in the session."""
        cloud_protocol = CLOUD_PROTOCOLS.get(protocol)
        if cloud_protocol is None:
            raise NotSupportedError(TCP_UNSUPPORTED)
        if port not in LINK_PORTS:  # checked here too: the cloud's own refusal says less
            raise InvalidArgumentError(
                f"AgentBay links ports {LINK_PORTS.start}-{LINK_PORTS.stop - 1} only (got {port}); serve on one of "
                f"those (e.g. {LINK_PORTS.start}) and bind 0.0.0.0."
            )
        params: dict[str, str | int | bool | None] = {
            "SessionId": session_id,
            "ProtocolType": cloud_protocol,
            "Port": port,
        }
        reply = await self._client.call("GetLink", params, idempotent=True)
        return LinkRecord(url=link_url(reply.data), port=port, protocol=protocol)


def link_url(data: Any) -> str:
    """The Url of a GetLink reply's Data, checked (never echoed back in an error: it is the cloud's text)."""
    if isinstance(data, str):  # the SDK allows Data as the object's JSON text
        try:
            data = loads(data)
        except json.JSONDecodeError:
            data = None
    url = data.get("Url") if isinstance(data, dict) else None
    if not isinstance(url, str) or not url:
        raise BackendError("AgentBay's GetLink reply has no Url.")
    if len(url) > MAX_URL_CHARS:
        raise BackendError(f"AgentBay's GetLink reply holds a Url of {len(url)} characters; refused.")
    if not url.isprintable() or any(c.isspace() for c in url):
        raise BackendError("AgentBay's GetLink reply holds a Url with spaces or control characters; refused.")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a port that is not one
    except ValueError as exc:
        raise BackendError("AgentBay's GetLink reply holds a Url that does not parse; refused.") from exc
    if parts.scheme.lower() not in _SCHEMES or not parts.hostname:
        raise BackendError("AgentBay's GetLink reply holds a Url that is not an http(s) or ws(s) URL; refused.")
    return url
