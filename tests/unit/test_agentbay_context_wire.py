"""The agentbay backend's contexts on the wire, against a scripted cloud (httpx2.MockTransport): what it
sends (PersistenceDataList, owner-prefixed names, SyncContext then GetContextInfo polling, upload before
release) and how it treats hostile answers (huge or endless lists, bad JSON, someone else's context)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx2
import pytest

from agentbay_mcp.backends.agentbay import AgentBayBackend, AgentBayClient
from agentbay_mcp.backends.agentbay import context_wire as wire
from agentbay_mcp.backends.records_contexts import ContextMount
from agentbay_mcp.errors import BackendError, ContextNotFoundError, InvalidArgumentError
from agentbay_mcp.testing.agentbay import FAST_RETRY

pytestmark = pytest.mark.anyio

ALICE, BOB = "alice@example.com", "bob@example.com"
Answer = Callable[[dict[str, str]], Any]


class Cloud:
    """A scripted AgentBay: sessions and contexts enough for the backend, each request recorded."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, str]]] = []
        self.contexts: dict[str, str] = {}  # Id -> cloud Name
        self.labels: dict[str, dict[str, str]] = {}
        self.task_status: dict[str, list[str]] = {"upload": [], "download": []}  # statuses to report, in turn
        self.task_error = ""
        self.script: dict[str, list[Answer]] = {}  # action -> answers that replace the default, one per call
        self.top: dict[str, Any] = {}

    def actions(self) -> list[str]:
        return [action for action, _ in self.calls]

    def params(self, action: str) -> list[dict[str, str]]:
        return [form for name, form in self.calls if name == action]

    async def handle(self, request: httpx2.Request) -> httpx2.Response:
        action = str(request.url.params.get("Action"))
        form = dict(parse_qsl((await request.aread()).decode()))
        form.pop("Authorization", None)
        self.calls.append((action, form))
        self.top = {}
        default = getattr(self, re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower())  # GetContext -> get_context
        data = self.script[action].pop(0)(form) if self.script.get(action) else default(form)
        if isinstance(data, httpx2.Response):
            return data
        return httpx2.Response(200, json={"RequestId": "r", "Success": True, "Data": data, **self.top})

    def create_mcp_session(self, form: dict[str, str]) -> Any:
        session_id = f"s-{len(self.labels)}"
        self.labels[session_id] = json.loads(form["Labels"])
        return {"SessionId": session_id}

    def get_session(self, form: dict[str, str]) -> Any:
        return {"SessionId": form["SessionId"], "Status": "RUNNING"}

    def get_label(self, form: dict[str, str]) -> Any:
        return {"Labels": json.dumps(self.labels[form["SessionId"]])}

    def delete_session_async(self, form: dict[str, str]) -> Any:
        self.labels.pop(form["SessionId"], None)

    def get_session_detail(self, form: dict[str, str]) -> Any:
        return {"Status": "FINISH"}

    def get_context(self, form: dict[str, str]) -> Any:
        found = [i for i, n in self.contexts.items() if n == form["Name"]]
        if not found and form.get("AllowCreate") == "true":
            found = [f"SdkCtx-{len(self.contexts):04d}"]
            self.contexts[found[0]] = form["Name"]
        if not found:
            return not_found()
        return {"Id": found[0], "Name": form["Name"], "CreateTime": "2026-12-07T05:00:00Z", "State": "available"}

    def list_contexts(self, form: dict[str, str]) -> Any:
        items = [{"Id": i, "Name": n, "CreateTime": "2026-12-07 05:00:00"} for i, n in self.contexts.items()]
        start = int(form.get("NextToken") or 0)
        size = int(form["MaxResults"])
        self.top = {"NextToken": str(start + size) if start + size < len(items) else ""}
        return items[start : start + size]

    def delete_context(self, form: dict[str, str]) -> Any:
        return not_found() if self.contexts.pop(form["Id"], None) is None else None

    def sync_context(self, form: dict[str, str]) -> Any:
        return None

    def get_context_info(self, form: dict[str, str]) -> Any:
        kind = form["TaskType"]
        status = self.task_status[kind].pop(0) if self.task_status[kind] else "Success"
        task = {"contextId": form["ContextId"], "path": form["Path"], "status": status, "taskType": kind}
        task["errorMessage"] = self.task_error if status == "Failed" else ""
        return {"ContextStatus": json.dumps([{"type": "data", "data": json.dumps([task])}])}


