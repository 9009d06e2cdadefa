"""The per-start token of an HTTP server with no authentication configured (auth/start_token.py).

A real `agentbay-mcp --transport http` subprocess on 127.0.0.1: requests without the token get 401,
the token file is the client's way in, every start has its own token, `--allow-unauthenticated`
serves open, and the token is shown once, at start-up, and nowhere else in the server's output.
The TypeScript SDK client sends it too (test_http_client_gone.py), and the sandbox attack through
the HTTP endpoint fails without it (tests/security/test_http_token_attack.py).
"""

from __future__ import annotations

import re
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agentbay_mcp.auth.token_file import new_token
from agentbay_mcp.testing.calls import INITIALIZE, call
from agentbay_mcp.testing.http_clients import legacy, listed_ids, sessionless
from agentbay_mcp.testing.servers import HttpServer

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

JSON_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
ANNOUNCED = re.compile(
    r"agentbay-mcp: HTTP clients must send this token.*?Pass --allow-unauthenticated[^\n]*\n", re.DOTALL
)


@pytest.fixture
def server(state_dir: Path) -> Iterator[HttpServer]:
    started = HttpServer(state_dir, start_token=True)
    yield started
    started.stop()


def token_files(state_dir: Path) -> list[Path]:
    return list(state_dir.glob("http-token-*"))


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_every_request_needs_the_token(server: HttpServer) -> None:
    assert server.token is not None
    base = server.url.removesuffix("/mcp")
    async with httpx2.AsyncClient(timeout=10) as http:
        refused = {
            "no token": await http.post(server.url, json=INITIALIZE, headers=JSON_HEADERS),
            "another token": await http.post(server.url, json=INITIALIZE, headers=JSON_HEADERS | bearer(new_token())),
            "a truncated token": await http.post(
                server.url, json=INITIALIZE, headers=JSON_HEADERS | bearer(server.token[:-1])
            ),
            "not bearer": await http.post(
                server.url, json=INITIALIZE, headers=JSON_HEADERS | {"Authorization": f"Basic {server.token}"}
            ),
            "metrics without": await http.get(base + "/metrics"),
        }
        for why, response in refused.items():
            assert response.status_code == 401, (why, response.status_code, response.text)
            assert response.headers["www-authenticate"].startswith("Bearer"), why
            assert server.token not in response.text, why
        opened = await http.post(server.url, json=INITIALIZE, headers=JSON_HEADERS | server.headers)
        assert opened.status_code == 200, opened.text
        assert (await http.get(base + "/metrics", headers=server.headers)).status_code == 200
        assert (await http.get(base + "/healthz")).json() == {"status": "ok"}  # for load balancers, as before


def test_the_token_file_is_private_and_holds_exactly_the_token(server: HttpServer, state_dir: Path) -> None:
    assert server.token_file == state_dir / f"http-token-{server.port}"
    assert stat.S_IMODE(server.token_file.stat().st_mode) == 0o600
    assert server.token_file.stat().st_uid == state_dir.stat().st_uid
    assert re.fullmatch(r"abm_[A-Za-z0-9_-]{43}", server.token_file.read_text())  # 256 bits, nothing else
    assert server.stop() == 0
    assert not server.token_file.exists(), "a clean stop leaves no token behind"


async def test_the_python_sdk_client_connects_with_the_header_and_not_without(server: HttpServer) -> None:
    async with legacy(server) as old, sessionless(server) as new:
        created = (await call(old, "create_session", image_id="code_latest"))["session_id"]
        assert await listed_ids(old) == [created]
        assert await listed_ids(new) == []  # the token holder keeps per-conversation ownership
    statuses: list[int] = []

    async def note(response: httpx2.Response) -> None:
        statuses.append(response.status_code)

    with pytest.raises(Exception):  # noqa: B017, PT011  # the SDK turns the 401 into an error of its own
        async with (
            httpx2.AsyncClient(timeout=10, event_hooks={"response": [note]}) as http,
            Client(streamable_http_client(server.url, http_client=http), mode="legacy") as client,
        ):
            await client.list_tools()
    assert statuses, "no request reached the server"
    assert set(statuses) == {401}, statuses


async def test_a_new_start_has_a_new_token_and_the_old_one_is_refused(state_dir: Path) -> None:
    first = HttpServer(state_dir, start_token=True)
    old = first.token
    first.stop()
    second = HttpServer(state_dir, start_token=True)
    try:
        assert second.token is not None
        assert old is not None
        assert second.token != old
        async with httpx2.AsyncClient(timeout=10) as http:
            stale = await http.post(second.url, json=INITIALIZE, headers=JSON_HEADERS | bearer(old))
            assert stale.status_code == 401
            fresh = await http.post(second.url, json=INITIALIZE, headers=JSON_HEADERS | second.headers)
            assert fresh.status_code == 200
    finally:
        second.stop()


async def test_allow_unauthenticated_serves_open_with_a_warning(state_dir: Path) -> None:
    server = HttpServer(state_dir, "--allow-unauthenticated")
    try:
        assert server.headers == {}
        async with sessionless(server) as client:
            created = (await call(client, "create_session", image_id="code_latest"))["session_id"]
            assert await listed_ids(client) == [created]
    finally:
        server.stop()
    log = server.log.read_text()
    assert "WITHOUT authentication (--allow-unauthenticated)" in log
    assert "HTTP clients must send this token" not in log
    assert token_files(state_dir) == []


async def test_the_token_is_shown_once_at_start_and_never_logged(state_dir: Path) -> None:
    """DEBUG logs the SDK's and uvicorn's details and every request line; the audit log goes to the
    same stderr. Neither the token nor a wrong one a client sent may appear outside the start-up message."""
    server = HttpServer(state_dir, "--log-level", "DEBUG", "--audit-log", "stderr", start_token=True)
    wrong = new_token()
    try:
        assert server.token is not None
        async with legacy(server) as old, sessionless(server) as new:
            for client in (old, new):
                session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]
                assert (await call(client, "execute_command", session_id=session_id, command="echo hi"))[
                    "exit_code"
                ] == 0
                await call(client, "list_sessions")
                await call(client, "delete_session", session_id=session_id)
        async with httpx2.AsyncClient(timeout=10) as http:
            assert (
                await http.post(server.url, json=INITIALIZE, headers=JSON_HEADERS | bearer(wrong))
            ).status_code == 401
            metrics = await http.get(server.url.removesuffix("/mcp") + "/metrics", headers=server.headers)
            assert metrics.status_code == 200
    finally:
        assert server.stop() == 0
    log = server.log.read_text()
    assert '"tool":"execute_command"' in log.replace(" ", "")  # the audit log did write to this stderr
    assert len(ANNOUNCED.findall(log)) == 1
    rest = ANNOUNCED.sub("", log)
    assert server.token not in rest
    assert wrong not in log
