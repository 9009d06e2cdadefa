"""The context tools through an MCP client on a real server and sandboxes: the settings reach the
backend, and each answer says what happened in words a model can act on."""

from __future__ import annotations

from pathlib import Path

import pytest
from mcp import Client

from agentbay_mcp.server.wiring import build_server, default_backend
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import call, call_error, unwrapped

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def test_the_owner_byte_quota_setting_is_enforced_and_a_refused_save_keeps_the_context(
    state_dir: Path,
) -> None:
    settings = Settings(state_dir=state_dir, context_quota_mb=1, pool_size=0)
    with unwrapped():
        async with Client(build_server(settings, default_backend), mode="legacy") as client:
            mounts = [{"name": "big", "path": "/home/user/big"}]
            session_id = (await call(client, "create_session", image_id="code_latest", contexts=mounts))["session_id"]
            await call(client, "write_file", session_id=session_id, path="/home/user/big/small.txt", content="fits")
            synced = await call(client, "sync_context", session_id=session_id)
            assert [(s["name"], s["file_count"]) for s in synced["synced"]] == [("big", 1)]
            grow = "head -c 2000000 /dev/zero > /home/user/big/huge.bin"
            await call(client, "execute_command", session_id=session_id, command=grow)
            refused = await call_error(client, "sync_context", session_id=session_id)
            assert "quota" in refused
            await call(client, "delete_session", session_id=session_id)  # the ending's save is refused too
            info = await call(client, "get_context", name="big")
            assert info["file_count"] == 1, "the last good save is kept"
            assert info["notice"], "and the refused one is reported"
            listed = (await client.call_tool("list_contexts", {})).content[0]
            assert "NOTICE" in getattr(listed, "text", "")
