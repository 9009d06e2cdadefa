"""Service and registry rules with an injected clock: leases, quotas, races with a closing conversation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup

from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.records import SessionRecord
from agentbay_mcp.errors import (
    AccessDeniedError,
    DesktopUnavailableError,
    FileOperationError,
    NotSupportedError,
    QuotaExceededError,
    SessionNotFoundError,
)
from agentbay_mcp.services.commands.service import CommandService
from agentbay_mcp.services.desktop.service import DesktopService
from agentbay_mcp.services.files.service import FileService, ImageRead
from agentbay_mcp.services.sessions.paging import PageTokens
from agentbay_mcp.services.sessions.registry import Registry
from agentbay_mcp.services.sessions.service import SessionService
from agentbay_mcp.testing.memory_backend import MemoryBackend
from agentbay_mcp.testing.servers import session_dirs

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def service(state_dir: Path, task_group: TaskGroup, clock: FakeClock) -> AsyncIterator[SessionService]:
    svc = SessionService(LocalBackend(state_dir), Registry(clock), lease_seconds=60, max_sessions_per_conversation=3)
    await svc.start(task_group)
    try:
        yield svc
    finally:
        await svc.close()


async def test_idle_lease_expires_unused_sessions_only(
    service: SessionService, clock: FakeClock, state_dir: Path
) -> None:
    idle = await service.create_session("c1", "code_latest", {})
    busy = await service.create_session("c1", "code_latest", {})
    clock.now += 45
    await service.get_session("c1", busy.session_id)  # renews busy's lease
    clock.now += 30  # idle: 75 s unused; busy: 30 s
    assert await service.expire_idle() == [idle.session_id]
    assert session_dirs(state_dir) == [busy.session_id]
    with pytest.raises(SessionNotFoundError):
        await service.get_session("c1", idle.session_id)


async def test_every_session_tool_renews_the_lease(service: SessionService, clock: FakeClock) -> None:
    session = await service.create_session("c1", "code_latest", {})
    for use in (
        lambda: service.get_session("c1", session.session_id),
        lambda: service.get_session_labels("c1", session.session_id),
        lambda: service.set_session_labels("c1", session.session_id, {"a": "b"}),
    ):
        clock.now += 50
        await use()
        assert await service.expire_idle() == []


async def test_idle_expires_at_reflects_the_lease(service: SessionService, clock: FakeClock) -> None:
    info = await service.create_session("c1", "code_latest", {})
    clock.now += 20
    listed = (await service.list_sessions("c1")).sessions[0]  # listing does not renew the lease
    assert 19 <= (info.idle_expires_at - listed.idle_expires_at).total_seconds() <= 21
    renewed = await service.get_session("c1", info.session_id)
    assert 19 <= (renewed.idle_expires_at - listed.idle_expires_at).total_seconds() <= 21


async def test_conversations_cannot_see_each_other(service: SessionService) -> None:
    mine = await service.create_session("c1", "code_latest", {"x": "1"})
    with pytest.raises(SessionNotFoundError) as foreign:
        await service.get_session("c2", mine.session_id)
    with pytest.raises(SessionNotFoundError) as unknown:
        await service.get_session("c2", "session-" + "0" * 24)
    assert str(foreign.value).replace(mine.session_id, "ID") == str(unknown.value).replace("session-" + "0" * 24, "ID")
    with pytest.raises(SessionNotFoundError):
        await service.delete_session("c2", mine.session_id)
    with pytest.raises(SessionNotFoundError):
        await service.set_session_labels("c2", mine.session_id, {"y": "2"})
    assert (await service.list_sessions("c2")).total_count == 0
    assert (await service.get_session_labels("c1", mine.session_id)).labels == {"x": "1"}


async def test_quota_counts_creates_in_flight(state_dir: Path, task_group: TaskGroup) -> None:
    """Concurrent creates cannot overshoot the quota."""
    svc = SessionService(LocalBackend(state_dir), Registry(), lease_seconds=60, max_sessions_per_conversation=3)
    await svc.start(task_group)
    outcomes: list[str] = []

    async def create() -> None:
        try:
            await svc.create_session("c1", "code_latest", {})
            outcomes.append("ok")
        except QuotaExceededError:
            outcomes.append("quota")

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(create)
    assert sorted(outcomes) == ["ok"] * 3 + ["quota"] * 7
    assert len(session_dirs(state_dir)) == 3
    await svc.close()
    assert session_dirs(state_dir) == []


class SlowBackend(LocalBackend):
    """A local backend whose create waits until released (to race it against a disconnect)."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.entered = anyio.Event()
        self.proceed = anyio.Event()

    async def create_session(
        self, *, image_id: str, labels: dict[str, str], owner: str, network: bool = False, **mounts: Any
    ) -> SessionRecord:
        self.entered.set()
        await self.proceed.wait()
        return await super().create_session(image_id=image_id, labels=labels, owner=owner, network=network, **mounts)


