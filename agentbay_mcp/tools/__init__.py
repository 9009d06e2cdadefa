"""The MCP tools, one module per toolset. Each tool is a few lines over `SessionService`."""
