"""Conformance: Alibaba's official SDK (wuying-agentbay-sdk) drives the emulator end to end.

The emulator runs as `agentbay-mcp emulator` in a subprocess. The SDK hard-codes HTTPS in each
generated request and builds its tea-openapi client without a protocol, so the one adjustment is
to rebuild that client from the same tea-openapi `Config` with `protocol="HTTP"` (the documented
tea-openapi setting, which wins over the per-request default). Everything else is the SDK as
shipped: its request building, its envelope parsing, its LinkUrl and CallMcpTool paths, its
chunked file transfer and its delete polling.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import pytest

from agentbay_mcp.testing.agentbay import API_KEY, get_when_served, serve_once
from agentbay_mcp.testing.servers import free_port, server_env
from agentbay_mcp.testing.waiting import wait_until

# The SDK configures its logger on import and writes ./agentbay.log unless told otherwise.
os.environ.setdefault("AGENTBAY_LOG_FILE", str(Path(tempfile.gettempdir()) / "agentbay-sdk-tests.log"))
os.environ.setdefault("AGENTBAY_LOG_LEVEL", "WARNING")
agentbay = pytest.importorskip("agentbay")
pytestmark = pytest.mark.anyio


@pytest.fixture(params=[True, False], ids=["link", "api"])
def emulator_port(request: pytest.FixtureRequest, state_dir: Path) -> Iterator[int]:
    port = free_port()
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "agentbay_mcp", "emulator", "--port", str(port), "--state-dir", str(state_dir)]
    if not request.param:
        args.append("--no-link-url")
    log = (state_dir.parent / "emulator.log").open("wb")
    process = subprocess.Popen(
        args, env={**server_env(state_dir), "AGENTBAY_API_KEY": API_KEY}, stdout=log, stderr=subprocess.STDOUT
    )

    def listening() -> bool:
        assert process.poll() is None, (state_dir.parent / "emulator.log").read_text()
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        assert wait_until(listening, timeout=30)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def sdk_client(port: int) -> Any:
    """The SDK's AsyncAgentBay, its API client pointed at the emulator over plain HTTP."""
    from agentbay import AsyncAgentBay
    from agentbay.api.client import Client
    from alibabacloud_tea_openapi import models as open_api_models

    bay = AsyncAgentBay(api_key=API_KEY)
    config = open_api_models.Config(
        endpoint=f"127.0.0.1:{port}", protocol="HTTP", read_timeout=60000, connect_timeout=60000
    )
    bay.client = Client(config)
    return bay


async def sdk_session(port: int, monkeypatch: pytest.MonkeyPatch, image_id: str, **labels: str) -> tuple[Any, Any]:
    """The SDK client and a new session made through it (the test's AGENTBAY_* settings kept out)."""
    from agentbay import CreateSessionParams

    # The SDK reads AGENTBAY_* from the environment (and a .env file): keep the test's own settings.
    for name in [n for n in os.environ if n.startswith("AGENTBAY_")]:
        monkeypatch.delenv(name)
    bay = sdk_client(port)
    created = await bay.create(CreateSessionParams(image_id=image_id, labels=labels or None))
    assert created.success, created.error_message
    return bay, created.session