async def test_a_create_finishing_after_disconnect_is_undone(state_dir: Path, task_group: TaskGroup) -> None:
    backend = SlowBackend(state_dir)
    svc = SessionService(backend, Registry(), lease_seconds=60, max_sessions_per_conversation=3)
    await svc.start(task_group)
    errors: list[Exception] = []

    async def create() -> None:
        try:
            await svc.create_session("c1", "code_latest", {})
        except SessionNotFoundError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(create)
        await backend.entered.wait()
        await svc.release_conversation("c1")
        backend.proceed.set()
    assert len(errors) == 1
    assert session_dirs(state_dir) == []
    await svc.close()


async def test_release_conversation_deletes_only_its_sessions(service: SessionService, state_dir: Path) -> None:
    a = await service.create_session("c1", "code_latest", {})
    b = await service.create_session("c2", "code_latest", {})
    assert await service.release_conversation("c1") == [a.session_id]
    assert session_dirs(state_dir) == [b.session_id]
    assert await service.release_conversation("c1") == []


async def test_close_releases_everything(state_dir: Path, task_group: TaskGroup) -> None:
    svc = SessionService(LocalBackend(state_dir), Registry(), lease_seconds=60, max_sessions_per_conversation=60)
    await svc.start(task_group)
    for i in range(50):
        await svc.create_session(f"c{i % 5}", "code_latest", {})
    assert len(session_dirs(state_dir)) == 50
    await svc.close()
    assert session_dirs(state_dir) == []
    assert list((state_dir / "servers").iterdir()) == []


def test_page_tokens_detect_tampering() -> None:
    tokens = PageTokens(b"k" * 32)
    token = tokens.issue("sessions", {"a": "b"}, ("2026", "session-1"))
    assert tokens.check("sessions", {"a": "b"}, token) == ("2026", "session-1")
    body, mac = token.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    for bad in (f"{flipped}.{mac}", f"{body}.{mac[::-1]}", token + "x", "", "."):
        with pytest.raises(Exception, match="next_token is not valid"):
            tokens.check("sessions", {"a": "b"}, bad)
    with pytest.raises(Exception, match="next_token is not valid"):
        PageTokens(b"other key" * 4).check("sessions", {"a": "b"}, token)


