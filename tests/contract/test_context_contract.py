"""The contexts part of the `SandboxBackend` contract, called on the backend directly.

Semantics every backend keeps (README, "Contexts"): a context's content is copied into a session at its
path when the session is created and copied back, whole, on sync_context and when the session ends (the
last sync wins, and says so when it replaced another session's); names are looked up only among the
owner's; a context in use cannot be deleted.
"""

from __future__ import annotations

import pytest

from agentbay_mcp.backends.protocols import Contexts, SandboxBackend
from agentbay_mcp.backends.records import ReadSpan
from agentbay_mcp.backends.records_contexts import ContextMount
from agentbay_mcp.errors import (
    BackendUnavailableError,
    ContextNotFoundError,
    InvalidArgumentError,
    SessionNotFoundError,
)
from tests.contract.test_backend_contract import backend, requires  # noqa: F401 - the parametrized fixture

pytestmark = pytest.mark.anyio

PATH = "/home/user/.cache/ctx"


def contexts_of(backend: SandboxBackend) -> Contexts:  # noqa: F811
    requires(backend, "contexts")
    assert isinstance(backend.contexts, Contexts)
    return backend.contexts


async def mounted(backend: SandboxBackend, owner: str, name: str, path: str = PATH) -> str:  # noqa: F811
    record = await contexts_of(backend).get_context(owner, name, create=True)
    mount = ContextMount(context_id=record.context_id, name=name, owner=owner, path=path)
    session = await backend.create_session(image_id="code_latest", labels={}, owner="c", contexts=[mount])
    assert session.contexts == (mount,)
    return session.session_id


async def read(backend: SandboxBackend, session_id: str, path: str) -> bytes:  # noqa: F811
    return (await backend.files.read_file(session_id, path, ReadSpan(), 1 << 20)).data


async def test_get_creates_only_when_asked_and_lists_by_owner(backend: SandboxBackend) -> None:  # noqa: F811
    contexts = contexts_of(backend)
    with pytest.raises(ContextNotFoundError):
        await contexts.get_context("alice", "cache", create=False)
    made = await contexts.get_context("alice", "cache", create=True)
    again = await contexts.get_context("alice", "cache", create=True)
    assert (made.context_id, made.name, made.owner) == (again.context_id, "cache", "alice")
    assert [c.name for c in await contexts.list_contexts("alice")] == ["cache"]
    # Another owner's context is answered like an unknown one, and its own namespace is empty.
    assert await contexts.list_contexts("bob") == []
    with pytest.raises(ContextNotFoundError):
        await contexts.get_context("bob", "cache", create=False)
    await contexts.delete_context("alice", "cache")
    with pytest.raises(ContextNotFoundError):
        await contexts.get_context("alice", "cache", create=False)


async def test_content_outlives_the_session_that_wrote_it(backend: SandboxBackend) -> None:  # noqa: F811
    first = await mounted(backend, "alice", "data")
    await backend.files.write_file(first, f"{PATH}/sub/kept.txt", b"kept across sessions", "overwrite")
    await backend.delete_session(first)  # written back on the way out
    record = await contexts_of(backend).get_context("alice", "data", create=False)
    assert record.in_use_by == ()
    assert record.notice is None
    assert record.file_count in (None, 1)
    second = await mounted(backend, "alice", "data", path="/tmp/elsewhere")
    assert await read(backend, second, "/tmp/elsewhere/sub/kept.txt") == b"kept across sessions"


async def test_sync_while_running_and_the_last_sync_wins(backend: SandboxBackend) -> None:  # noqa: F811
    contexts = contexts_of(backend)
    one, two = await mounted(backend, "alice", "shared"), await mounted(backend, "alice", "shared")
    assert set((await contexts.get_context("alice", "shared", create=False)).in_use_by) == {one, two}
    await backend.files.write_file(one, f"{PATH}/who.txt", b"one", "overwrite")
    (first,) = await contexts.sync_context(one)
    assert (first.name, first.path, first.warning) == ("shared", PATH, "")
    await backend.files.write_file(two, f"{PATH}/who.txt", b"two", "overwrite")
    (second,) = await contexts.sync_context(two, "shared")
    assert second.warning, "a sync that replaced another session's says so"
    third = await mounted(backend, "alice", "shared")
    assert await read(backend, third, f"{PATH}/who.txt") == b"two"


async def test_a_context_in_use_cannot_be_deleted(backend: SandboxBackend) -> None:  # noqa: F811
    session_id = await mounted(backend, "alice", "busy")
    with pytest.raises(InvalidArgumentError, match=session_id):
        await contexts_of(backend).delete_context("alice", "busy")
    await backend.delete_session(session_id)
    await contexts_of(backend).delete_context("alice", "busy")


async def test_sync_of_unknown_sessions_and_contexts(backend: SandboxBackend) -> None:  # noqa: F811
    contexts = contexts_of(backend)
    with pytest.raises(SessionNotFoundError):
        await contexts.sync_context("session-" + "0" * 24)
    with pytest.raises(ContextNotFoundError):
        await contexts.delete_context("alice", "never-made")


async def test_without_contexts_asking_for_one_is_refused_clearly(backend: SandboxBackend) -> None:  # noqa: F811
    if backend.capabilities.contexts:
        pytest.skip(f"the {backend.name} backend has contexts")
    mount = ContextMount(context_id="ctx-1", name="x", owner="alice", path=PATH)
    with pytest.raises(BackendUnavailableError):
        await backend.create_session(image_id="code_latest", labels={}, owner="c", contexts=[mount])
