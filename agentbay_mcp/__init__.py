"""agentbay-mcp: an MCP server giving AI assistants disposable, sandboxed execution sessions."""

__version__ = "0.1.0"