def not_found() -> httpx2.Response:
    body = {"RequestId": "r", "Success": False, "Code": "InvalidContext.NotFound", "Message": "no such context"}
    return httpx2.Response(400, json=body)


@pytest.fixture
def cloud() -> Cloud:
    return Cloud()


@pytest.fixture
async def backend(cloud: Cloud, tmp_path: Path) -> AsyncIterator[AgentBayBackend]:
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(cloud.handle)) as http:
        client = AgentBayClient(http, api_key="k", endpoint="http://cloud.test", timeout_ms=5000, retry=FAST_RETRY)
        made = AgentBayBackend(client, state_dir=tmp_path, instance="inst", delete_wait_seconds=1)
        made.contexts.sync_wait_seconds = 2
        yield made


def prefix(owner: str) -> str:
    return f"amcp-{hashlib.sha256(owner.encode()).hexdigest()[:12]}-"


async def mount(backend: AgentBayBackend, name: str = "cache", path: str = "/home/user/.cache") -> ContextMount:
    record = await backend.contexts.get_context(ALICE, name, create=True)
    return ContextMount(context_id=record.context_id, name=name, owner=ALICE, path=path)


async def test_names_are_prefixed_by_owner_and_another_owners_context_is_unknown(
    backend: AgentBayBackend, cloud: Cloud
) -> None:
    made = await backend.contexts.get_context(ALICE, "cache", create=True)
    assert cloud.params("GetContext")[-1] == {"Name": prefix(ALICE) + "cache", "AllowCreate": "true"}
    assert (made.name, made.owner, made.context_id, made.size_bytes) == ("cache", ALICE, "SdkCtx-0000", None)
    assert made.created_at.year == 2026
    assert made.created_at.tzinfo is not None
    with pytest.raises(ContextNotFoundError):
        await backend.contexts.get_context(BOB, "cache", create=False)
    assert cloud.params("GetContext")[-1]["Name"] == prefix(BOB) + "cache"
    bobs = await backend.contexts.get_context(BOB, "cache", create=True)
    assert bobs.context_id != made.context_id
    with pytest.raises(ContextNotFoundError):
        await backend.contexts.delete_context(BOB, "other")
    assert [c.name for c in await backend.contexts.list_contexts(BOB)] == ["cache"]


async def test_list_pages_through_and_keeps_only_the_owners(backend: AgentBayBackend, cloud: Cloud) -> None:
    for n in range(250):
        cloud.contexts[f"id-{n}"] = prefix(ALICE if n % 2 else BOB) + f"c{n:03d}"
    cloud.contexts["foreign"] = "someone-elses-context"
    cloud.contexts["bad-name"] = prefix(ALICE) + "../escape"
    listed = await backend.contexts.list_contexts(ALICE)
    assert [c.name for c in listed] == [f"c{n:03d}" for n in range(1, 250, 2)]
    assert all(p["MaxResults"] == "100" for p in cloud.params("ListContexts"))
    assert len(cloud.params("ListContexts")) == 3


async def test_hostile_lists_are_refused(backend: AgentBayBackend, cloud: Cloud) -> None:
    huge = [{"Id": f"x{n}", "Name": prefix(ALICE) + f"c{n}"} for n in range(10_000)]
    cloud.script["ListContexts"] = [lambda form: huge]
    with pytest.raises(BackendError, match="10000 contexts for a page of 100"):
        await backend.contexts.list_contexts(ALICE)

    def endless(form: dict[str, str]) -> Any:
        cloud.top = {"NextToken": "more"}
        return []

    cloud.script["ListContexts"] = [endless] * 200
    with pytest.raises(BackendError, match="after 100 pages"):
        await backend.contexts.list_contexts(ALICE)
    # An answer about a context of another name (or none at all) is no answer.
    cloud.script["GetContext"] = [lambda form: {"Id": "x", "Name": prefix(BOB) + "cache"}, lambda form: None]
    with pytest.raises(BackendError, match="describes another context"):
        await backend.contexts.get_context(ALICE, "cache", create=True)
    with pytest.raises(ContextNotFoundError):
        await backend.contexts.get_context(ALICE, "cache", create=True)