async def test_principal_quotas_span_conversations_and_spare_anonymous(state_dir: Path, task_group: TaskGroup) -> None:
    svc = SessionService(
        LocalBackend(state_dir),
        Registry(),
        lease_seconds=60,
        max_sessions_per_conversation=10,
        max_sessions_per_principal=2,
        max_commands_per_principal=1,
    )
    await svc.start(task_group)
    try:
        svc.enter("http:a1", "alice")
        svc.enter("principal:alice", "alice")
        svc.enter("http:b1", "bob")
        await svc.create_session("http:a1", "code_latest", {})
        await svc.create_session("principal:alice", "code_latest", {})
        with pytest.raises(QuotaExceededError, match="Principal 'alice' already has 2 live session"):
            await svc.create_session("http:a1", "code_latest", {})
        await svc.create_session("http:b1", "code_latest", {})  # bob's quota is his own
        for _ in range(3):  # unauthenticated: only the per-conversation limit
            await svc.create_session("conn:x", "code_latest", {})

        async with svc.command_slot("http:a1"):
            with pytest.raises(QuotaExceededError, match="'alice' already has 1 commands running"):
                async with svc.command_slot("principal:alice"):
                    pass
            async with svc.command_slot("http:b1"), svc.command_slot("conn:x"), svc.command_slot("conn:x"):
                pass
        async with svc.command_slot("principal:alice"):  # the slot was given back
            pass

        with pytest.raises(AccessDeniedError):
            svc.enter("http:a1", "bob")  # a conversation never changes hands
    finally:
        await svc.close()


# The services over the in-memory backend (agentbay_mcp.testing): no sandbox, milliseconds a test ----


@pytest.fixture
async def memory(task_group: TaskGroup) -> AsyncIterator[tuple[MemoryBackend, SessionService]]:
    backend = MemoryBackend()
    svc = SessionService(backend, Registry(), lease_seconds=60, max_sessions_per_conversation=3)
    await svc.start(task_group)
    try:
        yield backend, svc
    finally:
        await svc.close()


async def test_commands_cap_output_and_time_out_on_the_memory_backend(
    memory: tuple[MemoryBackend, SessionService],
) -> None:
    backend, svc = memory
    commands = CommandService(
        svc, backend.processes, backend.process_handles, backend.capabilities, output_cap_bytes=1000
    )
    session = await svc.create_session("c1", "code_latest", {})
    done = await commands.execute_command("c1", session.session_id, "echo hi; echo oops >&2; exit 4")
    assert (done.exit_code, done.stdout, done.stderr, done.timed_out) == (4, "hi\n", "oops\n", False)
    assert done.message.startswith("Exited with code 4 after ")
    long = await commands.execute_command("c1", session.session_id, "seq 1 5000")
    assert long.stdout_truncated
    assert long.stdout.startswith("1\n2\n")
    assert long.stdout.endswith("4999\n5000\n")
    assert "the memory backend keeps no full output" in long.stdout
    late = await commands.execute_command("c1", session.session_id, "echo started; sleep 30", timeout_ms=300)
    assert late.timed_out
    assert late.stdout == "started\n"
    assert late.message.startswith("Timed out after 300 ms")
    assert (await commands.list_processes("c1", session.session_id)).processes == []  # nothing left behind


async def test_background_processes_on_the_memory_backend(memory: tuple[MemoryBackend, SessionService]) -> None:
    backend, svc = memory
    commands = CommandService(svc, backend.processes, backend.process_handles, backend.capabilities)
    session = await svc.create_session("c1", "code_latest", {})
    started = await commands.start_process("c1", session.session_id, "cat")
    written = await commands.write_process_input("c1", session.session_id, started.process_id, "line\n", eof=True)
    assert written.bytes_written == 5
    status = await commands.wait_process("c1", session.session_id, started.process_id, 5000)
    assert (status.running, status.exit_code) == (False, 0)
    output = await commands.read_process_output("c1", session.session_id, started.process_id)
    assert (output.stdout, output.more) == ("line\n", False)
    with pytest.raises(SessionNotFoundError):  # ownership still applies
        await commands.wait_process("c2", session.session_id, started.process_id)


async def test_a_backend_without_process_handles_is_refused_with_its_reason(
    memory: tuple[MemoryBackend, SessionService],
) -> None:
    backend, svc = memory
    declared = backend.capabilities.model_copy(
        update={"process_handles": False, "unsupported": {"process_handles": "No handles here: use execute_command."}}
    )
    commands = CommandService(svc, backend.processes, None, declared)
    session = await svc.create_session("c1", "code_latest", {})
    with pytest.raises(NotSupportedError, match=r"^No handles here: use execute_command\.$"):
        await commands.start_process("c1", session.session_id, "sleep 1")
    with pytest.raises(SessionNotFoundError):  # the session is checked first, as before
        await commands.start_process("c2", session.session_id, "sleep 1")
    with pytest.raises(NotSupportedError, match="No handles here"):
        await commands.write_process_input("c1", session.session_id, "proc-1", "x")
    assert (await commands.execute_command("c1", session.session_id, "echo still")).stdout == "still\n"


