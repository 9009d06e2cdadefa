"""Context rules of the service, on the in-memory backend: ownership by principal, quotas, paths, syncing.

The backends' own behaviour (copying in and back, endings) is the contract suite's
(tests/contract/test_context_contract.py); this is what the service adds on top of any backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from anyio.abc import TaskGroup

from agentbay_mcp.backends.records import Capabilities
from agentbay_mcp.errors import (
    BackendUnavailableError,
    ContextNotFoundError,
    InvalidArgumentError,
    QuotaExceededError,
    SessionNotFoundError,
)
from agentbay_mcp.services.contexts.service import ContextService
from agentbay_mcp.services.sessions.registry import Registry
from agentbay_mcp.services.sessions.service import SessionService
from agentbay_mcp.testing.memory_backend import MemoryBackend

pytestmark = pytest.mark.anyio


@pytest.fixture
async def services(task_group: TaskGroup) -> AsyncIterator[tuple[SessionService, ContextService]]:
    backend = MemoryBackend()
    sessions = SessionService(backend, Registry(), lease_seconds=60, max_sessions_per_conversation=10)
    await sessions.start(task_group)
    for conversation, principal in (("a1", "alice"), ("a2", "alice"), ("b1", "bob")):
        sessions.enter(conversation, principal)
    contexts = ContextService(sessions, backend.contexts, backend.capabilities, max_contexts_per_principal=3)
    try:
        yield sessions, contexts
    finally:
        await sessions.close()


async def session_with(
    sessions: SessionService, contexts: ContextService, conversation: str, *mounts: dict[str, object]
) -> str:
    resolved = await contexts.mounts(conversation, list(mounts))
    return (await sessions.create_session(conversation, "code_latest", {}, contexts=resolved)).session_id


async def test_contexts_belong_to_the_principal_not_the_conversation(
    services: tuple[SessionService, ContextService],
) -> None:
    _sessions, contexts = services
    made = await contexts.create_context("a1", "cache")
    assert made.created
    assert not (await contexts.create_context("a2", "cache")).created, "alice's other conversation finds it"
    assert [c.name for c in (await contexts.list_contexts("a2")).contexts] == ["cache"]
    # Bob sees nothing of alice's: not listed, and answered like a name that does not exist.
    assert (await contexts.list_contexts("b1")).contexts == []
    for attempt in (contexts.get_context("b1", "cache"), contexts.delete_context("b1", "cache")):
        with pytest.raises(ContextNotFoundError):
            await attempt
    # Bob's own "cache" is another context altogether.
    assert (await contexts.create_context("b1", "cache")).created


async def test_data_written_in_one_conversation_is_seen_in_another(
    services: tuple[SessionService, ContextService],
) -> None:
    sessions, contexts = services
    first = await session_with(sessions, contexts, "a1", {"name": "work", "path": "/home/user/work"})
    backend = sessions.backend
    assert isinstance(backend, MemoryBackend)
    await backend.files.write_file(first, "/home/user/work/notes.txt", b"from a1", "overwrite")
    gone = await sessions.delete_session("a1", first)
    assert gone.contexts == ["work"]
    second = await session_with(sessions, contexts, "a2", {"name": "work", "path": "/tmp/w"})
    assert backend.files.tree(second).nodes["/tmp/w/notes.txt"].data == b"from a1"
    info = await sessions.get_session("a2", second)
    assert info.contexts == ["work:/tmp/w"]


async def test_the_count_quota_holds_even_for_parallel_creates(services: tuple[SessionService, ContextService]) -> None:
    _, contexts = services
    outcomes: list[str] = []

    async def create(name: str) -> None:
        try:
            await contexts.create_context("a1", name)
            outcomes.append("made")
        except QuotaExceededError:
            outcomes.append("refused")

    async with anyio.create_task_group() as tg:
        for index in range(6):
            tg.start_soon(create, f"c{index}")
    assert sorted(outcomes) == ["made"] * 3 + ["refused"] * 3
    # Finding an existing one is not creating: allowed at the limit; a mount of a new one is not.
    await contexts.create_context("a2", "c0")
    with pytest.raises(QuotaExceededError):
        await contexts.mounts("a1", [{"name": "fourth", "path": "/tmp/x"}])
    assert (await contexts.create_context("b1", "other")).created, "bob's quota is his own"


@pytest.mark.parametrize(
    ("mounts", "message"),
    [
        ([{"name": "../up", "path": "/tmp/x"}], "not allowed"),
        ([{"name": "x\n", "path": "/tmp/x"}], "not allowed"),
        ([{"name": "x", "path": "relative"}], "absolute"),
        ([{"name": "x", "path": "/home/user/../../etc"}], "normalised"),
        ([{"name": "x", "path": "/etc/cron.d"}], "below one of them"),
        ([{"name": "x", "path": "/tmpfoo"}], "below one of them"),
        ([{"name": "x", "path": "/tmp/a"}, {"name": "y", "path": "/tmp/a/b"}], "overlap"),
        ([{"name": "x", "path": "/tmp/a"}, {"name": "x", "path": "/tmp/b"}], "twice"),
        ([{"name": f"n{i}", "path": f"/tmp/{i}"} for i in range(9)], "at most 8"),
        # A path becomes a host path (NUL cannot) and the AgentBay backend's mounts label (which holds only
        # short printable paths: a mount it cannot read back is never written back).
        ([{"name": "x", "path": "/tmp/a\x00b"}], "printable"),
        ([{"name": "x", "path": "/tmp/a\nb"}], "printable"),
        ([{"name": "x", "path": "/tmp/" + "a" * 2000}], "at most 1024"),
    ],
)
async def test_bad_mounts_are_refused_before_anything_is_made(
    services: tuple[SessionService, ContextService], mounts: list[dict[str, object]], message: str
) -> None:
    sessions, contexts = services
    with pytest.raises(InvalidArgumentError, match=message):
        await contexts.mounts("a1", mounts)
    assert (await contexts.list_contexts("a1")).contexts == []
    assert sessions.owned_sessions("a1") == []


async def test_a_refused_name_or_path_is_echoed_short(services: tuple[SessionService, ContextService]) -> None:
    _, contexts = services
    with pytest.raises(InvalidArgumentError) as refused:
        await contexts.create_context("a1", "/" * 100_000)
    assert len(str(refused.value)) < 500
    with pytest.raises(InvalidArgumentError) as refused:
        await contexts.mounts("a1", [{"name": "x", "path": "/etc/" + "a" * 100_000}])
    assert len(str(refused.value)) < 500


async def test_sync_context_checks_the_session_and_the_name(services: tuple[SessionService, ContextService]) -> None:
    sessions, contexts = services
    plain = (await sessions.create_session("a1", "code_latest", {})).session_id
    with pytest.raises(InvalidArgumentError, match="shows no context"):
        await contexts.sync_context("a1", plain, None)
    mounted = await session_with(sessions, contexts, "a1", {"name": "cache", "path": "/home/user/.cache"})
    with pytest.raises(InvalidArgumentError, match="it shows: cache"):
        await contexts.sync_context("a1", mounted, "other")
    with pytest.raises(SessionNotFoundError):  # a session of alice's other conversation is not a1's
        await contexts.sync_context("a2", mounted, None)
    synced = await contexts.sync_context("a1", mounted, "cache")
    assert [(item.name, item.path) for item in synced.synced] == [("cache", "/home/user/.cache")]


async def test_a_backend_without_contexts_says_why(task_group: TaskGroup) -> None:
    backend = MemoryBackend()
    sessions = SessionService(backend, Registry(), lease_seconds=60, max_sessions_per_conversation=10)
    without = Capabilities.model_validate(
        {**backend.capabilities.model_dump(), "contexts": False, "unsupported": {"contexts": "No contexts here."}}
    )
    contexts = ContextService(sessions, backend.contexts, without, max_contexts_per_principal=3)
    with pytest.raises(BackendUnavailableError, match="No contexts here"):
        await contexts.list_contexts("a1")
    assert await contexts.mounts("a1", []) == []
