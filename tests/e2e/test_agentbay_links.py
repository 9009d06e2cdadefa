"""Port links on the agentbay backend: get_link over MCP is the cloud's GetLink, against the emulator,
whose links really reach the session; the cloud's limits (ports, protocols, no egress rules) are
said plainly; a hostile GetLink answer is refused cleanly."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client

from agentbay_mcp.backends.agentbay.sessions import EGRESS_UNSUPPORTED
from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.testing.agentbay import (
    FaultTransport,
    agentbay_settings,
    emulator,
    get_when_served,
    raw_call,
    serve_once,
)
from agentbay_mcp.testing.calls import call, call_error

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

PORT = 30123  # the cloud links ports 30100-30199 only


@pytest.fixture
async def url(state_dir: Path) -> AsyncIterator[str]:
    async with emulator(state_dir / "emulator") as found:
        yield found


async def test_get_link_reaches_a_server_in_the_session(url: str, state_dir: Path) -> None:
    async with Client(build_server(agentbay_settings(state_dir, url)), mode="legacy") as client:
        session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]
        await call(client, "write_file", session_id=session_id, path="site/index.html", content="hello from the cloud")
        link = await call(client, "get_link", session_id=session_id, port=PORT)
        assert (link["port"], link["protocol"]) == (PORT, "http")
        assert link["url"].startswith("http://127.0.0.1:")  # the emulator's loopback link (the cloud's: https)
        served: dict[str, Any] = {}

        async def serve() -> None:
            served.update(
                await call(client, "execute_command", session_id=session_id, command=serve_once(PORT, "site"))
            )

        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            response = await get_when_served(link["url"] + "/index.html")
        assert (response.status_code, response.text) == (200, "hello from the cloud")
        assert served["exit_code"] == 0, served
        again = await call(client, "get_link", session_id=session_id, port=PORT, protocol="ws")
        assert again["url"].startswith("ws://127.0.0.1:")


async def test_the_clouds_limits_are_said_plainly(url: str, state_dir: Path) -> None:
    settings = agentbay_settings(state_dir, url, network="on-request")  # the operator allows; the cloud cannot
    async with Client(build_server(settings), mode="legacy") as client:
        session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]
        outside = await call_error(client, "get_link", session_id=session_id, port=8000)
        assert "30100-30199" in outside
        tcp = await call_error(client, "get_link", session_id=session_id, port=PORT, protocol="tcp")
        assert "HTTP and WebSocket ports only" in tcp
        egress = await call_error(client, "set_session_network", session_id=session_id, network=["pypi.org"])
        assert EGRESS_UNSUPPORTED in egress
        await call(client, "delete_session", session_id=session_id)
        gone = await call_error(client, "get_link", session_id=session_id, port=PORT)
        assert session_id in gone


async def test_the_emulator_refuses_what_the_cloud_refuses(url: str, state_dir: Path) -> None:
    async with Client(build_server(agentbay_settings(state_dir, url)), mode="legacy") as client:
        session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]
        for form, code, message in [
            ({"Port": "8080"}, "InvalidParameter", "range [30100, 30199]"),
            ({"Port": "abc"}, "InvalidParameter", "range [30100, 30199]"),
            ({}, "InvalidParameter.Port", "port is not valid: null"),
            ({"Port": str(PORT), "ProtocolType": "http"}, "InvalidParameter.ProtocolType", "ProtocolTypeEnum.http"),
        ]:
            body = await raw_call(url, "GetLink", SessionId=session_id, **form)
            assert (body["Success"], body["Code"]) == (False, code), body
            assert message in str(body["Message"])
        unknown = await raw_call(url, "GetLink", SessionId="s-nope", Port=str(PORT), ProtocolType="https")
        assert (unknown["Success"], unknown["Code"]) == (False, "InvalidMcpSession.NotFound")
        port_only = await raw_call(url, "GetLink", SessionId=session_id, Port=str(PORT))  # the cloud's default: wss
        assert port_only["Success"] is True
        assert str(port_only["Data"]["Url"]).startswith("ws://127.0.0.1:")  # type: ignore[index]


HOSTILE: list[Any] = [
    {"Url": 12345},
    {"Url": ["https://a.example/"]},
    {"Url": "https://gw.example/" + "a" * 100_000},
    {"Url": "file:///etc/passwd"},
    {"Url": "javascript:alert(1)"},
    {"Url": "https://gw.example/\n<script>"},
    {"Url": "https://"},
    {"Url": "https://gw.example:99999/"},
    {"Url": ""},
    {},
    None,
    "not json",
    json.dumps({"Url": 7}),
]


async def test_a_hostile_getlink_answer_is_refused_cleanly(url: str, state_dir: Path) -> None:
    faults = FaultTransport()
    settings = agentbay_settings(state_dir, url)
    async with Client(build_server(settings, http_transport=faults), mode="legacy") as client:
        session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]
        for data in HOSTILE:
            faults.spoil("GetLink", data)
            message = await call_error(client, "get_link", session_id=session_id, port=PORT)
            assert "GetLink reply" in message, (data, message)
            assert "Traceback" not in message
            assert len(message) < 500
            for echoed in ("passwd", "script", "aaaa"):  # the cloud's text is never echoed back
                assert echoed not in message
        # Data as the object's JSON text (the SDK allows it) is read like the object.
        faults.spoil("GetLink", json.dumps({"Url": "https://gw.example/request_ai/t0k/path/"}))
        link = await call(client, "get_link", session_id=session_id, port=PORT)
        assert link["url"] == "https://gw.example/request_ai/t0k/path/"
