"""Network results as text: a session's policy, a port link."""

from __future__ import annotations

from agentbay_mcp.services.network.models import PortLink, SessionNetwork
from agentbay_mcp.tools.shape import Shape


def _network(found: SessionNetwork) -> str:
    return f"Network of {found.session_id}: {found.network}"


def _link(link: PortLink) -> str:
    return f"{link.url}\nReaches {link.protocol} port {link.port} of {link.session_id} until the session ends."


#: An acknowledgement: the text says the policy as it now is.
NETWORK = Shape(SessionNetwork, _network, structured=False)
LINK = Shape(PortLink, _link, ("port",))