async def test_create_sends_the_persistence_list_and_waits_for_the_download(
    backend: AgentBayBackend, cloud: Cloud
) -> None:
    cache = await mount(backend)
    cloud.task_status["download"] = ["Running", "Pending", "Success"]
    record = await backend.create_session(image_id="code_latest", labels={}, owner="conv-1", contexts=[cache])
    assert record.contexts == (cache,)
    sent = cloud.params("CreateMcpSession")[0]
    persistence = json.loads(sent["PersistenceDataList"])
    assert [{k: v for k, v in p.items() if k != "Policy"} for p in persistence] == [
        {"ContextId": cache.context_id, "Path": "/home/user/.cache"}
    ]
    policy = json.loads(persistence[0]["Policy"])  # JSON text inside the JSON, as the SDK sends it
    assert policy["uploadPolicy"] == {
        "autoUpload": True,
        "uploadStrategy": "UploadBeforeResourceRelease",
        "uploadMode": "File",
    }
    assert policy["downloadPolicy"]["autoDownload"] is True
    assert wire.mounts_from_label(json.loads(sent["Labels"])[wire.LABEL_CONTEXTS]) == (cache,)
    infos = cloud.params("GetContextInfo")
    assert len(infos) == 3
    assert infos[0] == {"SessionId": record.session_id, "ContextId": cache.context_id, "Path": cache.path,
                        "TaskType": "download"}  # fmt: skip
    in_use = await backend.contexts.get_context(ALICE, "cache", create=False)
    assert in_use.in_use_by == (record.session_id,)
    with pytest.raises(InvalidArgumentError, match=record.session_id):
        await backend.contexts.delete_context(ALICE, "cache")


async def test_a_failed_download_deletes_the_session_without_writing_back(
    backend: AgentBayBackend, cloud: Cloud
) -> None:
    cache = await mount(backend)
    cloud.task_status["download"] = ["Failed"]
    cloud.task_error = "quota\nexceeded"
    with pytest.raises(BackendError, match=r"could not download context 'cache'.*quota exceeded"):
        await backend.create_session(image_id="code_latest", labels={}, owner="c", contexts=[cache])
    assert "SyncContext" not in cloud.actions()
    assert cloud.actions()[-2:] == ["DeleteSessionAsync", "GetSessionDetail"]
    assert backend.contexts.mounts == {}


async def test_sync_uploads_and_polls_and_says_when_another_session_synced_since(
    backend: AgentBayBackend, cloud: Cloud
) -> None:
    cache = await mount(backend)
    one = await backend.create_session(image_id="code_latest", labels={}, owner="c1", contexts=[cache])
    two = await backend.create_session(image_id="code_latest", labels={}, owner="c2", contexts=[cache])
    cloud.task_status["upload"] = ["Running", "Success"]
    synced = await backend.contexts.sync_context(one.session_id)
    assert [(s.name, s.path, s.warning) for s in synced] == [("cache", cache.path, "")]
    assert cloud.params("SyncContext")[-1] == {
        "SessionId": one.session_id,
        "ContextId": cache.context_id,
        "Path": cache.path,
        "Mode": "upload",
    }
    assert [p["TaskType"] for p in cloud.params("GetContextInfo")[-2:]] == ["upload", "upload"]
    later = await backend.contexts.sync_context(two.session_id, "cache")
    assert one.session_id in later[0].warning
    assert "later sync wins" in later[0].warning
    assert (await backend.contexts.sync_context(two.session_id))[0].warning == ""
    with pytest.raises(InvalidArgumentError, match="not mounted"):
        await backend.contexts.sync_context(one.session_id, "other")


