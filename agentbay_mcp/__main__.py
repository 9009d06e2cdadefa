"""`python -m agentbay_mcp` is the same as the `agentbay-mcp` command."""

from agentbay_mcp.cli import main

raise SystemExit(main())
