"""The agentbay backend beyond the contract: keys, sessions released behind our back, reaping,
pagination, MCP end to end, the CLI, and the API key never showing up anywhere."""

from __future__ import annotations

import base64
import io
import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import httpx2
import pytest
from anyio.abc import TaskGroup
from mcp import Client
from PIL import Image

from agentbay_mcp.backends.agentbay import AgentBayBackend, AgentBayClient
from agentbay_mcp.backends.agentbay.sessions import LABEL_INSTANCE, LABEL_SERVER
from agentbay_mcp.backends.common.server_lock import new_server_id
from agentbay_mcp.errors import AuthenticationError, SessionNotFoundError
from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.services.commands.service import CommandService
from agentbay_mcp.services.sessions.registry import Registry
from agentbay_mcp.services.sessions.service import SessionService
from agentbay_mcp.testing.agentbay import (
    API_KEY,
    FAST_RETRY,
    FaultTransport,
    agentbay_backend,
    agentbay_settings,
    emulator,
    live_session_ids,
    raw_call,
)
from agentbay_mcp.testing.answers import unpack
from agentbay_mcp.testing.calls import call, call_error, structured
from agentbay_mcp.testing.servers import server_env

pytestmark = pytest.mark.anyio


@pytest.fixture
async def url(state_dir: Path) -> AsyncIterator[str]:
    async with emulator(state_dir / "emulator") as found:
        yield found


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient() as client:
        yield client


@pytest.fixture
async def service(
    url: str, http: httpx2.AsyncClient, state_dir: Path, task_group: TaskGroup
) -> AsyncIterator[SessionService]:
    """A session service on the agentbay backend, pointed at the emulator."""
    backend = agentbay_backend(http, url, state_dir / "client")
    started = SessionService(backend, Registry(), lease_seconds=600, max_sessions_per_conversation=5)
    await started.start(task_group)
    yield started
    await started.close()


@pytest.mark.parametrize("key", ["", "wrong-key"])
async def test_a_missing_or_wrong_key_fails_at_start_saying_where_to_get_one(
    url: str, http: httpx2.AsyncClient, state_dir: Path, task_group: TaskGroup, key: str
) -> None:
    backend = agentbay_backend(http, url, state_dir / "client", api_key=key)
    with pytest.raises(AuthenticationError) as caught:
        await backend.start(task_group)
    message = str(caught.value)
    assert "AGENTBAY_API_KEY" in message
    assert "agentbay.console.aliyun.com" in message
    await backend.close()


async def test_a_wrong_key_fails_every_call(
    url: str, http: httpx2.AsyncClient, state_dir: Path, task_group: TaskGroup
) -> None:
    good = agentbay_backend(http, url, state_dir / "client")
    await good.start(task_group)
    record = await good.create_session(image_id="code_latest", labels={}, owner="c")
    bad = agentbay_backend(http, url, state_dir / "other", api_key="not-the-key")
    for attempt in (
        bad.get_session(record.session_id),
        bad.create_session(image_id="code_latest", labels={}, owner="c"),
        bad.files.file_info(record.session_id, "/tmp"),
    ):
        with pytest.raises(AuthenticationError, match="AGENTBAY_API_KEY"):
            await attempt
    assert await live_session_ids(url) == [record.session_id]
    await good.delete_session(record.session_id)
    await good.close()


async def test_a_session_released_behind_our_back_is_forgotten_and_the_model_told(
    url: str, service: SessionService
) -> None:
    backend = service.backend
    assert isinstance(backend, AgentBayBackend)
    commands = CommandService(service, backend.processes, backend.process_handles, backend.capabilities)
    info = await service.create_session("conv", "code_latest", {"a": "1"})
    assert (await commands.execute_command("conv", info.session_id, "echo hi")).stdout == "hi\n"
    await raw_call(url, "DeleteSessionAsync", SessionId=info.session_id)  # the cloud's idle release
    await anyio.sleep(0.3)
    with pytest.raises(SessionNotFoundError, match="list_sessions"):
        await commands.execute_command("conv", info.session_id, "echo hi")
    assert info.session_id not in service.registry.session_ids()
    assert (await service.list_sessions("conv")).sessions == []


async def test_get_session_notices_a_release(url: str, service: SessionService) -> None:
    info = await service.create_session("conv", "code_latest", None)
    await raw_call(url, "DeleteSessionAsync", SessionId=info.session_id)
    await anyio.sleep(0.3)
    with pytest.raises(SessionNotFoundError):
        await service.get_session("conv", info.session_id)
    assert len(service.registry) == 0


