"""The agentbay backend's contexts against the emulator (whose contexts are the local backend's): a round
trip across sessions, sync, ownership, refusal while mounted, a restarted server's write-back, and the
emulator's own answers to what the cloud refuses."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from anyio.abc import TaskGroup
from mcp import Client

from agentbay_mcp.backends.agentbay import AgentBayBackend
from agentbay_mcp.backends.common.server_lock import new_server_id
from agentbay_mcp.backends.records import ShellCommand
from agentbay_mcp.backends.records_contexts import ContextMount
from agentbay_mcp.errors import ContextNotFoundError, InvalidArgumentError
from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.testing.agentbay import (
    API_KEY,
    FaultTransport,
    agentbay_backend,
    agentbay_settings,
    emulator,
    raw_call,
)
from agentbay_mcp.testing.calls import call, call_error

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

ALICE, BOB = "alice@example.com", "bob@example.com"
PATH = "/home/user/.cache/work"


@pytest.fixture
async def world(state_dir: Path) -> AsyncIterator[tuple[str, httpx2.AsyncClient]]:
    """The emulator's URL and an HTTP client for backends pointed at it."""
    async with emulator(state_dir / "emulator") as found, httpx2.AsyncClient() as client:
        yield found, client


@pytest.fixture
def url(world: tuple[str, httpx2.AsyncClient]) -> str:
    return world[0]


@pytest.fixture
async def backend(world: tuple[str, httpx2.AsyncClient], state_dir: Path, task_group: TaskGroup) -> AgentBayBackend:
    made = agentbay_backend(world[1], world[0], state_dir / "client")
    await made.start(task_group)
    return made


async def sh(backend: AgentBayBackend, session_id: str, command: str) -> str:
    """The command's stdout (and stderr if it failed)."""
    with anyio.fail_after(60):
        outcome = await backend.processes.run_process(
            session_id, ShellCommand(command=command), wait_ms=30_000, cap=1 << 16, timeout_ms=30_000
        )
    assert outcome.summary is not None
    out = outcome.summary["stdout"].head.decode(errors="replace")
    return out if outcome.info.exit_code == 0 else out + outcome.summary["stderr"].head.decode(errors="replace")


def data_of(body: dict[str, object]) -> Any:
    """A raw reply's Data (the test knows its shape)."""
    return body["Data"]


async def mount(backend: AgentBayBackend, owner: str = ALICE, name: str = "cache") -> ContextMount:
    context = await backend.contexts.get_context(owner, name, create=True)
    return ContextMount(context_id=context.context_id, name=name, owner=owner, path=PATH)


async def test_round_trip_across_sessions(backend: AgentBayBackend) -> None:
    cache = await mount(backend)
    first = await backend.create_session(image_id="code_latest", labels={}, owner="conv-1", contexts=[cache])
    assert first.contexts == (cache,)
    out = await sh(backend, first.session_id, f"mkdir -p {PATH}/d && echo kept > {PATH}/d/f && echo ok")
    assert out.strip() == "ok", out
    listed = await backend.contexts.list_contexts(ALICE)
    assert [(c.name, c.in_use_by) for c in listed] == [("cache", (first.session_id,))]
    assert await backend.contexts.list_contexts(BOB) == []
    with pytest.raises(InvalidArgumentError, match=first.session_id):
        await backend.contexts.delete_context(ALICE, "cache")
    await backend.delete_session(first.session_id)  # uploads first, then releases

    second = await backend.create_session(image_id="code_latest", labels={}, owner="conv-2", contexts=[cache])
    assert (await sh(backend, second.session_id, f"cat {PATH}/d/f")).strip() == "kept"
    await sh(backend, second.session_id, f"echo synced > {PATH}/d/g")
    synced = await backend.contexts.sync_context(second.session_id, "cache")
    assert [(s.name, s.path) for s in synced] == [("cache", PATH)]
    third = await backend.create_session(image_id="code_latest", labels={}, owner="conv-3", contexts=[cache])
    assert (await sh(backend, third.session_id, f"cat {PATH}/d/g")).strip() == "synced"
    with pytest.raises(ContextNotFoundError):
        await backend.contexts.get_context(BOB, "cache", create=False)
    for session in (second, third):
        await backend.delete_session(session.session_id)
    await backend.contexts.delete_context(ALICE, "cache")
    assert await backend.contexts.list_contexts(ALICE) == []


