"""A team on one HTTP server: alice and bob (scope `all`) and reader (scope `read`), with an audit log."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agentbay_mcp.auth.token_file import add_token
from agentbay_mcp.testing.servers import HttpServer


@dataclass
class Team:
    server: HttpServer
    tokens: dict[str, str]
    audit: Path

    def headers(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}


@asynccontextmanager
async def client_as(team: Team, who: str, mode: str = "auto") -> AsyncIterator[Client]:
    """An MCP client sending `who`'s bearer token (mode legacy: handshake era; auto: sessionless)."""
    async with (
        httpx2.AsyncClient(headers=team.headers(who), timeout=30) as http,
        Client(streamable_http_client(team.server.url, http_client=http), mode=mode, cache=None) as client,
    ):
        yield client


def start_team(state_dir: Path, *extra: str, port: int | None = None) -> Team:
    token_file = state_dir.parent / "tokens.json"
    tokens = {
        "alice": add_token(token_file, "alice", ("all",)),
        "bob": add_token(token_file, "bob", ("all",)),
        "reader": add_token(token_file, "reader", ("read",)),
    }
    audit = state_dir.parent / "audit.jsonl"
    server = HttpServer(state_dir, "--token-file", str(token_file), "--audit-log", str(audit), *extra, port=port)
    return Team(server, tokens, audit)


@contextmanager
def running_team(state_dir: Path, *extra: str, port: int | None = None) -> Iterator[Team]:
    """The team's server for the block; stopped when it ends, however it ends."""
    team = start_team(state_dir, *extra, port=port)
    try:
        yield team
    finally:
        team.server.stop()
