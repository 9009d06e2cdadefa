"""The `SandboxBackend` contract: every backend runs this suite (add yours to `BACKENDS`).

`agentbay` is the cloud backend end to end through the emulator (a real HTTP server on 127.0.0.1)
with the direct LinkUrl tool path; `agentbay-api` is the same with every tool through CallMcpTool,
where messages are size-limited and reads and writes go in pieces; `memory` is the in-memory test
double (agentbay_mcp.testing). A test that needs a capability some backend lacks starts with
`requires(backend, "flag")`, which skips it there with the reason (see records.Capabilities).
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import httpx2
import pytest
from anyio.abc import TaskGroup

from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.local.pool import POOL_OWNER
from agentbay_mcp.backends.protocols import Files, Processes, ProcessHandles, SandboxBackend
from agentbay_mcp.backends.records import NetworkPolicy, ReadSpan, RunOutcome, SessionRecord, ShellCommand
from agentbay_mcp.errors import BackendUnavailableError, FileOperationError, SessionNotFoundError, UnknownImageError
from agentbay_mcp.testing.agentbay import agentbay_backend, emulator, get_when_served, serve_once
from agentbay_mcp.testing.memory_backend import MemoryBackend

pytestmark = pytest.mark.anyio


@contextlib.asynccontextmanager
async def _local(state_dir: Path) -> AsyncIterator[SandboxBackend]:
    yield LocalBackend(state_dir)


@contextlib.asynccontextmanager
async def _local_pooled(state_dir: Path) -> AsyncIterator[SandboxBackend]:
    """The local backend with a session pool: sessions handed out pre-started keep the whole contract."""
    yield LocalBackend(state_dir, pool_size=1)


def _agentbay(link_url: bool) -> Callable[[Path], AbstractAsyncContextManager[SandboxBackend]]:
    @contextlib.asynccontextmanager
    async def make(state_dir: Path) -> AsyncIterator[SandboxBackend]:
        async with emulator(state_dir / "emulator", link_url=link_url) as url, httpx2.AsyncClient() as http:
            yield agentbay_backend(http, url, state_dir / "client")

    return make


@contextlib.asynccontextmanager
async def _memory(state_dir: Path) -> AsyncIterator[SandboxBackend]:
    yield MemoryBackend()


BACKENDS: dict[str, Callable[[Path], AbstractAsyncContextManager[SandboxBackend]]] = {
    "local": _local,
    "local-pooled": _local_pooled,
    "memory": _memory,
    "agentbay": _agentbay(link_url=True),
    "agentbay-api": _agentbay(link_url=False),
}


@pytest.fixture(params=sorted(BACKENDS))
async def backend(
    request: pytest.FixtureRequest, state_dir: Path, task_group: TaskGroup
) -> AsyncIterator[SandboxBackend]:
    async with BACKENDS[request.param](state_dir) as instance:
        await instance.start(task_group)
        if isinstance(instance, LocalBackend):  # a pooled one hands out its first session pre-started
            with anyio.fail_after(20):
                while len(instance.pool) < instance.pool.size:  # noqa: ASYNC110 - a test may poll
                    await anyio.sleep(0.01)
        try:
            yield instance
        finally:
            for record in await instance.list_all():
                await instance.delete_session(record.session_id)
            await instance.close()


def made(records: list[SessionRecord]) -> set[str]:
    """Ids of the sessions callers made: an operator's listing also shows those waiting in a pool."""
    return {record.session_id for record in records if record.owner != POOL_OWNER}


def requires(backend: SandboxBackend, *flags: str) -> None:
    """Skip the test on a backend that does not declare every capability in `flags`."""
    missing = [flag for flag in flags if not getattr(backend.capabilities, flag)]
    if missing:
        pytest.skip(f"the {backend.name} backend declares no {', '.join(missing)}")


async def new_session(backend: SandboxBackend) -> str:
    return (await backend.create_session(image_id="code_latest", labels={}, owner="c")).session_id


async def test_satisfies_the_protocol(backend: SandboxBackend) -> None:
    assert isinstance(backend, SandboxBackend)
    assert backend.name
    assert backend.server_id
    assert isinstance(backend.processes, Processes)
    assert isinstance(backend.files, Files)


async def test_capability_objects_match_the_declared_capabilities(backend: SandboxBackend) -> None:
    capabilities = backend.capabilities
    assert (backend.process_handles is not None) == capabilities.process_handles
    assert isinstance(backend.process_handles, ProcessHandles) or not capabilities.process_handles
    assert (backend.desktop is not None) == capabilities.desktop
    assert any(image.desktop for image in backend.images()) == capabilities.desktop
    for flag, reason in capabilities.unsupported.items():
        assert getattr(capabilities, flag) is False
        assert reason