async def test_restart_reaps_its_dead_servers_orphans_only(
    url: str, http: httpx2.AsyncClient, state_dir: Path, task_group: TaskGroup
) -> None:
    client_dir = state_dir / "client"
    dead = agentbay_backend(http, url, client_dir, server_id=new_server_id())
    alive = agentbay_backend(http, url, client_dir, server_id=new_server_id())
    stranger = agentbay_backend(http, url, state_dir / "elsewhere", instance="someone-else")
    for backend in (dead, alive, stranger):
        await backend.start(task_group)
    orphan = await dead.create_session(image_id="code_latest", labels={}, owner="c")
    kept = await alive.create_session(image_id="code_latest", labels={}, owner="c")
    foreign = await stranger.create_session(image_id="code_latest", labels={}, owner="c")
    await dead.close()  # SIGKILL-like: its lock is gone, its session is not

    restarted = agentbay_backend(http, url, client_dir)
    assert await restarted.start(task_group) == [orphan.session_id]
    assert sorted(await live_session_ids(url)) == sorted([kept.session_id, foreign.session_id])
    assert {r.session_id for r in await restarted.list_all()} == {kept.session_id}
    for backend in (alive, stranger):
        for record in await backend.list_all():
            await backend.delete_session(record.session_id)
        await backend.close()
    await restarted.close()


async def test_reaping_never_lets_a_label_name_a_path(
    url: str, http: httpx2.AsyncClient, state_dir: Path, task_group: TaskGroup
) -> None:
    bait = state_dir / "bait.lock"
    bait.parent.mkdir(parents=True, exist_ok=True)
    bait.write_text("keep me")
    labels = {LABEL_INSTANCE: "test-instance", LABEL_SERVER: "../../../bait"}
    body = await raw_call(url, "CreateMcpSession", ImageId="code_latest", Labels=json.dumps(labels))
    backend = agentbay_backend(http, url, state_dir / "client" / "deeper")
    assert await backend.start(task_group) == []
    assert bait.read_text() == "keep me"
    session_id = str(body["Data"]["SessionId"])  # type: ignore[index]
    assert await live_session_ids(url) == [session_id]
    await backend.delete_session(session_id)
    await backend.close()


async def test_listing_follows_next_token_pages(url: str, state_dir: Path, task_group: TaskGroup) -> None:
    faults = FaultTransport()
    async with httpx2.AsyncClient(transport=faults) as http:
        client = AgentBayClient(http, api_key=API_KEY, endpoint=url, timeout_ms=20000, retry=FAST_RETRY)
        backend = AgentBayBackend(client, state_dir=state_dir / "client", instance="i", page_size=2)
        await backend.start(task_group)
        made = {
            (await backend.create_session(image_id="code_latest", labels={}, owner="c")).session_id for _ in range(5)
        }
        before = faults.seen["ListSession"]
        assert {r.session_id for r in await backend.list_all()} == made
        assert faults.seen["ListSession"] - before == 3
        for session_id in made:
            await backend.delete_session(session_id)
        await backend.close()


async def test_tools_end_to_end_over_mcp(url: str, state_dir: Path) -> None:
    async with Client(build_server(agentbay_settings(state_dir, url)), mode="legacy") as client:
        created = await call(client, "create_session", image_id="code_latest", labels={"team": "a"})
        session_id = created["session_id"]
        result = await call(client, "execute_command", session_id=session_id, command="echo hi; exit 4")
        assert (result["stdout"], result["exit_code"], result["timed_out"]) == ("hi\n", 4, False)
        slow = await call(client, "execute_command", session_id=session_id, command="sleep 20", timeout_ms=500)
        assert slow["timed_out"] is True
        await call(client, "write_file", session_id=session_id, path="notes.txt", content="hello")
        read = await call(client, "read_file", session_id=session_id, path="/home/user/notes.txt")
        assert read["content"] == "hello"
        message = await call_error(client, "start_process", session_id=session_id, command="sleep 1")
        assert "not supported on the agentbay backend" in message
        listed = await call(client, "list_sessions", labels={"team": "a"})
        assert [s["session_id"] for s in listed["sessions"]] == [session_id]
        assert await live_session_ids(url) == [session_id]
    assert await live_session_ids(url) == []  # the conversation ended: its session was released