async def test_the_official_sdk_round_trip(emulator_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    bay, session = await sdk_session(emulator_port, monkeypatch, "code_latest", project="conformance")

    ran = await session.command.execute_command("echo hello; echo oops >&2; exit 3")
    assert (ran.exit_code, ran.stdout, ran.stderr) == (3, "hello\n", "oops\n")
    ok = await session.command.execute_command("pwd", cwd="/tmp")
    assert (ok.success, ok.stdout) == (True, "/tmp\n")

    text = "".join(f"line {n}: conformance \u00e9\u00e8\n" for n in range(6000))  # ~150 KB: chunked without LinkUrl
    wrote = await session.file_system.write_file("/home/user/big.txt", text)
    assert wrote.success, wrote.error_message
    read = await session.file_system.read_file("/home/user/big.txt")
    assert read.success, read.error_message
    assert read.content == text
    info = await session.file_system.get_file_info("/home/user/big.txt")
    assert info.file_info["size"] == len(text.encode())
    listing = await session.file_system.list_directory("/home/user")
    assert [(e.name, e.is_directory) for e in listing.entries] == [("big.txt", False)]

    assert (await session.set_labels({"project": "conformance", "stage": "two"})).success
    assert (await session.get_labels()).data == {"project": "conformance", "stage": "two"}
    found = await bay.list(labels={"stage": "two"})
    assert found.success, found.error_message
    assert [s["sessionId"] for s in found.session_ids] == [session.session_id]
    assert (await bay.list(labels={"stage": "three"})).session_ids == []

    deleted = await session.delete()
    assert deleted.success, deleted.error_message
    assert (await bay.list(labels={"project": "conformance"})).session_ids == []


async def test_the_sdk_sees_a_wrong_key_refused(emulator_port: int) -> None:
    from agentbay import CreateSessionParams

    bay = sdk_client(emulator_port)
    bay.api_key = "not-the-key"
    created = await bay.create(CreateSessionParams(image_id="code_latest"))
    assert not created.success
    assert "InvalidApiKey" in created.error_message or "401" in created.error_message


async def test_the_official_sdk_drives_the_desktop(emulator_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's computer module (apps, windows, input, screenshots) against the emulated desktop."""
    import httpx

    _, session = await sdk_session(emulator_port, monkeypatch, "linux_latest")
    computer = session.computer

    started = await computer.start_app("xterm -T sdk")
    assert started.success, started.error_message
    assert "xterm" in [p.pname for p in started.data]

    def sdk_window() -> Any:
        listed = anyio.from_thread.run(computer.list_root_windows)
        return next((w for w in listed.windows if w.title == "sdk"), None)

    assert await anyio.to_thread.run_sync(lambda: wait_until(lambda: sdk_window() is not None, timeout=10))
    window = await anyio.to_thread.run_sync(sdk_window)
    assert window.pname == "xterm"
    size = await computer.get_screen_size()
    assert (size.data["width"], size.data["height"]) == (1280, 800)
    assert (await computer.maximize_window(window.window_id)).success

    def maximized() -> bool:
        current = sdk_window()
        return current is not None and (current.width, current.height) == (1280, 800)

    assert await anyio.to_thread.run_sync(lambda: wait_until(maximized, timeout=10))
    assert (await computer.move_mouse(200, 300)).success
    position = await computer.get_cursor_position()  # the SDK hands this one over as the JSON text
    where = position.data if isinstance(position.data, dict) else json.loads(position.data)
    assert (where["x"], where["y"]) == (200, 300)
    assert (await computer.input_text("echo sdk-typed > /tmp/sdk.txt\n")).success

    def typed() -> bool:
        ran = anyio.from_thread.run(session.command.execute_command, "cat /tmp/sdk.txt")
        return bool(ran.stdout == "sdk-typed\n")

    assert await anyio.to_thread.run_sync(lambda: wait_until(typed, timeout=10))

    if session.link_url:  # inline screenshot: LinkUrl sessions only
        shot = await computer.beta_take_screenshot("png")
        assert (shot.width, shot.height) == (1280, 800)
        assert shot.data.startswith(b"\x89PNG")
    else:  # a URL to download
        shot_url = await computer.screenshot()
        assert shot_url.success, shot_url.error_message
        async with httpx.AsyncClient() as http:
            assert (await http.get(shot_url.data)).content.startswith(b"\x89PNG")

    assert (await computer.stop_app_by_pname("xterm")).success
    assert (await session.delete()).success


@pytest.mark.parametrize("emulator_port", [True], indirect=True, ids=["link"])
async def test_the_official_sdk_gets_a_link_that_works(emulator_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """session.get_link (GetLink) hands out a URL that reaches a server in the session; the cloud's limits hold."""
    from agentbay import SessionError

    _, session = await sdk_session(emulator_port, monkeypatch, "code_latest")
    assert (await session.file_system.write_file("/home/user/site/index.html", "hello sdk")).success

    link = await session.get_link(protocol_type="https", port=30150)
    assert link.success, link.error_message
    assert link.data.startswith("http://127.0.0.1:")  # the cloud's would be https://; loopback has no TLS
    ran: list[Any] = []

    async def serve() -> None:
        ran.append(await session.command.execute_command(serve_once(30150, "/home/user/site"), timeout_ms=30000))

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        response = await get_when_served(link.data + "/index.html")
    assert (response.status_code, response.text) == (200, "hello sdk")
    assert ran[0].exit_code == 0, ran[0]

    with pytest.raises(SessionError, match=r"\[30100, 30199\]"):
        await session.get_link(protocol_type="https", port=8080)
    with pytest.raises(SessionError, match=r"ProtocolTypeEnum\.http"):
        await session.get_link(protocol_type="http", port=30150)
    assert (await session.delete()).success


@pytest.mark.parametrize("emulator_port", [False], indirect=True, ids=["api"])
async def test_the_official_sdk_keeps_a_context_across_sessions(
    emulator_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDK's context module: get(create), list, a session created with context_syncs, session.context.sync,
    session.delete(sync_context=True), the data in a new session, delete refused while mounted, then done."""
    from agentbay import AgentBayError, ContextSync, CreateSessionParams, SyncPolicy

    for name in [n for n in os.environ if n.startswith("AGENTBAY_")]:
        monkeypatch.delenv(name)
    bay = sdk_client(emulator_port)
    got = await bay.context.get("sdk-cache", create=True)
    assert got.success, got.error_message
    context = got.context
    assert (context.name, context.id) == ("sdk-cache", got.context_id)
    assert not (await bay.context.get("sdk-missing")).success
    listed = await bay.context.list()
    assert listed.success, listed.error_message
    assert [(c.id, c.name) for c in listed.contexts] == [(context.id, "sdk-cache")]

    params = CreateSessionParams(
        image_id="code_latest", context_syncs=[ContextSync.new(context.id, "/home/user/data", SyncPolicy.default())]
    )
    created = await bay.create(params)
    assert created.success, created.error_message
    first = created.session
    assert (await first.file_system.write_file("/home/user/data/one.txt", "synced")).success
    synced = await first.context.sync()
    assert synced.success, synced.error_message
    info = await first.context.info()
    assert [(s.context_id, s.task_type, s.status) for s in info.context_status_data if s.task_type == "upload"] == [
        (context.id, "upload", "Success")
    ]
    assert (await first.file_system.write_file("/home/user/data/two.txt", "at delete")).success
    with pytest.raises(AgentBayError, match="ContextInUse"):  # the SDK raises on this refusal
        await bay.context.delete(context)
    deleted = await first.delete(sync_context=True)
    assert deleted.success, deleted.error_message

    again = await bay.create(params)
    assert again.success, again.error_message
    second = again.session
    assert (await second.file_system.read_file("/home/user/data/one.txt")).content == "synced"
    assert (await second.file_system.read_file("/home/user/data/two.txt")).content == "at delete"
    assert (await second.delete()).success
    assert (await bay.context.delete(context)).success
    assert (await bay.context.list()).contexts == []