async def test_a_restarted_server_writes_back_what_its_orphans_hold(
    world: tuple[str, httpx2.AsyncClient], state_dir: Path, task_group: TaskGroup
) -> None:
    url, http = world
    first = agentbay_backend(http, url, state_dir / "client", server_id=new_server_id())
    cache = await mount(first)
    session = await first.create_session(image_id="code_latest", labels={}, owner="c", contexts=[cache])
    await sh(first, session.session_id, f"mkdir -p {PATH} && echo orphan > {PATH}/f")
    # The first server dies without deleting (its lock was never taken); the next one of the instance reaps.
    second = agentbay_backend(http, url, state_dir / "client")
    assert await second.start(task_group) == [session.session_id]
    again = await second.create_session(image_id="code_latest", labels={}, owner="c", contexts=[cache])
    assert (await sh(second, again.session_id, f"cat {PATH}/f")).strip() == "orphan"
    await second.delete_session(again.session_id)


async def test_the_emulator_answers_like_the_cloud(url: str) -> None:
    unknown = await raw_call(url, "GetContext", Name="nope", AllowCreate="false")
    assert (unknown["Success"], unknown["Code"]) == (False, "InvalidContext.NotFound")
    made = await raw_call(url, "GetContext", Name="free text name: ok", AllowCreate="true")
    data = made["Data"]
    assert isinstance(data, dict)
    assert (data["Name"], data["State"]) == ("free text name: ok", "available")
    context_id = str(data["Id"])
    assert (await raw_call(url, "GetContext", ContextId=context_id))["Data"] == data
    await raw_call(url, "GetContext", Name="second", AllowCreate="true")
    page = await raw_call(url, "ListContexts", MaxResults="1")
    assert (page["TotalCount"], page["NextToken"], len(data_of(page))) == (2, "1", 1)
    rest = await raw_call(url, "ListContexts", MaxResults="1", NextToken="1")
    assert (rest["NextToken"], [c["Name"] for c in data_of(rest)]) == ("", ["second"])
    assert (await raw_call(url, "ModifyContext", Id=context_id, Name="renamed"))["Success"] is True
    renamed = await raw_call(url, "GetContext", Name="renamed")
    assert data_of(renamed)["Id"] == context_id
    for action, form, code in [
        ("DeleteContext", {"Id": "ctx-nope"}, "InvalidContext.NotFound"),
        ("ModifyContext", {"Id": context_id, "Name": "second"}, "InvalidParameter.Name"),
        ("CreateMcpSession", {"PersistenceDataList": "[oops"}, "InvalidParameter.PersistenceDataList"),
        ("CreateMcpSession", {"PersistenceDataList": json.dumps([{"ContextId": "ctx-nope", "Path": PATH}])},
         "InvalidContext.NotFound"),
        ("CreateMcpSession", {"PersistenceDataList": json.dumps([{"ContextId": context_id, "Path": "/etc"}])},
         "InvalidParameter.PersistenceDataList"),
        ("SyncContext", {"SessionId": "s-nope"}, "InvalidMcpSession.NotFound"),
    ]:  # fmt: skip
        body = await raw_call(url, action, **form)
        assert (body["Success"], body["Code"]) == (False, code), (action, body)
    created = await raw_call(
        url,
        "CreateMcpSession",
        ImageId="code_latest",
        PersistenceDataList=json.dumps([{"ContextId": context_id, "Path": PATH, "Policy": "{}"}]),
    )
    session_id = str(data_of(created)["SessionId"])
    used = await raw_call(url, "ListContexts", SessionId=session_id)
    assert [c["Id"] for c in data_of(used)] == [context_id]
    refused = await raw_call(url, "DeleteContext", Id=context_id)
    assert (refused["Success"], refused["Code"]) == (False, "OperationDenied.ContextInUse")
    # SyncContext's key in the query, as the SDK sends it.
    async with httpx2.AsyncClient() as client:
        query = {"Action": "SyncContext", "Version": "2025-05-06", "Authorization": f"Bearer {API_KEY}"}
        response = await client.post(url + "/", params=query, data={"SessionId": session_id, "Mode": "upload"})
    assert response.json()["Success"] is True
    info = await raw_call(url, "GetContextInfo", SessionId=session_id, TaskType="upload")
    tasks = json.loads(json.loads(data_of(info)["ContextStatus"])[0]["data"])
    assert [(t["contextId"], t["path"], t["taskType"]) for t in tasks] == [(context_id, PATH, "upload")]
    assert tasks[0]["status"] in ("Running", "Success")
    await raw_call(url, "ReleaseMcpSession", SessionId=session_id)
    assert (await raw_call(url, "DeleteContext", Id=context_id))["Success"] is True