async def test_offers_the_standard_images(backend: SandboxBackend) -> None:
    images = {image.image_id: image for image in backend.images()}
    assert images["linux_latest"].desktop is backend.capabilities.desktop
    assert images["code_latest"].desktop is False


async def test_create_then_get_returns_the_same_record(backend: SandboxBackend) -> None:
    record = await backend.create_session(image_id="code_latest", labels={"a": "1"}, owner="conv-1")
    assert record.image_id == "code_latest"
    assert record.labels == {"a": "1"}
    assert record.owner == "conv-1"
    assert record.server_id == backend.server_id
    assert record.status == "RUNNING"
    assert await backend.get_session(record.session_id) == record


async def test_set_labels_replaces_the_whole_map(backend: SandboxBackend) -> None:
    record = await backend.create_session(image_id="linux_latest", labels={"a": "1", "b": "2"}, owner="c")
    updated = await backend.set_labels(record.session_id, {"c": "3"})
    assert updated.labels == {"c": "3"}
    assert (await backend.get_session(record.session_id)).labels == {"c": "3"}


async def test_delete_is_idempotent_and_final(backend: SandboxBackend) -> None:
    record = await backend.create_session(image_id="linux_latest", labels={}, owner="c")
    await backend.delete_session(record.session_id)
    await backend.delete_session(record.session_id)
    with pytest.raises(SessionNotFoundError):
        await backend.get_session(record.session_id)
    with pytest.raises(SessionNotFoundError):
        await backend.set_labels(record.session_id, {"x": "y"})
    assert record.session_id not in {r.session_id for r in await backend.list_all()}


async def test_unknown_image_is_refused(backend: SandboxBackend) -> None:
    with pytest.raises(UnknownImageError, match="linux_latest"):
        await backend.create_session(image_id="no_such_image", labels={}, owner="c")
    assert made(await backend.list_all()) == set()


@pytest.mark.parametrize("session_id", ["session-000000000000000000000000", "../x", "", "a/b", "\x00"])
async def test_unknown_ids_are_not_found(backend: SandboxBackend, session_id: str) -> None:
    with pytest.raises(SessionNotFoundError):
        await backend.get_session(session_id)
    await backend.delete_session(session_id)
    await backend.keep_alive(session_id)


async def test_ids_are_unique(backend: SandboxBackend) -> None:
    records = [await backend.create_session(image_id="linux_latest", labels={}, owner="c") for _ in range(20)]
    assert len({r.session_id for r in records}) == 20
    assert made(await backend.list_all()) == {r.session_id for r in records}


async def test_reaping_spares_the_live_servers_sessions(backend: SandboxBackend) -> None:
    record = await backend.create_session(image_id="linux_latest", labels={}, owner="c")
    assert await backend.reap_orphans() == []
    assert await backend.get_session(record.session_id) == record


async def test_keep_alive_on_a_live_session(backend: SandboxBackend) -> None:
    record = await backend.create_session(image_id="linux_latest", labels={}, owner="c")
    await backend.keep_alive(record.session_id)
    assert (await backend.get_session(record.session_id)).session_id == record.session_id


# Commands ---------------------------------------------------------------------------------------


async def test_run_process_returns_streams_and_exit_code(backend: SandboxBackend) -> None:
    session_id = await new_session(backend)
    outcome = await backend.processes.run_process(
        session_id, ShellCommand(command="echo out; echo err >&2; exit 3"), wait_ms=20000, cap=65536, timeout_ms=20000
    )
    assert outcome.summary is not None
    assert outcome.info.exit_code == 3
    assert not outcome.info.running
    assert outcome.summary["stdout"].head + outcome.summary["stdout"].tail == b"out\n"
    assert outcome.summary["stderr"].head + outcome.summary["stderr"].tail == b"err\n"


async def test_run_process_honours_cwd_and_env(backend: SandboxBackend) -> None:
    session_id = await new_session(backend)
    outcome = await backend.processes.run_process(
        session_id,
        ShellCommand(command='pwd; echo "$GREETING"', cwd="/tmp", env={"GREETING": "hi there"}),
        wait_ms=20000,
        cap=65536,
    )
    assert outcome.summary is not None
    assert outcome.summary["stdout"].head == b"/tmp\nhi there\n"
    assert outcome.info.exit_code == 0


