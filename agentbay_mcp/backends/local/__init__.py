"""The `local` backend: sessions as directory trees on this host, one sandbox each."""

from agentbay_mcp.backends.local.backend import LocalBackend

__all__ = ["LocalBackend"]
