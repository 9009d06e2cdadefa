"""A team on one HTTP server: bearer tokens, principals, scopes, quotas, audit, metrics and resources.

A real `agentbay-mcp --transport http --token-file ...` subprocess on 127.0.0.1 with principals
alice and bob (scope `all`) and reader (scope `read`).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentbay_mcp.auth.token_file import add_token
from agentbay_mcp.testing.calls import INITIALIZE, call, call_error
from agentbay_mcp.testing.http_clients import assert_not_visible, listed_ids
from agentbay_mcp.testing.http_team import Team, client_as, running_team, start_team
from agentbay_mcp.testing.servers import HttpServer, session_dirs

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

JSON_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@pytest.fixture
def team(state_dir: Path) -> Iterator[Team]:
    with running_team(state_dir) as started:
        yield started


async def test_each_principal_sees_only_its_own_sessions_in_every_era(team: Team, state_dir: Path) -> None:
    async with (
        client_as(team, "alice", "legacy") as alice_old,
        client_as(team, "alice") as alice_new,
        client_as(team, "bob", "legacy") as bob_old,
        client_as(team, "bob") as bob_new,
    ):
        ids = {}
        for name, client in (
            ("alice_old", alice_old),
            ("alice_new", alice_new),
            ("bob_old", bob_old),
            ("bob_new", bob_new),
        ):
            ids[name] = (await call(client, "create_session", image_id="code_latest"))["session_id"]
        assert session_dirs(state_dir) == sorted(ids.values())
        mine = {"alice_old": alice_old, "alice_new": alice_new, "bob_old": bob_old, "bob_new": bob_new}
        for name, client in mine.items():
            assert await listed_ids(client) == [ids[name]]
            for other, session_id in ids.items():
                if other != name:
                    await assert_not_visible(client, session_id)  # a stolen id is "not found"
        # Without auth all sessionless clients were one anonymous principal; now each is its own.
        async with client_as(team, "bob") as bob_again:
            assert await listed_ids(bob_again) == [ids["bob_new"]]
        assert session_dirs(state_dir) == sorted(ids.values())


async def test_an_mcp_session_id_presented_by_another_principal_is_refused(team: Team, state_dir: Path) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        opened = await http.post(team.server.url, json=INITIALIZE, headers=JSON_HEADERS | team.headers("alice"))
        assert opened.status_code == 200
        session_header = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        create = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "create_session", "arguments": {}},
        }
        stolen = await http.post(
            team.server.url, json=create, headers=JSON_HEADERS | session_header | team.headers("bob")
        )
        assert stolen.status_code == 404, stolen.text
        assert session_dirs(state_dir) == []


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer", "Bearer abm_" + "x" * 43, "Bearer not-a-token", "Basic YWxpY2U6cGFzcw==", "Bearer " + "a" * 5000],
    ids=["missing", "empty", "unknown", "malformed", "basic", "huge"],
)
async def test_bad_credentials_get_401_and_create_nothing(
    team: Team, state_dir: Path, authorization: str | None
) -> None:
    headers = JSON_HEADERS | ({"Authorization": authorization} if authorization else {})
    async with httpx2.AsyncClient(timeout=10) as http:
        response = await http.post(team.server.url, json=INITIALIZE, headers=headers)
        metrics = await http.get(team.server.url.replace("/mcp", "/metrics"), headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert response.json() == {"error": "invalid_token", "error_description": "Authentication required"}
    assert metrics.status_code == 401
    assert "mcp-session-id" not in response.headers
    assert session_dirs(state_dir) == []


async def test_forged_origin_and_host_are_refused(team: Team, state_dir: Path) -> None:
    async with httpx2.AsyncClient(timeout=10) as http:
        auth = JSON_HEADERS | team.headers("alice")
        origin = await http.post(team.server.url, json=INITIALIZE, headers=auth | {"Origin": "http://evil.example"})
        host = await http.post(team.server.url, json=INITIALIZE, headers=auth | {"Host": "evil.example"})
        fine = await http.post(
            team.server.url, json=INITIALIZE, headers=auth | {"Origin": f"http://127.0.0.1:{team.server.port}"}
        )
    assert origin.status_code == 403
    assert host.status_code == 421
    assert fine.status_code == 200
    assert "evil" not in origin.text + host.text
    assert session_dirs(state_dir) == []


async def test_an_oversized_body_gets_413(team: Team, state_dir: Path) -> None:
    big = {**INITIALIZE, "params": {**INITIALIZE["params"], "padding": "x" * (5 * 1024 * 1024)}}
    async with httpx2.AsyncClient(timeout=30) as http:
        response = await http.post(
            team.server.url, content=json.dumps(big), headers=JSON_HEADERS | team.headers("alice")
        )
    assert response.status_code == 413
    assert session_dirs(state_dir) == []


async def test_a_read_only_token_can_list_and_read_but_not_create_or_run(team: Team, state_dir: Path) -> None:
    for mode in ("legacy", "auto"):
        async with client_as(team, "reader", mode) as reader:
            assert await listed_ids(reader) == []
            denied = await call_error(reader, "create_session")
            assert "Access denied: principal 'reader' may not call create_session" in denied, denied
            assert "needs scope 'sessions'" in denied, denied
            ran = await call_error(
                reader, "execute_command", session_id="session-" + secrets.token_hex(12), command="id"
            )
            assert "may not call execute_command (a changing tool of the 'commands' toolset)" in ran, ran
            wrote = await call_error(reader, "write_file", session_id="s", path="a", content="x")
            assert "Access denied" in wrote, wrote
            sessions = await reader.read_resource("agentbay://sessions")
            assert json.loads(sessions.contents[0].text)["total_count"] == 0  # type: ignore[union-attr]
    assert session_dirs(state_dir) == []


async def test_quotas_per_principal_trip_with_a_clear_error(state_dir: Path) -> None:
    team = start_team(state_dir, "--max-sessions-per-principal", "2", "--max-commands-per-principal", "1")
    try:
        async with (
            client_as(team, "alice", "legacy") as old,
            client_as(team, "alice") as new,
            client_as(team, "bob") as bob,
        ):
            first = (await call(old, "create_session", image_id="code_latest"))["session_id"]
            await call(new, "create_session", image_id="code_latest")
            full = await call_error(new, "create_session", image_id="code_latest")
            assert "Principal 'alice' already has 2 live session(s)" in full, full
            assert "--max-sessions-per-principal" in full
            await call(bob, "create_session", image_id="code_latest")  # bob's quota is his own

            started = anyio.Event()
            async with anyio.create_task_group() as tg:

                async def slow() -> None:
                    started.set()
                    await call(old, "execute_command", session_id=first, command="sleep 2")

                tg.start_soon(slow)
                await started.wait()
                await anyio.sleep(0.5)
                busy = await call_error(old, "execute_command", session_id=first, command="true")
                assert "already has 1 commands running" in busy, busy
            done = await call(old, "execute_command", session_id=first, command="echo again")
            assert done["stdout"] == "again\n"
    finally:
        team.server.stop()


async def test_audit_log_has_one_line_per_call_and_no_secrets(team: Team) -> None:
    async with client_as(team, "alice", "legacy") as alice, client_as(team, "reader") as reader:
        session_id = (await call(alice, "create_session", image_id="code_latest"))["session_id"]
        await call(alice, "execute_command", session_id=session_id, command="echo hi", envs={"API_KEY": "hunter2-env"})
        await call(alice, "write_file", session_id=session_id, path="notes.txt", content="TOP-SECRET-CONTENT")
        await call_error(alice, "get_session", session_id="session-" + secrets.token_hex(12))
        await call_error(reader, "create_session")
        await call(alice, "delete_session", session_id=session_id)
    lines = [json.loads(line) for line in team.audit.read_text().splitlines()]
    assert [(r["principal"], r["tool"], r["outcome"]) for r in lines] == [
        ("alice", "create_session", "ok"),
        ("alice", "execute_command", "ok"),
        ("alice", "write_file", "ok"),
        ("alice", "get_session", "error"),
        ("reader", "create_session", "denied"),
        ("alice", "delete_session", "ok"),
    ]
    for record in lines:
        assert set(record) >= {"time", "principal", "conversation", "tool", "session", "outcome", "duration_ms"}
    assert lines[0]["session"] == session_id  # the session create_session made
    assert lines[1]["arguments"] == {"command": "echo hi", "envs_names": ["API_KEY"]}
    assert lines[2]["arguments"] == {"path": "notes.txt"}
    assert lines[4]["conversation"] == "principal:reader"
    text, log = team.audit.read_text(), team.server.log.read_text()
    for secret in ("hunter2-env", "TOP-SECRET-CONTENT", *team.tokens.values()):
        assert secret not in text
        assert secret not in log


async def test_metrics_parse_and_healthz_is_public(team: Team) -> None:
    async with client_as(team, "alice") as alice:
        session_id = (await call(alice, "create_session", image_id="code_latest"))["session_id"]
        await call_error(alice, "get_session", session_id="nope")
        async with httpx2.AsyncClient(timeout=10) as http:
            base = team.server.url.removesuffix("/mcp")
            health = await http.get(base + "/healthz")
            page = await http.get(base + "/metrics", headers=team.headers("reader"))
        await call(alice, "delete_session", session_id=session_id)
    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {f.name: f for f in text_string_to_metric_families(page.text)}
    assert families["agentbay_mcp_live_sessions"].samples[0].value == 1
    calls = {(s.labels["tool"], s.labels["outcome"]): s.value for s in families["agentbay_mcp_tool_calls"].samples}
    assert calls[("create_session", "ok")] == 1
    assert calls[("get_session", "error")] == 1
    errors = {s.labels["tool"]: s.value for s in families["agentbay_mcp_tool_errors"].samples}
    assert errors == {"get_session": 1}
    latency = families["agentbay_mcp_tool_call_duration_seconds"]
    counts = {s.labels["tool"]: s.value for s in latency.samples if s.name.endswith("_count")}
    assert counts["create_session"] == 1
    statuses = {s.labels["code"]: s.value for s in families["agentbay_mcp_http_responses"].samples}
    assert statuses["200"] >= 1


async def test_resources_show_only_the_callers_sessions(team: Team) -> None:
    async with client_as(team, "alice") as alice, client_as(team, "bob") as bob:
        mine = (await call(alice, "create_session", image_id="code_latest", labels={"team": "a"}))["session_id"]
        theirs = (await call(bob, "create_session", image_id="code_latest"))["session_id"]
        listing = json.loads((await alice.read_resource("agentbay://sessions")).contents[0].text)  # type: ignore[union-attr]
        assert [s["session_id"] for s in listing["sessions"]] == [mine]
        one = json.loads((await alice.read_resource(f"agentbay://sessions/{mine}")).contents[0].text)  # type: ignore[union-attr]
        assert one["labels"] == {"team": "a"}
        uris = {str(r.uri) for r in (await alice.list_resources()).resources}
        assert f"agentbay://sessions/{mine}" in uris
        assert f"agentbay://sessions/{theirs}" not in uris
        with pytest.raises(Exception, match="not found"):
            await alice.read_resource(f"agentbay://sessions/{theirs}")


def token_file_server_fails(state_dir: Path, content: str, mode: int = 0o600) -> str:
    token_file = state_dir.parent / "bad-tokens.json"
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text(content)
    token_file.chmod(mode)
    with pytest.raises(AssertionError) as failed:  # HttpServer: the process exited before listening
        HttpServer(state_dir, "--token-file", str(token_file))
    return str(failed.value)


def test_a_plain_text_or_unreadable_token_file_stops_the_server(state_dir: Path) -> None:
    plain = json.dumps({"tokens": [{"principal": "alice", "token": "abm_hello", "scopes": ["all"]}]})
    assert "plain-text token" in token_file_server_fails(state_dir, plain)
    unhashed = json.dumps({"tokens": [{"principal": "alice", "sha256": "abm_hello"}]})
    assert "64 lowercase hex digits" in token_file_server_fails(state_dir, unhashed)
    assert "writable by group or others" in token_file_server_fails(state_dir, '{"tokens": []}', 0o666)
    missing = state_dir.parent / "nowhere.json"
    with pytest.raises(AssertionError, match="cannot read token file"):
        HttpServer(state_dir, "--token-file", str(missing))


async def test_a_desktop_read_scope_can_look_but_not_touch(state_dir: Path) -> None:
    viewer_token = add_token(state_dir.parent / "tokens.json", "viewer", ("sessions", "desktop:read"))
    team = start_team(state_dir)
    team.tokens["viewer"] = viewer_token
    try:
        async with client_as(team, "viewer", "legacy") as viewer:
            session_id = (await call(viewer, "create_session", image_id="linux_latest"))["session_id"]
            assert (await call(viewer, "list_windows", session_id=session_id))["windows"] == []
            assert (await call(viewer, "take_screenshot", session_id=session_id))["width"] == 1280
            for tool, arguments in (
                ("start_app", {"start_cmd": "xterm"}),
                ("input_action", {"action": "type", "text": "x"}),
                ("control_window", {"window_id": 1, "action": "close"}),
                ("execute_command", {"command": "id"}),
            ):
                denied = await call_error(viewer, tool, session_id=session_id, **arguments)
                assert f"Access denied: principal 'viewer' may not call {tool}" in denied, denied
    finally:
        team.server.stop()