async def test_the_context_tools_on_the_agentbay_backend(url: str, state_dir: Path) -> None:
    """Through MCP: create_context, a session with contexts, delete (written back), a new session sees it."""
    async with Client(build_server(agentbay_settings(state_dir, url)), mode="legacy") as client:
        made = await call(client, "create_context", name="work")
        assert made["name"] == "work"
        mounts = [{"name": "work", "path": PATH}]
        first = (await call(client, "create_session", image_id="code_latest", contexts=mounts))["session_id"]
        await call(client, "write_file", session_id=first, path=f"{PATH}/notes.txt", content="from the first")
        assert first in str(await call_error(client, "delete_context", name="work"))
        synced = await call(client, "sync_context", session_id=first)
        assert [s["name"] for s in synced["synced"]] == ["work"]
        await call(client, "delete_session", session_id=first)
        second = (await call(client, "create_session", image_id="code_latest", contexts=mounts))["session_id"]
        read = await call(client, "read_file", session_id=second, path=f"{PATH}/notes.txt")
        assert read["content"] == "from the first"
        await call(client, "delete_session", session_id=second)
        listed = await call(client, "list_contexts")
        assert [(c["name"], c.get("size_bytes")) for c in listed["contexts"]] == [("work", None)]  # size unknown
        await call(client, "delete_context", name="work")
        assert "not found" in await call_error(client, "get_context", name="work")


async def test_hostile_context_answers_are_refused_cleanly(url: str, state_dir: Path) -> None:
    """Spoiled GetContext/ListContexts/GetContextInfo answers become short errors, never tracebacks or echoes."""
    faults = FaultTransport()
    async with Client(build_server(agentbay_settings(state_dir, url), http_transport=faults), mode="legacy") as client:
        await call(client, "create_context", name="work")
        session = (
            await call(client, "create_session", image_id="code_latest", contexts=[{"name": "work", "path": PATH}])
        )["session_id"]
        for action, data, tool, args in [
            ("GetContext", {"Id": "x", "Name": "someone-elses <script>"}, "get_context", {"name": "work"}),
            ("ListContexts", [{"Id": "x"}] * 5000, "list_contexts", {}),
            ("GetContextInfo", {"ContextStatus": "<script>" * 10}, "sync_context", {"session_id": session}),
            ("GetContextInfo", {"ContextStatus": "x" * 2_000_000}, "sync_context", {"session_id": session}),
        ]:
            faults.spoil(action, data)
            message = await call_error(client, tool, **args)
            assert f"{action} reply" in message, (action, message)
            assert "Traceback" not in message
            assert "script" not in message
            assert len(message) < 500
        await call(client, "delete_session", session_id=session)
