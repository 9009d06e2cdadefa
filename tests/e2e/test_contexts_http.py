"""Contexts on a team's HTTP server: each principal's are its own, across all its conversations.

A real `agentbay-mcp --transport http --token-file ...` subprocess (local backend, real sandboxes) with
principals alice and bob; every call goes through a real MCP client over HTTP.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentbay_mcp.testing.calls import call, call_error
from agentbay_mcp.testing.http_team import Team, client_as, running_team

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

CACHE = "/home/user/.cache/work"


@pytest.fixture
def team(state_dir: Path) -> Iterator[Team]:
    with running_team(state_dir, "--max-contexts-per-principal", "2") as started:
        yield started


async def test_a_principals_contexts_are_shared_by_its_conversations_and_hidden_from_others(team: Team) -> None:
    async with client_as(team, "alice", "legacy") as alice, client_as(team, "bob") as bob:
        mounts = [{"name": "work", "path": CACHE}]
        session = (await call(alice, "create_session", image_id="code_latest", contexts=mounts))["session_id"]
        await call(alice, "write_file", session_id=session, path=f"{CACHE}/secret.txt", content="alice's data")
        await call(alice, "delete_session", session_id=session)  # saved on the way out

        # Bob: not listed, not found, not deletable; the same name is a new, empty context of his own.
        assert (await call(bob, "list_contexts"))["contexts"] == []
        for tool in ("get_context", "delete_context"):
            assert "not found" in await call_error(bob, tool, name="work")
        mine = (await call(bob, "create_session", image_id="code_latest", contexts=mounts))["session_id"]
        listing = await call(bob, "execute_command", session_id=mine, command=f"ls -A {CACHE}")
        assert listing["stdout"] == "", "bob's 'work' is his own, empty"

    # Alice's other conversation (a new connection) finds her data.
    async with client_as(team, "alice") as alice_again:
        info = await call(alice_again, "get_context", name="work")
        assert info["file_count"] == 1
        again = (
            await call(
                alice_again, "create_session", image_id="code_latest", contexts=[{"name": "work", "path": "/tmp/w"}]
            )
        )["session_id"]
        read = await call(alice_again, "read_file", session_id=again, path="/tmp/w/secret.txt")
        assert read["content"] == "alice's data"
        # Her count quota (2, from --max-contexts-per-principal): a second is fine, a third is refused.
        await call(alice_again, "create_context", name="second")
        assert "already have 2 contexts" in await call_error(alice_again, "create_context", name="third")
        assert again in await call_error(alice_again, "delete_context", name="work"), "names the session using it"
