"""Refusing what a backend declares it cannot do, with the reason it declares."""

from __future__ import annotations

from collections.abc import Sequence

from agentbay_mcp.backends.records import Capabilities
from agentbay_mcp.backends.records_contexts import ContextMount
from agentbay_mcp.errors import BackendUnavailableError


def unsupported_mounts(capabilities: Capabilities, contexts: Sequence[ContextMount], workspaces: Sequence[str]) -> None:
    """Refuse contexts or workspaces a backend without the capability was asked for, saying why."""
    for flag, asked in (("contexts", contexts), ("workspaces", workspaces)):
        if asked and not getattr(capabilities, flag):
            raise BackendUnavailableError(capabilities.unsupported.get(flag, f"This backend has no {flag}."))
