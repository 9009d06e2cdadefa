"""NetworkService: a session's egress policy, changed while it runs, and links to its ports. Never imports mcp."""

from __future__ import annotations

from agentbay_mcp.backends.protocols import Network
from agentbay_mcp.backends.records import Capabilities
from agentbay_mcp.errors import BackendUnavailableError, InvalidArgumentError, SessionNotFoundError
from agentbay_mcp.services.network.models import PortLink, SessionNetwork
from agentbay_mcp.services.network.policy import NetworkRequest, OperatorMode, requested_policy
from agentbay_mcp.services.network.public_links import PublicLinks
from agentbay_mcp.services.sessions.service import SessionService

PROTOCOLS = ("http", "https", "ws", "wss", "tcp")


class NetworkService:
    """Egress policies and port links of sessions."""

    def __init__(
        self,
        sessions: SessionService,
        network: Network | None,
        capabilities: Capabilities,
        operator: OperatorMode,
        *,
        public_url: str | None = None,
    ) -> None:
        self.sessions = sessions
        self.network = network
        self.capabilities = capabilities
        self.operator = operator
        #: Links under the server's public URL (HTTP deployments), for the loopback links of the local backend.
        self.public = PublicLinks(public_url, self._alive) if public_url else None

    async def set_session_network(self, conversation: str, session_id: str, network: NetworkRequest) -> SessionNetwork:
        """Change what the session may reach, at once (connections already open stay open)."""
        if network is None:
            raise InvalidArgumentError("Give network: 'off', 'on', or a list of domains and CIDRs.")
        backend = self._needs("egress_rules", "Network policies")  # first: the operator's mode is moot without
        policy = requested_policy(network, self.operator)
        async with self.sessions.in_use(conversation, session_id):
            await backend.set_egress(session_id, policy)
        await self.sessions.get_session(conversation, session_id)  # the registry's record, fresh
        return SessionNetwork(session_id=session_id, network=policy.describe())

    async def get_link(self, conversation: str, session_id: str, port: int, protocol: str) -> PortLink:
        """A URL that reaches `port` inside the session (whether or not it has outbound network)."""
        if not isinstance(port, int) or not 0 < port < 65536:
            raise InvalidArgumentError(f"port must be 1-65535 (got {port!r}).")
        if protocol not in PROTOCOLS:
            raise InvalidArgumentError(f"protocol must be one of {', '.join(PROTOCOLS)} (got {protocol!r}).")
        backend = self._needs("port_links", "Port links")
        async with self.sessions.in_use(conversation, session_id):
            link = await backend.open_link(session_id, port, protocol)
        url = link.url
        if self.public is not None and protocol in ("http", "https") and url.startswith("http://127.0.0.1:"):
            url = self.public.publish(session_id, port, url)
        return PortLink(session_id=session_id, port=link.port, protocol=link.protocol, url=url)

    def _alive(self, session_id: str) -> bool:
        try:
            entry = self.sessions.registry.entry(session_id)
        except SessionNotFoundError:
            return False
        return not entry.deleting

    def _needs(self, flag: str, what: str) -> Network:
        if self.network is None or not getattr(self.capabilities, flag):
            reason = self.capabilities.unsupported.get(flag, f"{what} are not available on this backend.")
            raise BackendUnavailableError(reason)
        return self.network
