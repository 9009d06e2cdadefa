"""Label keys agentbay-mcp writes itself, apart from the labels a model chooses."""

from __future__ import annotations

#: Keys under this prefix are written by agentbay-mcp itself (ownership tags on the cloud backend).
RESERVED_PREFIX = "agentbay-mcp."
