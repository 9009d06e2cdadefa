"""`agentbay-mcp tokens add|list|remove`: manage the static bearer-token file (only hashes are stored)."""

from __future__ import annotations

import sys
from pathlib import Path

from agentbay_mcp.auth.scopes import check_known, parse_scopes
from agentbay_mcp.auth.token_file import add_token, read_entries, remove_tokens
from agentbay_mcp.settings import KNOWN_TOOLSETS


def run_tokens(action: str, path: Path | None, principal: str | None, scopes: str | None) -> int:
    """Carry out one `tokens` action; returns the exit status (errors are reported by `cli.main`)."""
    if path is None:
        print("agentbay-mcp tokens: pass --token-file PATH (or set AGENTBAY_MCP_TOKEN_FILE)", file=sys.stderr)
        return 2
    if action == "add":
        assert principal is not None  # argparse requires it
        granted = parse_scopes(scopes or "all")
        check_known(granted, KNOWN_TOOLSETS)
        token = add_token(path, principal, granted)
        # The token goes to stdout alone (easy to capture); it is not stored and cannot be shown again.
        print(token)
        print(
            f"added a token for {principal!r} with scopes {', '.join(granted)} to {path}. It is shown only "
            "now: give it to the user, who sends it as 'Authorization: Bearer <token>'.",
            file=sys.stderr,
        )
    elif action == "remove":
        assert principal is not None
        removed = remove_tokens(path, principal)
        print(f"removed {removed} token(s) of {principal!r} from {path}", file=sys.stderr)
        return 0 if removed else 1
    else:
        for entry in read_entries(path):
            print(f"{entry.principal}\t{','.join(entry.scopes)}\t{entry.created_at}\tsha256:{entry.sha256[:12]}...")
    return 0
