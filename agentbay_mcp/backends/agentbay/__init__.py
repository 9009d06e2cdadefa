"""The AgentBay cloud backend: the wire client, the backend, and their construction from settings."""

from __future__ import annotations

import httpx2

from agentbay_mcp.backends.agentbay.backend import AgentBayBackend
from agentbay_mcp.backends.agentbay.client import AgentBayClient, RetryPolicy, base_url
from agentbay_mcp.settings import Settings

__all__ = ["AgentBayBackend", "AgentBayClient", "RetryPolicy", "from_settings"]


def from_settings(settings: Settings, http: httpx2.AsyncClient, retry: RetryPolicy | None = None) -> AgentBayBackend:
    """An AgentBay backend over the server's one HTTP client, configured from the settings."""
    key = settings.agentbay_api_key.get_secret_value() if settings.agentbay_api_key else ""
    client = AgentBayClient(
        http,
        api_key=key,
        endpoint=base_url(settings.agentbay_endpoint, settings.agentbay_region_id),
        timeout_ms=settings.agentbay_timeout_ms,
        retry=retry,
    )
    return AgentBayBackend(
        client,
        state_dir=settings.state_dir,
        instance=settings.agentbay_instance,
        idle_timeout_seconds=settings.idle_lease_seconds,
    )