async def test_a_command_past_its_timeout_is_reported_running_then_killed(backend: SandboxBackend) -> None:
    session_id = await new_session(backend)
    outcome = await backend.processes.run_process(
        session_id, ShellCommand(command="echo started; sleep 30"), wait_ms=500, cap=65536, timeout_ms=500
    )
    assert outcome.summary is None
    assert outcome.info.running
    proc_id = outcome.info.proc_id
    await backend.processes.kill_process(session_id, proc_id, signal.SIGTERM, 200, "timeout")
    info = await backend.processes.wait_process(session_id, proc_id, 5000)
    assert not info.running
    summary = await backend.processes.process_output_summary(session_id, proc_id, 65536)
    assert summary.streams["stdout"].head.startswith(b"started")
    await backend.processes.forget_process(session_id, proc_id)


async def test_large_output_is_capped_head_and_tail(backend: SandboxBackend) -> None:
    session_id = await new_session(backend)
    outcome = await backend.processes.run_process(
        session_id, ShellCommand(command="seq 1 100000"), wait_ms=20000, cap=4096, timeout_ms=20000
    )
    assert outcome.summary is not None
    stdout = outcome.summary["stdout"]
    assert stdout.total == len("".join(f"{n}\n" for n in range(1, 100001)))
    assert stdout.head.startswith(b"1\n2\n3\n")
    assert stdout.tail.endswith(b"99999\n100000\n")
    assert len(stdout.head) + len(stdout.tail) <= 4096


# Files ------------------------------------------------------------------------------------------


async def test_write_then_read_round_trips_large_text(backend: SandboxBackend) -> None:
    session_id = await new_session(backend)
    # Multi-byte characters across ~300 KB: pieces on a size-limited channel must not split one.
    text = "".join(f"line {n}: h\u00e9llo w\u00f6rld \u4f60\u597d \U0001f600\n" for n in range(8000))
    data = text.encode()
    written = await backend.files.write_file(session_id, "/home/user/big.txt", data, "overwrite")
    assert written.bytes_written == len(data)
    assert written.size == len(data)
    chunk = await backend.files.read_file(session_id, "/home/user/big.txt", ReadSpan(), 1 << 20)
    assert chunk.data == data
    assert chunk.size == len(data)
    assert chunk.next_offset == len(data)
    assert chunk.head == data[:16]


async def test_append_and_ranged_reads(backend: SandboxBackend) -> None:
    session_id = await new_session(backend)
    await backend.files.write_file(session_id, "/tmp/a.txt", b"one\ntwo\n", "overwrite")
    await backend.files.write_file(session_id, "/tmp/a.txt", b"three\nfour\n", "append")
    chunk = await backend.files.read_file(session_id, "/tmp/a.txt", ReadSpan(offset=4, length=9), 1 << 20)
    assert chunk.data == b"two\nthree"
    assert (chunk.offset, chunk.next_offset, chunk.size) == (4, 13, 19)
    assert chunk.head == b"one\ntwo\nthree\nfo"
    lines = await backend.files.read_file(session_id, "/tmp/a.txt", ReadSpan(start_line=2, line_count=2), 1 << 20)
    assert lines.data == b"two\nthree\n"
    assert lines.next_line == 4


async def test_file_info_listing_and_search(backend: SandboxBackend) -> None:
    session_id = await new_session(backend)
    made = await backend.files.create_directory(session_id, "/home/user/proj/src")
    assert made.created
    assert not (await backend.files.create_directory(session_id, "/home/user/proj/src")).created
    await backend.files.write_file(session_id, "/home/user/proj/src/main.py", b"print(1)\n", "overwrite")
    await backend.files.write_file(session_id, "/home/user/proj/notes.md", b"# notes\n", "overwrite")
    info = await backend.files.file_info(session_id, "/home/user/proj/src/main.py")
    assert (info.type, info.size, info.name) == ("file", 9, "main.py")
    assert info.permissions.startswith("-rw")
    assert (await backend.files.file_info(session_id, "/home/user/proj")).type == "directory"
    listing = await backend.files.list_directory(session_id, "/home/user/proj", 100)
    assert {(e.name, e.type) for e in listing.entries} == {("src", "directory"), ("notes.md", "file")}
    found = await backend.files.search_files(session_id, "/home/user/proj", "*.py", [], 100)
    assert [m.rsplit("/", 1)[-1] for m in found.matches] == ["main.py"]
    none = await backend.files.search_files(session_id, "/home/user/proj", "*.rs", [], 100)
    assert none.matches == []


