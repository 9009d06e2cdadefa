"""The `SandboxBackend` contract: every backend runs this suite (add yours to `BACKENDS`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from anyio.abc import TaskGroup

from agentbay_mcp.backends.base import SandboxBackend
from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.errors import SessionNotFoundError, UnknownImageError

pytestmark = pytest.mark.anyio

BACKENDS: dict[str, Callable[[Path], SandboxBackend]] = {
    "local": LocalBackend,
}


@pytest.fixture(params=sorted(BACKENDS))
async def backend(
    request: pytest.FixtureRequest, state_dir: Path, task_group: TaskGroup
) -> AsyncIterator[SandboxBackend]:
    instance = BACKENDS[request.param](state_dir)
    await instance.start(task_group)
    try:
        yield instance
    finally:
        for record in await instance.list_all():
            await instance.delete_session(record.session_id)
        await instance.close()


async def test_satisfies_the_protocol(backend: SandboxBackend) -> None:
    assert isinstance(backend, SandboxBackend)
    assert backend.name
    assert backend.server_id


async def test_offers_the_standard_images(backend: SandboxBackend) -> None:
    images = {image.image_id: image for image in backend.images()}
    assert images["linux_latest"].desktop is True
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
    assert await backend.list_all() == []


@pytest.mark.parametrize("session_id", ["session-000000000000000000000000", "../x", "", "a/b", "\x00"])
async def test_unknown_ids_are_not_found(backend: SandboxBackend, session_id: str) -> None:
    with pytest.raises(SessionNotFoundError):
        await backend.get_session(session_id)
    await backend.delete_session(session_id)
    await backend.keep_alive(session_id)


async def test_ids_are_unique(backend: SandboxBackend) -> None:
    records = [await backend.create_session(image_id="linux_latest", labels={}, owner="c") for _ in range(20)]
    assert len({r.session_id for r in records}) == 20
    assert {r.session_id for r in await backend.list_all()} == {r.session_id for r in records}


async def test_reaping_spares_the_live_servers_sessions(backend: SandboxBackend) -> None:
    record = await backend.create_session(image_id="linux_latest", labels={}, owner="c")
    assert await backend.reap_orphans() == []
    assert await backend.get_session(record.session_id) == record


async def test_keep_alive_on_a_live_session(backend: SandboxBackend) -> None:
    record = await backend.create_session(image_id="linux_latest", labels={}, owner="c")
    await backend.keep_alive(record.session_id)
    assert (await backend.get_session(record.session_id)).session_id == record.session_id