@pytest.mark.parametrize("link_url", [True, False], ids=["link-url", "call-mcp-tool"])
async def test_desktop_tools_end_to_end_over_mcp(state_dir: Path, link_url: bool) -> None:
    async with (
        emulator(state_dir / "emulator", link_url=link_url) as url,
        Client(build_server(agentbay_settings(state_dir, url)), mode="legacy") as client,
    ):
        session_id = (await call(client, "create_session", image_id="linux_latest"))["session_id"]
        started = await call(client, "start_app", session_id=session_id, start_cmd="xterm -T cloudy")
        assert started["proc_id"] is None  # no process handles in the cloud
        window = started["window"]
        assert (window["title"], window["pname"], window["state"]) == ("cloudy", "xterm", "unknown")
        listed = await call(client, "list_windows", session_id=session_id)
        assert (listed["screen_width"], listed["screen_height"]) == (1280, 800)
        assert [w["title"] for w in listed["windows"]] == ["cloudy"]

        resized = await call(
            client, "control_window", session_id=session_id, window_id=window["window_id"], action="resize",
            width=600, height=400,
        )  # fmt: skip
        assert resized["verified"] is True  # geometry can be checked without window states
        minimized = await call(
            client, "control_window", session_id=session_id, window_id=window["window_id"], action="minimize"
        )
        assert minimized["verified"] is False
        assert "does not report window states" in minimized["note"]

        # Through the cloud's screenshot tool (inline, LinkUrl) or system_screenshot (a URL, downloaded).
        shot = await client.call_tool("take_screenshot", {"session_id": session_id, "max_width": 640})
        assert structured(shot)["width"] == 640
        image = Image.open(io.BytesIO(base64.b64decode(next(b for b in shot.content if b.type == "image").data)))
        assert image.size == (640, 400)

        await call(client, "control_window", session_id=session_id, window_id=window["window_id"], action="activate")
        moved = await call(client, "input_action", session_id=session_id, action="move", x=30, y=40)
        assert (moved["pointer_x"], moved["pointer_y"]) == (30, 40)
        await call(client, "input_action", session_id=session_id, action="type", text="echo cloud > c.txt\n")

        async def typed() -> bool:
            result = await client.call_tool("read_file", {"session_id": session_id, "path": "c.txt"})
            return not result.is_error and unpack("read_file", result)["content"] == "cloud\n"

        assert await poll(typed)
        stopped = await call(client, "stop_app", session_id=session_id, pname="xterm")
        assert sorted(p["pname"] for p in stopped["stopped"]) == ["sh", "xterm"]  # xterm and its shell
        # Started while the old window may still close: X can give the new one the old one's id.
        again = await call(client, "start_app", session_id=session_id, start_cmd="xterm -T again")
        assert again["window"]["title"] == "again"
        await call(client, "stop_app", session_id=session_id, pname="xterm")

        async def no_windows() -> bool:
            return (await call(client, "list_windows", session_id=session_id))["windows"] == []

        assert await poll(no_windows)
        missing = await call_error(client, "control_window", session_id=session_id, window_id=4242, action="close")
        assert "4242" in missing


