"""MCP wiring: the server and its lifespan, the call guard, conversations, resources and prompts.

Only this package and `agentbay_mcp.tools` import `mcp`.
"""
