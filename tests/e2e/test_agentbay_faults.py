"""Fault injection on every AgentBay action through an injected httpx2 transport.

Each fault (refused connection, timeout, 500, throttling, malformed and truncated replies, a
connection dropped after the cloud did the work) is tried on every action the backend uses:
idempotent actions recover from one fault and give a clear error when it persists; a create is
never retried once sent, and never leaves a session behind; a command is never run twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from anyio.abc import TaskGroup

from agentbay_mcp.backends.agentbay import AgentBayBackend, tools
from agentbay_mcp.backends.records import ShellCommand
from agentbay_mcp.errors import BackendError, CloudAPIError
from agentbay_mcp.testing.agentbay import API_KEY, FAULTS, FaultTransport, agentbay_backend, emulator, live_session_ids

pytestmark = pytest.mark.anyio


@dataclass
class Rig:
    """The emulator, the fault transport in front of it, and a started backend on a session."""

    url: str
    faults: FaultTransport
    backend: AgentBayBackend
    session_id: str


@pytest.fixture(params=[True, False], ids=["link", "api"])
async def rig(request: pytest.FixtureRequest, state_dir: Path, task_group: TaskGroup) -> AsyncIterator[Rig]:
    faults = FaultTransport()
    async with (
        emulator(state_dir / "emulator", link_url=request.param) as url,
        httpx2.AsyncClient(transport=faults) as http,
    ):
        backend = agentbay_backend(http, url, state_dir / "client")
        await backend.start(task_group)
        record = await backend.create_session(image_id="code_latest", labels={"k": "v"}, owner="c")
        await backend.files.write_file(record.session_id, "/tmp/f.txt", b"hello", "overwrite")
        yield Rig(url, faults, backend, record.session_id)
        faults.plan.clear()
        for session in await backend.list_all():
            await backend.delete_session(session.session_id)
        await backend.close()


Operation = Callable[[Rig], Awaitable[object]]


async def _get(rig: Rig) -> object:
    return await rig.backend.get_session(rig.session_id)


async def _set_labels(rig: Rig) -> object:
    record = await rig.backend.set_labels(rig.session_id, {"k": "w"})
    assert record.labels == {"k": "w"}
    return record


async def _list(rig: Rig) -> object:
    records = await rig.backend.list_all()
    assert [r.session_id for r in records] == [rig.session_id]
    return records


async def _delete(rig: Rig) -> object:
    await rig.backend.delete_session(rig.session_id)
    assert rig.session_id not in await live_session_ids(rig.url)
    return None


async def _read_tool(rig: Rig) -> object:
    info = await rig.backend.files.file_info(rig.session_id, "/tmp/f.txt")
    assert info.size == 5
    return info


def _tool_action(rig: Rig) -> str:
    # The emulator lists a server for every tool, so one tool's channel is every tool's.
    return "callTool" if rig.backend._route.direct(rig.session_id, tools.SHELL) else "CallMcpTool"


#: Idempotent actions: (action, operation that makes it).
IDEMPOTENT: dict[str, tuple[str, Operation]] = {
    "GetSession": ("GetSession", _get),
    "GetLabel": ("GetLabel", _get),
    "SetLabel": ("SetLabel", _set_labels),
    "ListSession": ("ListSession", _list),
    "DeleteSessionAsync": ("DeleteSessionAsync", _delete),
    "GetSessionDetail": ("GetSessionDetail", _delete),
    "read tool": ("", _read_tool),  # CallMcpTool or LinkUrl callTool, whichever the session uses
}


async def _fresh_if_deleting(rig: Rig, name: str) -> None:
    """Deleting happens once per session: the delete actions get a fresh session for each fault."""
    if name in ("DeleteSessionAsync", "GetSessionDetail"):
        record = await rig.backend.create_session(image_id="code_latest", labels={}, owner="c")
        rig.session_id = record.session_id


@pytest.mark.parametrize("name", sorted(IDEMPOTENT))
async def test_idempotent_actions_recover_from_one_fault_of_each_kind(rig: Rig, name: str) -> None:
    action, operation = IDEMPOTENT[name]
    action = action or _tool_action(rig)
    for fault in FAULTS:
        await _fresh_if_deleting(rig, name)
        before = rig.faults.seen[action]
        rig.faults.fail(action, fault)
        await operation(rig)
        assert rig.faults.seen[action] - before >= 2, f"{fault} on {action} was not retried"


@pytest.mark.parametrize("name", sorted(IDEMPOTENT))
async def test_persistent_faults_end_in_a_clear_error(rig: Rig, name: str) -> None:
    action, operation = IDEMPOTENT[name]
    action = action or _tool_action(rig)
    for fault in FAULTS:
        rig.faults.plan.clear()
        await _fresh_if_deleting(rig, name)
        before = rig.faults.seen[action]
        rig.faults.fail(action, fault, times=50)
        with pytest.raises(BackendError) as caught:
            await operation(rig)
        message = str(caught.value)
        assert API_KEY not in message
        assert "AgentBay" in message or "session" in message, message
        assert rig.faults.seen[action] - before == 4, f"{fault} on {action}: not the bounded 4 attempts"
    rig.faults.plan.clear()


@pytest.mark.parametrize("fault", ["timeout", "drop", "truncated", "500", "malformed", "throttle"])
async def test_a_create_is_never_retried_and_never_leaks(rig: Rig, fault: str) -> None:
    before = rig.faults.seen["CreateMcpSession"]
    rig.faults.fail("CreateMcpSession", fault)
    with pytest.raises(BackendError) as caught:
        await rig.backend.create_session(image_id="code_latest", labels={}, owner="c")
    assert API_KEY not in str(caught.value)
    assert rig.faults.seen["CreateMcpSession"] - before == 1
    # The emulator may have created it before the reply was lost: it must have been found and deleted.
    assert await live_session_ids(rig.url) == [rig.session_id]


async def test_a_create_is_retried_when_nothing_was_sent(rig: Rig) -> None:
    rig.faults.fail("CreateMcpSession", "connect", times=2)
    record = await rig.backend.create_session(image_id="code_latest", labels={}, owner="c")
    assert sorted(await live_session_ids(rig.url)) == sorted([rig.session_id, record.session_id])


@pytest.mark.parametrize("fault", ["timeout", "drop", "500", "throttle"])
async def test_a_command_is_never_run_twice(rig: Rig, fault: str) -> None:
    action = _tool_action(rig)
    before = rig.faults.seen[action]
    rig.faults.fail(action, fault)
    with pytest.raises(BackendError):
        await rig.backend.processes.run_process(
            rig.session_id, ShellCommand(command="echo x >> /tmp/count"), wait_ms=10000, cap=1024, timeout_ms=10000
        )
    assert rig.faults.seen[action] - before == 1
    outcome = await rig.backend.processes.run_process(
        rig.session_id, ShellCommand(command="cat /tmp/count 2>/dev/null | wc -l"), wait_ms=10000, cap=1024
    )
    assert outcome.summary is not None
    ran = 0 if fault in ("500", "throttle") else 1  # these faults answer without reaching the session
    assert outcome.summary["stdout"].head.strip() == str(ran).encode()


async def test_keep_alive_failures_are_swallowed(rig: Rig) -> None:
    rig.faults.fail("RefreshSessionIdleTime", "500", times=50)
    await rig.backend.keep_alive(rig.session_id)
    assert rig.faults.seen["RefreshSessionIdleTime"] == 4


async def test_a_commands_http_timeout_outlasts_its_own_timeout(rig: Rig) -> None:
    action = _tool_action(rig)
    for timeout_ms in (1000, 45_000, 600_000):
        sent = len(rig.faults.read_timeouts[action])
        await rig.backend.processes.run_process(
            rig.session_id, ShellCommand(command="true"), wait_ms=timeout_ms, cap=1024, timeout_ms=timeout_ms
        )
        shell_call = rig.faults.read_timeouts[action][sent]  # the first request is the shell tool's
        assert shell_call > timeout_ms / 1000
    await rig.backend.files.file_info(rig.session_id, "/tmp/f.txt")
    assert rig.faults.read_timeouts[action][-1] == 20.0  # other calls: the configured AGENTBAY_TIMEOUT_MS


async def test_a_small_command_costs_one_request_on_either_path(rig: Rig) -> None:
    action = _tool_action(rig)
    before = sum(rig.faults.seen.values())
    outcome = await rig.backend.processes.run_process(
        rig.session_id, ShellCommand(command="printf 'out\\377'; echo err >&2; exit 2"), wait_ms=10000, cap=1024
    )
    assert sum(rig.faults.seen.values()) - before == 1
    assert rig.faults.seen[action] > 0
    assert outcome.summary is not None
    assert outcome.info.exit_code == 2
    # Through CallMcpTool the output comes back base64 (bytes exact); over LinkUrl as the tool's text.
    assert outcome.summary["stdout"].head == (b"out\xef\xbf\xbd" if action == "callTool" else b"out\xff")
    assert outcome.summary["stderr"].head == b"err\n"


async def test_screenshot_downloads_are_retried_then_fail_clearly(state_dir: Path, task_group: TaskGroup) -> None:
    """Without LinkUrl a screenshot is a URL to download (system_screenshot): a GET with retries."""
    faults = FaultTransport()
    async with (
        emulator(state_dir / "emulator", link_url=False) as url,
        httpx2.AsyncClient(transport=faults) as http,
    ):
        backend = agentbay_backend(http, url, state_dir / "client")
        await backend.start(task_group)
        session_id = (await backend.create_session(image_id="linux_latest", labels={}, owner="c")).session_id
        faults.fail("", "500", times=2)  # the download (a GET: no Action) fails twice, then works
        shot = await backend.desktop.screenshot(session_id)
        assert (shot.format, shot.width, shot.height) == ("png", 1280, 800)
        assert shot.data.startswith(b"\x89PNG")
        faults.fail("", "500", times=4)
        with pytest.raises(CloudAPIError, match=r"screenshot download failed \(HTTP 500\)"):
            await backend.desktop.screenshot(session_id)
        await backend.delete_session(session_id)
        await backend.close()
