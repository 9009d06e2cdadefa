"""Label search with pagination over 250 sessions: every matching session is seen exactly once."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from mcp import Client

from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import ERAS, call

pytestmark = pytest.mark.anyio


async def _walk(client: Client, labels: dict[str, str], page_size: int) -> tuple[list[str], set[int]]:
    seen: list[str] = []
    totals: set[int] = set()
    token: str | None = None
    while True:
        arguments: dict[str, object] = {"labels": labels, "max_results": page_size}
        if token:
            arguments["next_token"] = token
        page = await call(client, "list_sessions", **arguments)
        assert len(page["sessions"]) <= page_size
        seen += [s["session_id"] for s in page["sessions"]]
        totals.add(page["total_count"])
        token = page["next_token"]
        if token is None:
            return seen, totals


@pytest.mark.parametrize("era", ERAS)
async def test_label_search_pages_over_250_sessions(state_dir: Path, era: str) -> None:
    settings = Settings(state_dir=state_dir, max_sessions_per_conversation=300)
    rng = random.Random(7)
    async with Client(build_server(settings), mode=era) as client:
        groups: dict[str, list[str]] = {"red": [], "blue": []}
        for i in range(250):
            colour = "red" if rng.random() < 0.6 else "blue"
            labels = {"colour": colour, "batch": str(i % 3)}
            groups[colour].append((await call(client, "create_session", labels=labels))["session_id"])

        for page_size in (1, 7, 100):
            seen, totals = await _walk(client, {"colour": "red"}, page_size)
            assert seen == groups["red"], f"page size {page_size}: order or membership differs"
            assert totals == {len(groups["red"])}

        everything, _ = await _walk(client, {}, 100)
        assert sorted(everything) == sorted(groups["red"] + groups["blue"])
        assert len(everything) == len(set(everything)) == 250


async def test_sessions_changing_between_pages_are_never_seen_twice(state_dir: Path) -> None:
    """Keyset paging: deleting seen sessions and adding new ones mid-walk never duplicates or skips
    a session that existed for the whole walk."""
    settings = Settings(state_dir=state_dir, max_sessions_per_conversation=300)
    async with Client(build_server(settings)) as client:
        stable = [(await call(client, "create_session", labels={"k": "v"}))["session_id"] for _ in range(30)]
        seen: list[str] = []
        token: str | None = None
        while True:
            arguments: dict[str, object] = {"labels": {"k": "v"}, "max_results": 4}
            if token:
                arguments["next_token"] = token
            page = await call(client, "list_sessions", **arguments)
            ids = [s["session_id"] for s in page["sessions"]]
            seen += ids
            if ids:  # churn: delete a session already seen, add a new one (it sorts last)
                await call(client, "delete_session", session_id=ids[0])
                await call(client, "create_session", labels={"k": "v"})
            token = page["next_token"]
            if token is None:
                break
        assert len(seen) == len(set(seen))
        assert set(stable) <= set(seen)