async def test_a_failed_or_endless_sync_is_a_clear_error_and_a_notice(backend: AgentBayBackend, cloud: Cloud) -> None:
    cache = await mount(backend)
    session = await backend.create_session(image_id="code_latest", labels={}, owner="c", contexts=[cache])
    cloud.task_status["upload"] = ["Failed"]
    cloud.task_error = "disk full"
    with pytest.raises(BackendError, match=r"could not upload context 'cache' at /home/user/\.cache: disk full"):
        await backend.contexts.sync_context(session.session_id)
    assert "disk full" in str((await backend.contexts.get_context(ALICE, "cache", create=False)).notice)
    backend.contexts.sync_wait_seconds = 0.3
    cloud.task_status["upload"] = ["Running"] * 1000
    with pytest.raises(BackendError, match=r"did not finish within 0.3 s"):
        await backend.contexts.sync_context(session.session_id)
    cloud.task_status["upload"] = []
    await backend.contexts.sync_context(session.session_id)
    assert (await backend.contexts.get_context(ALICE, "cache", create=False)).notice is None


async def test_delete_uploads_first_and_a_failed_upload_is_reported(
    backend: AgentBayBackend, cloud: Cloud, caplog: pytest.LogCaptureFixture
) -> None:
    cache = await mount(backend)
    session = await backend.create_session(image_id="code_latest", labels={}, owner="c", contexts=[cache])
    cloud.calls.clear()
    await backend.delete_session(session.session_id)
    assert cloud.actions()[:3] == ["SyncContext", "GetContextInfo", "DeleteSessionAsync"]
    assert (await backend.contexts.get_context(ALICE, "cache", create=False)).in_use_by == ()

    again = await backend.create_session(image_id="code_latest", labels={}, owner="c", contexts=[cache])
    cloud.task_status["upload"] = ["Failed"]
    cloud.task_error = "network unreachable"
    with caplog.at_level(logging.WARNING):
        await backend.delete_session(again.session_id)
    assert "DeleteSessionAsync" in cloud.actions()[-3:]  # released all the same
    assert "network unreachable" in caplog.text
    notice = (await backend.contexts.get_context(ALICE, "cache", create=False)).notice
    assert notice is not None
    assert again.session_id in notice
    assert "keeps what it held before" in notice
    await backend.contexts.delete_context(ALICE, "cache")
    assert cache.context_id not in cloud.contexts


async def test_a_deeply_nested_upload_status_still_releases_the_session(backend: AgentBayBackend, cloud: Cloud) -> None:
    cache = await mount(backend)
    session = await backend.create_session(image_id="code_latest", labels={}, owner="c", contexts=[cache])
    cloud.script["GetContextInfo"] = [lambda form: {"ContextStatus": "[" * 100_000}]
    await backend.delete_session(session.session_id)
    assert "DeleteSessionAsync" in cloud.actions()
    notice = (await backend.contexts.get_context(ALICE, "cache", create=False)).notice
    assert notice is not None
    assert "not the expected JSON" in notice


async def test_another_server_rebuilds_the_mounts_from_the_label(
    backend: AgentBayBackend, cloud: Cloud, tmp_path: Path
) -> None:
    cache = await mount(backend)
    session = await backend.create_session(image_id="code_latest", labels={}, owner="c", contexts=[cache])
    backend.contexts.mounts.clear()  # as a restarted server (or another one of the instance) knows it
    assert (await backend.get_session(session.session_id)).contexts == (cache,)
    await backend.contexts.sync_context(session.session_id, "cache")
    cloud.calls.clear()
    await backend.delete_session(session.session_id)
    assert cloud.actions()[:5] == ["GetSession", "GetLabel", "SyncContext", "GetContextInfo", "DeleteSessionAsync"]


