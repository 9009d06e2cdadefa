"""Service and registry rules with an injected clock: leases, quotas, races with a closing conversation."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskGroup

from agentbay_mcp.backends.base import SessionRecord
from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.errors import AccessDeniedError, QuotaExceededError, SessionNotFoundError
from agentbay_mcp.services.sessions.paging import PageTokens
from agentbay_mcp.services.sessions.registry import Registry
from agentbay_mcp.services.sessions.service import SessionService
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
        self, *, image_id: str, labels: dict[str, str], owner: str, network: bool = False
    ) -> SessionRecord:
        self.entered.set()
        await self.proceed.wait()
        return await super().create_session(image_id=image_id, labels=labels, owner=owner, network=network)


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
