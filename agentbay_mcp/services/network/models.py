"""The network tools' output models."""

from __future__ import annotations

from pydantic import Field

from agentbay_mcp.services.model_base import OutputModel


class SessionNetwork(OutputModel):
    """A session's egress policy, as it now is."""

    session_id: str = Field(exclude=True)
    network: str = Field(description="off, on (the public internet), or the allow-list (comma-separated).")


class PortLink(OutputModel):
    """A URL that reaches a port inside a session."""

    url: str = Field(description="Open this to reach the port; it stops working when the session ends.")
    port: int
    protocol: str = Field(exclude=True)
    session_id: str = Field(exclude=True)
