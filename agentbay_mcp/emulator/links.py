"""The emulator's GetLink: a URL that really reaches a port inside the emulated session.

The cloud answers `Data.Url`, an https:// or wss:// gateway URL, and accepts only ProtocolType
`https` or `wss` and ports 30100-30199 (the SDK's documentation, with the cloud's error texts). The
emulator checks the same, then opens a link of its local backend: a listener on the host's loopback
that connects into the session's own network namespace. On loopback there is no TLS, so the URL it
hands out is http:// (for https) or ws:// (for wss); everything else is as the cloud does it.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from agentbay_mcp.emulator.sessions import ApiFaultError, Sessions
from agentbay_mcp.errors import AgentBayMCPError, InvalidArgumentError, QuotaExceededError, SessionNotFoundError

#: The ports the cloud's gateway links.
PORTS = range(30100, 30200)
#: The cloud's ProtocolType -> the local link's protocol (the same stream, without TLS on loopback).
PROTOCOLS = {"https": "http", "wss": "ws"}


def _port(raw: str | None) -> int:
    if not raw:
        raise ApiFaultError(400, "InvalidParameter.Port", "port is not valid: null")
    try:
        port = int(raw)
    except ValueError:
        port = -1
    if port not in PORTS:
        raise ApiFaultError(
            400,
            "InvalidParameter",
            f"Invalid port value: {raw[:20]}. Port must be an integer in the range [{PORTS.start}, {PORTS.stop - 1}].",
        )
    return port


async def get_link(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """GetLink: SessionId, ProtocolType (default wss, as the cloud's port-only form), Port."""
    session = sessions.get(form.get("SessionId", ""))
    cloud_protocol = form.get("ProtocolType") or "wss"
    protocol = PROTOCOLS.get(cloud_protocol)
    if protocol is None:
        raise ApiFaultError(
            400, "InvalidParameter.ProtocolType", f"No enum constant ProtocolTypeEnum.{cloud_protocol[:20]}"
        )
    port = _port(form.get("Port"))
    try:
        link = await sessions.backend.network.open_link(session.session_id, port, protocol)
    except SessionNotFoundError as exc:
        raise ApiFaultError(400, "InvalidMcpSession.NotFound", f"Session {session.session_id!r} not found") from exc
    except (InvalidArgumentError, QuotaExceededError) as exc:
        raise ApiFaultError(400, "InvalidParameter", str(exc)) from exc
    except AgentBayMCPError as exc:
        raise ApiFaultError(500, "InternalError", "The link could not be opened.") from exc
    return {"Url": link.url}
