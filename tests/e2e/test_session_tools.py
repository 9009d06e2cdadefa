"""Every session/label tool through the MCP protocol (in-memory client), in both protocol eras."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from mcp import Client

from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import call, call_error
from agentbay_mcp.testing.servers import session_dirs
from agentbay_mcp.testing.tool_names import ALL_TOOLS
from agentbay_mcp.tools.common import hint

pytestmark = pytest.mark.anyio


async def test_tools_are_listed_with_honest_annotations(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert set(tools) == ALL_TOOLS
    for name in ("list_windows", "get_active_window", "take_screenshot", "get_installed_apps"):
        assert hint(tools[name].annotations, "read_only_hint") is True
    for name in ("control_window", "input_action", "stop_app"):
        assert hint(tools[name].annotations, "destructive_hint") is True
    for name in ("get_session", "list_sessions", "get_session_labels"):
        assert hint(tools[name].annotations, "read_only_hint") is True
    delete = tools["delete_session"].annotations
    assert hint(delete, "destructive_hint") is True
    assert hint(delete, "read_only_hint") is False
    assert hint(delete, "idempotent_hint") is True
    create = tools["create_session"].annotations
    assert hint(create, "read_only_hint") is False
    assert hint(create, "destructive_hint") is False
    assert hint(create, "idempotent_hint") is False
    # Closed world (the session), but for the commands: with network they reach the internet.
    open_world = {name for name, tool in tools.items() if hint(tool.annotations, "open_world_hint")}
    assert open_world == {"execute_command", "start_process", "write_process_input"}
    # Listings answer in text only (README: "What a tool answers"); every other tool has structured output.
    text_only = {"list_processes", "get_installed_apps", "list_visible_apps", "list_contexts"}
    # Acknowledgements: their text says everything (README, "What a tool answers").
    text_only |= {"delete_session", "set_session_labels", "set_session_network", "delete_context"}
    text_only |= {"create_directory", "move_file"}
    for tool in tools.values():
        assert (tool.output_schema is None) == (tool.name in text_only), tool.name
        # Few words (the list is read every conversation), but a real sentence.
        assert len(tool.description or "") > 30, f"{tool.name} needs a real description"


async def test_create_get_delete_round_trip(client: Client, state_dir: Path) -> None:
    created = await call(client, "create_session", image_id="code_latest", labels={"project": "demo"})
    session_id = created["session_id"]
    assert session_id.startswith("session-")
    assert created["image_id"] == "code_latest"
    assert created["status"] == "RUNNING"
    assert created["labels"] == {"project": "demo"}
    assert session_dirs(state_dir) == [session_id]

    fetched = await call(client, "get_session", session_id=session_id)
    assert fetched["session_id"] == session_id
    assert fetched["labels"] == {"project": "demo"}

    deleted = await call(client, "delete_session", session_id=session_id)
    assert deleted == {**deleted, "session_id": session_id, "status": "DELETED"}
    assert session_dirs(state_dir) == []
    message = await call_error(client, "get_session", session_id=session_id)
    assert "not found" in message
    message = await call_error(client, "delete_session", session_id=session_id)
    assert "not found" in message


async def test_default_image_is_linux_latest(client: Client) -> None:
    created = await call(client, "create_session")
    assert created["image_id"] == "linux_latest"
    assert created["labels"] == {}


async def test_session_ids_are_unguessable(client: Client) -> None:
    ids = [(await call(client, "create_session"))["session_id"] for _ in range(5)]
    assert len(set(ids)) == 5
    suffixes = sorted(int(i.removeprefix("session-"), 16) for i in ids)
    gaps = {b - a for a, b in itertools.pairwise(suffixes)}
    assert min(gaps) > 1_000_000, "ids look sequential"


async def test_labels_replace_and_get(client: Client) -> None:
    session_id = (await call(client, "create_session", labels={"a": "1", "b": "2"}))["session_id"]
    replaced = await call(client, "set_session_labels", session_id=session_id, labels={"c": "3"})
    assert replaced == {"session_id": session_id, "labels": {"c": "3"}}
    assert (await call(client, "get_session_labels", session_id=session_id))["labels"] == {"c": "3"}
    assert (await call(client, "get_session", session_id=session_id))["labels"] == {"c": "3"}
    cleared = await call(client, "set_session_labels", session_id=session_id, labels={})
    assert cleared["labels"] == {}


async def test_list_filters_by_all_given_labels(client: Client) -> None:
    a = (await call(client, "create_session", labels={"team": "x", "env": "dev"}))["session_id"]
    b = (await call(client, "create_session", labels={"team": "x", "env": "prod"}))["session_id"]
    c = (await call(client, "create_session", labels={"team": "y", "env": "dev"}))["session_id"]
    everything = await call(client, "list_sessions")
    assert [s["session_id"] for s in everything["sessions"]] == [a, b, c]
    assert everything["total_count"] == 3
    assert everything["next_token"] is None
    team_x = await call(client, "list_sessions", labels={"team": "x"})
    assert [s["session_id"] for s in team_x["sessions"]] == [a, b]
    both = await call(client, "list_sessions", labels={"team": "x", "env": "dev"})
    assert [s["session_id"] for s in both["sessions"]] == [a]
    none = await call(client, "list_sessions", labels={"team": "z"})
    assert none["sessions"] == []
    assert none["total_count"] == 0


async def test_list_pages_with_opaque_token(client: Client) -> None:
    ids = [(await call(client, "create_session", labels={"k": "v"}))["session_id"] for _ in range(5)]
    first = await call(client, "list_sessions", labels={"k": "v"}, max_results=2)
    assert first["total_count"] == 5
    assert first["next_token"]
    seen = [s["session_id"] for s in first["sessions"]]
    token = first["next_token"]
    while token:
        page = await call(client, "list_sessions", labels={"k": "v"}, max_results=2, next_token=token)
        seen += [s["session_id"] for s in page["sessions"]]
        token = page["next_token"]
    assert seen == ids


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({"": "v"}, "non-empty"),
        ({"k": ""}, "non-empty"),
        ({"k": "   "}, "non-empty"),
        ({"k" * 129: "v"}, "limit"),
        ({"k": "v" * 257}, "limit"),
        ({f"k{i}": "v" for i in range(33)}, "at most"),
        ({"k": "line\nbreak"}, "control"),
        ({"agentbay-mcp.owner": "me"}, "reserved"),
    ],
)
async def test_bad_labels_are_refused_and_nothing_is_created(
    client: Client, state_dir: Path, labels: dict[str, str], expected: str
) -> None:
    message = await call_error(client, "create_session", labels=labels)
    assert expected in message
    assert session_dirs(state_dir) == []
    session_id = (await call(client, "create_session", labels={"keep": "me"}))["session_id"]
    message = await call_error(client, "set_session_labels", session_id=session_id, labels=labels)
    assert expected in message
    assert (await call(client, "get_session_labels", session_id=session_id))["labels"] == {"keep": "me"}


async def test_non_string_label_values_are_refused(client: Client) -> None:
    message = await call_error(client, "create_session", labels={"n": 5})
    assert "labels" in message


async def test_unknown_image_is_a_clear_error(client: Client, state_dir: Path) -> None:
    message = await call_error(client, "create_session", image_id="windows_98")
    assert "windows_98" in message
    assert "linux_latest" in message
    assert session_dirs(state_dir) == []


@pytest.mark.parametrize(
    "session_id",
    ["session-000000000000000000000000", "nope", "../../etc", "session-" + "a" * 500, ""],
)
async def test_unknown_ids_are_not_found(client: Client, session_id: str) -> None:
    for tool in ("get_session", "delete_session", "get_session_labels"):
        message = await call_error(client, tool, session_id=session_id)
        assert "not found" in message
        assert "list_sessions" in message
    message = await call_error(client, "set_session_labels", session_id=session_id, labels={"a": "b"})
    assert "not found" in message


@pytest.mark.parametrize(
    "token", ["garbage", "a.b", "x" * 5000, "eyJzIjoiMCIsImEiOlsiMCIsIjAiXX0.AAAAAAAAAAAAAAAAAAAAAA"]
)
async def test_bad_page_token_is_a_clear_error(client: Client, token: str) -> None:
    await call(client, "create_session")
    message = await call_error(client, "list_sessions", next_token=token)
    assert "next_token is not valid" in message


async def test_page_token_is_bound_to_its_filter(client: Client) -> None:
    for _ in range(3):
        await call(client, "create_session", labels={"k": "v"})
    token = (await call(client, "list_sessions", labels={"k": "v"}, max_results=1))["next_token"]
    message = await call_error(client, "list_sessions", labels={"k": "other"}, next_token=token)
    assert "same labels filter" in message


@pytest.mark.parametrize("max_results", [0, 101, -1])
async def test_max_results_out_of_range(client: Client, max_results: int) -> None:
    result = await client.call_tool("list_sessions", {"max_results": max_results})
    assert result.is_error


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
async def test_quota_per_conversation(state_dir: Path, era: str) -> None:
    settings = Settings(state_dir=state_dir, max_sessions_per_conversation=2)
    async with Client(build_server(settings), mode=era) as client:
        first = (await call(client, "create_session"))["session_id"]
        await call(client, "create_session")
        message = await call_error(client, "create_session")
        assert "limit 2" in message
        assert "delete_session" in message
        assert len(session_dirs(state_dir)) == 2
        await call(client, "delete_session", session_id=first)
        await call(client, "create_session")


@pytest.mark.parametrize("era", ["legacy", "2026-07-28"])
async def test_disconnect_releases_every_session(state_dir: Path, era: str) -> None:
    async with Client(build_server(Settings(state_dir=state_dir)), mode=era) as client:
        for _ in range(3):
            await call(client, "create_session")
        assert len(session_dirs(state_dir)) == 3
    assert session_dirs(state_dir) == []


async def test_unwritable_state_dir_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings = Settings(state_dir=blocker / "state")
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the group type depends on the entry path
        async with Client(build_server(settings)):
            pass
    assert "not usable" in repr(caught.value) or "not usable" in str(caught.value.__cause__)


async def test_prompts_are_served(client: Client) -> None:
    prompts = {p.name: p for p in (await client.list_prompts()).prompts}
    assert "work_with_sandbox_sessions" in prompts
    rendered = await client.get_prompt("work_with_sandbox_sessions", {"task": "build the demo"})
    text = " ".join(getattr(m.content, "text", "") for m in rendered.messages)
    assert "build the demo" in text
    assert "delete_session" in text