async def test_file_rules_on_the_memory_backend(memory: tuple[MemoryBackend, SessionService]) -> None:
    backend, svc = memory
    files = FileService(svc, backend.files, read_cap_bytes=2)
    session = await svc.create_session("c1", "code_latest", {})
    written = await files.write_file("c1", session.session_id, "notes/a.txt", "h\u00e9llo")  # relative: in home
    assert (written.path, written.bytes_written) == ("/home/user/notes/a.txt", 6)
    first = await files.read_file("c1", session.session_id, "notes/a.txt")
    assert not isinstance(first, ImageRead)
    assert (first.content, first.next_offset) == ("h", 1)  # the cap never splits a character
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 8
    await backend.files.write_file(session.session_id, "/tmp/p.png", png, "overwrite")
    image = await files.read_file("c1", session.session_id, "/tmp/p.png")
    assert isinstance(image, ImageRead)
    assert (image.mime_type, image.data) == ("image/png", png)
    info = await files.get_file_info("c1", session.session_id, "notes")
    assert (type(info).__name__, info.type) == ("FileInfo", "directory")
    with pytest.raises(FileOperationError) as read_only:
        await files.write_file("c1", session.session_id, "/etc/passwd", "x")
    assert read_only.value.kind == "read_only"


async def test_a_named_length_lifts_the_read_page_to_the_maximum(memory: tuple[MemoryBackend, SessionService]) -> None:
    backend, svc = memory
    files = FileService(svc, backend.files, read_cap_bytes=2, read_max_bytes=5)
    session = await svc.create_session("c1", "code_latest", {})
    await files.write_file("c1", session.session_id, "a.txt", "abcdefgh\nij\n")
    pages = [
        await files.read_file("c1", session.session_id, "a.txt"),  # no length: the page a model can afford
        await files.read_file("c1", session.session_id, "a.txt", length=100),  # more asked: up to the maximum
        await files.read_file("c1", session.session_id, "a.txt", length=3),
        await files.read_file("c1", session.session_id, "a.txt", start_line=1, line_count=5),  # lines: the page
    ]
    assert [(p.content, p.next_offset) for p in pages if not isinstance(p, ImageRead)] == [
        ("ab", 2),
        ("abcde", 5),
        ("abc", 3),
        ("ab", 2),
    ]


async def test_the_desktop_service_refuses_a_backend_without_one(memory: tuple[MemoryBackend, SessionService]) -> None:
    backend, svc = memory
    desktop = DesktopService(svc, backend.desktop, backend.processes, backend.capabilities)
    session = await svc.create_session("c1", "linux_latest", {})
    with pytest.raises(DesktopUnavailableError, match="The memory backend has no desktop"):
        await desktop.list_windows("c1", session.session_id)
    with pytest.raises(SessionNotFoundError):
        await desktop.list_windows("c2", session.session_id)


async def test_keep_alives_reach_the_backend_at_most_every_ten_seconds(task_group: TaskGroup, clock: FakeClock) -> None:
    backend = MemoryBackend()
    svc = SessionService(backend, Registry(clock), lease_seconds=60, max_sessions_per_conversation=3)
    await svc.start(task_group)
    session = await svc.create_session("c1", "code_latest", {})
    await svc.get_session("c1", session.session_id)
    assert backend.kept_alive == []  # just created: the backend knows it is in use
    clock.now += 11
    await svc.get_session("c1", session.session_id)
    await svc.get_session("c1", session.session_id)
    assert backend.kept_alive == [session.session_id]
    await svc.close()