@pytest.mark.parametrize(
    "raw",
    [
        "not json",
        json.dumps({"a": 1}),
        json.dumps([["id", "cache", "o"]]),
        json.dumps([["id", "../x", "o", "/p"]]),
        json.dumps([["id", "cache", "o", "relative"]]),
        json.dumps([["id", "cache\n", "o", "/p"]]),
        json.dumps([["id", "cache", "o", "/p\n/q"]]),
        json.dumps([["id with space", "cache", "o", "/p"]]),
        json.dumps([["i", "c", "o", "/p"]] * 1000),
        "[" * 100_000,
        "[" * 5000,  # short, but nested past the JSON decoder's recursion bound
    ],
)
def test_a_mounts_label_this_program_did_not_write_holds_none(raw: str) -> None:
    assert wire.mounts_from_label(raw) == ()


@pytest.mark.parametrize(
    "data",
    [
        {"ContextStatus": "not json"},
        {"ContextStatus": json.dumps({"type": "data"})},
        {"ContextStatus": json.dumps([{"type": "data", "data": "[oops"}])},
        {"ContextStatus": json.dumps([{"type": "data", "data": json.dumps(["not a task"])}])},
        {"ContextStatus": json.dumps([{"type": "data", "data": json.dumps([{}] * 5000)}])},
        {"ContextStatus": "x" * 2_000_000},
        {"ContextStatus": 42},
        {"ContextStatus": "[" * 100_000},
        {"ContextStatus": json.dumps([{"type": "data", "data": "[" * 100_000}])},
    ],
)
def test_a_hostile_context_status_is_refused(data: Any) -> None:
    with pytest.raises(BackendError, match="GetContextInfo reply"):
        wire.sync_tasks(data)


def test_cloud_names_never_collide_between_owners() -> None:
    assert wire.cloud_name(ALICE, "cache") != wire.cloud_name(BOB, "cache")
    assert wire.cloud_name(ALICE, "cache").startswith(wire.owner_prefix(ALICE))
    for bad in ("../cache", "cache\n", "", "a" * 65):
        with pytest.raises(BackendError):
            wire.cloud_name(ALICE, bad)
    assert wire.record_of(ALICE, {"Id": "x", "Name": wire.owner_prefix(ALICE) + "cache\n"}) is None


async def test_a_notice_outlives_the_server_that_wrote_it(
    backend: AgentBayBackend, cloud: Cloud, tmp_path: Path
) -> None:
    cache = await mount(backend)
    session = await backend.create_session(image_id="code_latest", labels={}, owner="c", contexts=[cache])
    cloud.task_status["upload"] = ["Failed"]
    cloud.task_error = "bucket gone"
    await backend.delete_session(session.session_id)
    async with httpx2.AsyncClient(transport=httpx2.MockTransport(cloud.handle)) as http:
        client = AgentBayClient(http, api_key="k", endpoint="http://cloud.test", timeout_ms=5000, retry=FAST_RETRY)
        restarted = AgentBayBackend(client, state_dir=tmp_path, instance="inst")
        notice = (await restarted.contexts.get_context(ALICE, "cache", create=False)).notice
        assert notice is not None
        assert "bucket gone" in notice
        (tmp_path / "agentbay-context-notices.json").write_text("[not ours")
        assert (await restarted.contexts.get_context(ALICE, "cache", create=False)).notice is None


async def test_mounts_too_long_for_their_label_are_refused_before_the_create(
    backend: AgentBayBackend, cloud: Cloud
) -> None:
    # The label is how a restarted server finds a session's mounts to write them back: one it could not
    # read back would lose the session's contents at its end, so such a session is never made.
    owner = "p" * 1500  # a principal name as long as an identity provider may make it
    mounts = []
    for index in range(8):
        context = await backend.contexts.get_context(owner, f"c{index}", create=True)
        mounts.append(
            ContextMount(context_id=context.context_id, name=f"c{index}", owner=owner, path=f"/tmp/{index:0900d}")
        )
    cloud.calls.clear()
    with pytest.raises(InvalidArgumentError, match="too long"):
        await backend.create_session(image_id="code_latest", labels={}, owner="c", contexts=mounts)
    assert "CreateMcpSession" not in cloud.actions()
    assert wire.mounts_from_label(wire.mounts_label(mounts[:1])) == tuple(mounts[:1])
