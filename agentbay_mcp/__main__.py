"""`python -m agentbay_mcp` is the same as the `agentbay-mcp` command."""

import gc

gc.disable()  # from the first import on: see agentbay_mcp.cli.main

from agentbay_mcp.cli import main  # noqa: E402

raise SystemExit(main())
