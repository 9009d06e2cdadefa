"""The per-start token: a loopback HTTP server with no authentication configured still wants a bearer token.

Without one, every process on the host could drive the server (a session cannot reach it: each has a
network namespace of its own, see backends/local/network.py; the token is the second layer).
So, as Jupyter does, each start of such a server makes a random token (256 bits), prints it once
on stderr with the lines a client configuration needs, and writes it to
`<state dir>/http-token-<port>` (mode 0600, replaced atomically at each start, removed at a clean
stop) for clients that read it there. One file per port: servers on one host may share a state dir.
`--allow-unauthenticated` turns the token off.

Its holder is the `anonymous` principal, exactly the client of an unauthenticated server: it owns
the sessions of its own conversation and no per-principal quota applies. The token only proves that
a client can read its owner's file or stderr, as every local client of that owner can: it names
no one, so a quota keyed on it would put every local client in one bucket.
"""

from __future__ import annotations

import hmac
import json
import logging
from pathlib import Path

from mcp.server.auth.provider import AccessToken

from agentbay_mcp.auth.private_file import write_private
from agentbay_mcp.auth.scopes import ALL
from agentbay_mcp.services.sessions.registry import ANONYMOUS
from agentbay_mcp.settings import Settings

logger = logging.getLogger(__name__)


def wanted(settings: Settings) -> bool:
    """Whether this HTTP server needs a per-start token: nothing else authenticates, and the operator did
    not ask to serve unauthenticated."""
    return not settings.auth_enabled and not settings.allow_unauthenticated


def token_path(state_dir: Path, port: int) -> Path:
    """Where the server listening on `port` keeps its per-start token."""
    return state_dir / f"http-token-{port}"


class StartTokenVerifier:
    """The SDK's `TokenVerifier` for the one per-start token."""

    def __init__(self, token: str) -> None:
        self._expected = token.encode()

    async def verify_token(self, token: str) -> AccessToken | None:
        """The anonymous principal with every scope for the right token; None for anything else."""
        # Constant time: how long a refusal takes says nothing of how much of a guess was right.
        if not hmac.compare_digest(token.encode(errors="replace"), self._expected):
            return None
        return AccessToken(token=token, client_id=ANONYMOUS, subject=ANONYMOUS, scopes=[ALL])


def write_token(path: Path, token: str) -> None:
    """Write the token file, holding exactly the token (no newline), readable by its owner only."""
    write_private(path, token)


def remove_token(path: Path, token: str) -> None:
    """Remove the token file if it still holds `token` (a newer server on the same port may have replaced it)."""
    try:
        if hmac.compare_digest(path.read_bytes(), token.encode()):
            path.unlink()
    except OSError as exc:
        logger.warning("could not remove the token file %s: %s", path, exc.strerror or exc)


def announcement(token: str, url: str, path: Path | None) -> str:
    """The start-up message telling the operator the token and how a client sends it (printed once);
    `path` is the token file, None if it could not be written."""
    header = f"Bearer {token}"
    config = {"mcpServers": {"agentbay": {"type": "http", "url": url, "headers": {"Authorization": header}}}}
    where = f"also in {path}, mode 0600" if path else "the token file could not be written"
    lines = [
        f"agentbay-mcp: HTTP clients must send this token (a new one at every start; {where}):",
        "",
        f"    Authorization: {header}",
        "",
        "MCP client configuration (mcpServers entry):",
        "",
        f"    {json.dumps(config)}",
        "",
        "Claude Code:",
        "",
        f"    claude mcp add --transport http agentbay {url} --header 'Authorization: {header}'",
        "",
    ]
    if path:
        lines.append(f"A client started by a script can read the file instead: Authorization: Bearer $(cat {path})")
    lines.append(
        "Pass --allow-unauthenticated to serve without a token (any local process could then use this server)."
    )
    return "\n".join(lines) + "\n"