async def poll(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> bool:
    with anyio.move_on_after(timeout):
        while not await check():  # noqa: ASYNC110 - polls the session
            await anyio.sleep(0.05)
        return True
    return False


def _echoing_service(request: httpx2.Request) -> httpx2.Response:
    """A service that lists nothing and answers a create with the caller's key in its message."""
    if request.url.params.get("Action") == "ListSession":
        return httpx2.Response(200, json={"RequestId": "r", "Success": True, "Data": []})
    return httpx2.Response(400, json={"Success": False, "Code": "InvalidParameter", "Message": f"key {API_KEY}"})


async def test_the_api_key_never_appears_in_logs_errors_or_results(
    url: str, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    faults = FaultTransport()
    seen: list[str] = []
    settings = agentbay_settings(state_dir, url)
    async with Client(build_server(settings, http_transport=faults), mode="legacy") as client:
        created = await call(client, "create_session", image_id="code_latest")
        session_id = created["session_id"]
        seen.append(repr(created))
        seen.append(repr(await call(client, "execute_command", session_id=session_id, command="env")))
        seen.append(repr(await call(client, "get_session", session_id=session_id)))
        faults.fail("ListSession", "500", times=50)
        faults.fail("CreateMcpSession", "drop")
        seen.append(await call_error(client, "create_session", image_id="code_latest"))
        seen.append(await call_error(client, "create_session", image_id="no_such_image"))
        seen.append(await call_error(client, "read_file", session_id=session_id, path="/nope"))
    # A bad key, and a service that echoes the key back in its error message.
    echo = httpx2.MockTransport(_echoing_service)
    async with Client(build_server(settings, http_transport=echo), mode="legacy") as client:
        seen.append(await call_error(client, "create_session", image_id="code_latest"))
    assert any("***" in text for text in seen), seen
    for text in [*seen, caplog.text]:
        assert API_KEY not in text


def run_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    """`python -m agentbay_mcp ARGS` without stdin, its output kept."""
    return subprocess.run(
        [sys.executable, "-m", "agentbay_mcp", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_the_server_refuses_to_start_without_a_key(state_dir: Path) -> None:
    env = {k: v for k, v in server_env(state_dir).items() if not k.startswith("AGENTBAY_")}
    env.update(AGENTBAY_MCP_STATE_DIR=str(state_dir), AGENTBAY_ENDPOINT="http://127.0.0.1:9")
    done = run_command("--backend", "agentbay", env=env)
    assert done.returncode == 1, done.stderr
    assert b"AGENTBAY_API_KEY" in done.stderr
    assert b"agentbay.console.aliyun.com" in done.stderr


def test_the_emulator_command_needs_a_key(state_dir: Path) -> None:
    env = {k: v for k, v in server_env(state_dir).items() if k != "AGENTBAY_API_KEY"}
    done = run_command("emulator", "--state-dir", str(state_dir), "--port", "0", env=env)
    assert done.returncode == 2
    assert b"AGENTBAY_API_KEY" in done.stderr


@pytest.mark.parametrize("command", [["doctor"], ["sessions", "list"], ["sessions", "reap"]])
def test_local_only_commands_refuse_the_agentbay_backend(state_dir: Path, command: list[str]) -> None:
    done = run_command(*command, "--backend", "agentbay", env=server_env(state_dir))
    assert done.returncode == 2
    assert b"only the local backend" in done.stderr


class CappedShellTransport(httpx2.AsyncBaseTransport):
    """The emulator behind a 'cloud' that cuts every shell command's timeout to 300 ms (LinkUrl path)."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        if request.url.path.endswith("/callTool"):
            payload = json.loads(await request.aread())
            if payload.get("tool") == "shell":
                payload["args"]["timeout_ms"] = min(int(payload["args"].get("timeout_ms") or 300), 300)
                headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
                request = httpx2.Request(request.method, request.url, headers=headers, json=payload)
        return await self.inner.handle_async_request(request)


async def test_a_command_the_cloud_stops_early_is_reported_at_once(url: str, state_dir: Path) -> None:
    settings = agentbay_settings(state_dir, url)
    async with Client(build_server(settings, http_transport=CappedShellTransport()), mode="legacy") as client:
        session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]
        with anyio.fail_after(10):  # not the 20 s we asked for: the cloud ended it after 300 ms
            started = anyio.current_time()
            result = await call(client, "execute_command", session_id=session_id, command="sleep 30", timeout_ms=20000)
        assert result["timed_out"] is True
        assert anyio.current_time() - started < 5


class NoShellOverLinkTransport(httpx2.AsyncBaseTransport):
    """The emulator, but sessions list no server for `shell`: LinkUrl for the other tools only."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.params.get("Action") not in ("CreateMcpSession", "GetSession"):
            return response
        body = json.loads(await response.aread())
        data = body.get("Data") or {}
        if isinstance(data.get("ToolList"), str):
            data["ToolList"] = json.dumps([t for t in json.loads(data["ToolList"]) if t.get("name") != "shell"])
        return httpx2.Response(response.status_code, json=body)


async def test_a_tool_without_a_link_server_uses_the_size_limited_path(url: str, state_dir: Path) -> None:
    settings = agentbay_settings(state_dir, url)
    async with Client(build_server(settings, http_transport=NoShellOverLinkTransport()), mode="legacy") as client:
        session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]
        # 200 KB of output: over CallMcpTool's ~63 KB message limit, so it must come back in pieces.
        result = await call(
            client, "execute_command", session_id=session_id, command="head -c 200000 /dev/zero | tr '\\0' a"
        )
        assert result["exit_code"] == 0, result
        assert result["stdout_bytes"] == 200000