async def test_edit_and_move(backend: SandboxBackend) -> None:
    session_id = await new_session(backend)
    await backend.files.write_file(session_id, "/tmp/c.txt", b"alpha\nbeta\n", "overwrite")
    dry = await backend.files.edit_file(session_id, "/tmp/c.txt", [{"old_text": "beta", "new_text": "gamma"}], True)
    assert not dry.applied
    assert "+gamma" in dry.diff
    await backend.files.edit_file(session_id, "/tmp/c.txt", [{"old_text": "beta", "new_text": "gamma"}], False)
    await backend.files.move_file(session_id, "/tmp/c.txt", "/tmp/d.txt")
    chunk = await backend.files.read_file(session_id, "/tmp/d.txt", ReadSpan(), 4096)
    assert chunk.data == b"alpha\ngamma\n"


async def test_file_errors_are_file_operation_errors(backend: SandboxBackend) -> None:
    session_id = await new_session(backend)
    with pytest.raises(FileOperationError) as missing:
        await backend.files.read_file(session_id, "/tmp/missing.txt", ReadSpan(), 4096)
    assert missing.value.kind == "not_found"
    await backend.files.write_file(session_id, "/tmp/e.txt", b"x", "overwrite")
    await backend.files.write_file(session_id, "/tmp/f.txt", b"y", "overwrite")
    with pytest.raises(FileOperationError):
        await backend.files.move_file(session_id, "/tmp/e.txt", "/tmp/f.txt")


async def test_tools_on_a_deleted_session_are_not_found(backend: SandboxBackend) -> None:
    session_id = await new_session(backend)
    await backend.delete_session(session_id)
    with pytest.raises(SessionNotFoundError):
        await backend.processes.run_process(session_id, ShellCommand(command="true"), wait_ms=5000, cap=1024)
    with pytest.raises(SessionNotFoundError):
        await backend.files.file_info(session_id, "/tmp")


# Network ----------------------------------------------------------------------------------------


async def test_an_egress_policy_is_kept_and_changed_while_the_session_runs(backend: SandboxBackend) -> None:
    requires(backend, "egress_rules")
    assert backend.network is not None
    policy = NetworkPolicy(mode="allow", allow=("pypi.org", "203.0.113.0/24"))
    session_id = (await backend.create_session(image_id="code_latest", labels={}, owner="c", network=policy)).session_id
    assert (await backend.get_session(session_id)).network == policy
    await backend.network.set_egress(session_id, NetworkPolicy(mode="off"))
    assert (await backend.get_session(session_id)).network == NetworkPolicy(mode="off")
    with pytest.raises(SessionNotFoundError):
        await backend.network.set_egress("session-" + "0" * 24, policy)


async def test_without_egress_rules_an_allow_list_is_refused_clearly(backend: SandboxBackend) -> None:
    if backend.capabilities.egress_rules:
        pytest.skip(f"the {backend.name} backend has egress rules")
    assert "egress_rules" in backend.capabilities.unsupported
    with pytest.raises(BackendUnavailableError):
        await backend.create_session(
            image_id="code_latest", labels={}, owner="c", network=NetworkPolicy(mode="allow", allow=("a.test",))
        )


LINK_PORT = 30123  # within every backend's range (the cloud links 30100-30199 only)


async def test_a_port_link_reaches_a_server_in_the_session(backend: SandboxBackend) -> None:
    requires(backend, "port_links")
    assert backend.network is not None
    session_id = await new_session(backend)
    await backend.files.write_file(session_id, "/home/user/site/index.html", b"linked", "overwrite")
    link = await backend.network.open_link(session_id, LINK_PORT, "http")
    assert (link.port, link.protocol) == (LINK_PORT, "http")
    command = ShellCommand(command=serve_once(LINK_PORT, "/home/user/site"))
    outcomes: list[RunOutcome] = []

    async def serve() -> None:
        outcomes.append(await backend.processes.run_process(session_id, command, wait_ms=30000, cap=65536))

    async with anyio.create_task_group() as tg:
        tg.start_soon(serve)
        response = await get_when_served(link.url + "/index.html")
    assert (response.status_code, response.text) == (200, "linked")
    assert outcomes[0].info.exit_code == 0


async def test_network_capabilities_declared_absent_say_why(backend: SandboxBackend) -> None:
    capabilities, network = backend.capabilities, backend.network
    if network is None or (capabilities.egress_rules and capabilities.port_links):
        pytest.skip(f"the {backend.name} backend declares every network capability (or none)")
    session_id = await new_session(backend)
    if not capabilities.egress_rules:
        with pytest.raises(BackendUnavailableError) as refused:
            await network.set_egress(session_id, NetworkPolicy(mode="on"))
        assert str(refused.value) == capabilities.unsupported["egress_rules"]
    if not capabilities.port_links:
        with pytest.raises(BackendUnavailableError) as refused:
            await network.open_link(session_id, LINK_PORT, "http")
        assert str(refused.value) == capabilities.unsupported["port_links"]
