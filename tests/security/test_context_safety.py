"""Contexts against hostile sessions: syncs raced with symlink swaps, symlinks kept as symlinks, bad names
and paths. A sync copies a tree the session controls into the server's store: it must never read a
host file through a link the session made, and never write outside the store."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskGroup

from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.records_contexts import ContextMount
from agentbay_mcp.errors import AgentBayMCPError, InvalidArgumentError, QuotaExceededError
from agentbay_mcp.testing.contexts import mount_of, new_session, sh
from tests.security.file_attacks import Canaries

pytestmark = pytest.mark.anyio

OWNER = "mallory"


def store_files(backend: LocalBackend) -> dict[str, bytes | str]:
    """Every entry of every context version in the store: a file's bytes, a symlink's target as 'link:...'."""
    found: dict[str, bytes | str] = {}
    root = backend.contexts.store.root
    for directory, dirs, files in os.walk(root, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(directory) / name
            relative = str(path.relative_to(root))
            if "/content/" not in f"{relative}/" or not relative.split("/content", 1)[1]:
                continue  # the store's own entries (meta, version.json, `current`)
            mode = os.lstat(path).st_mode
            if stat.S_ISLNK(mode):
                found[relative] = "link:" + os.readlink(path)
            elif stat.S_ISREG(mode):
                found[relative] = path.read_bytes()
    return found


def snapshot(directory: Path) -> list[tuple[str, int, int]]:
    """Names, sizes and mtimes below a host directory."""
    return sorted(
        (str(p.relative_to(directory)), p.lstat().st_size, p.lstat().st_mtime_ns) for p in directory.rglob("*")
    )


RACE = """
cd data && mkdir -p real && echo inside > real/file && ln -sfn {canary} link && ln -sfn {secret} flink
echo plain > f
( while :; do
    mv -T real sub; mv -T sub real; mv -T link sub; mv -T sub link
    mv -T f g; mv -T flink f; mv -T f flink; mv -T g f
  done ) >/dev/null 2>&1 &
echo $! > /tmp/racer; echo started
"""


async def test_syncs_raced_by_symlink_swaps_never_copy_host_files(
    state_dir: Path, task_group: TaskGroup, canaries: Canaries
) -> None:
    backend = LocalBackend(state_dir)
    await backend.start(task_group)
    before = snapshot(canaries.directory)
    mount = await mount_of(backend, OWNER, "raced", "/home/user/data")
    session = await new_session(backend, mount)
    command = RACE.format(canary=canaries.directory, secret=canaries.secret_file)
    assert (await sh(backend, session.session_id, command)).strip() == "started"
    synced = 0
    with anyio.move_on_after(8):
        for _ in range(40):
            try:
                await backend.contexts.sync_context(session.session_id)
                synced += 1
            except AgentBayMCPError:  # a sync may fail on a raced entry; it must never leak
                pass
            for name, content in store_files(backend).items():
                for secret in canaries.secrets():
                    assert secret.encode() not in (content if isinstance(content, bytes) else content.encode()), name
                assert canaries.secret_file.name not in name, f"the host canary dir was walked: {name}"
    assert synced > 0
    await sh(backend, session.session_id, "kill $(cat /tmp/racer)")
    await backend.delete_session(session.session_id)
    assert snapshot(canaries.directory) == before, "the host canary changed"
    assert [p.read_text() for p in canaries.files()] == canaries.secrets()
    # The links the session made are in the context as links, never followed.
    links = {k.rsplit("/", 1)[-1]: v for k, v in store_files(backend).items() if isinstance(v, str)}
    assert set(links.values()) <= {f"link:{canaries.directory}", f"link:{canaries.secret_file}"}
    await backend.close()


async def test_a_symlink_in_a_context_stays_a_symlink(
    state_dir: Path, task_group: TaskGroup, canaries: Canaries
) -> None:
    backend = LocalBackend(state_dir)
    await backend.start(task_group)
    mount = await mount_of(backend, OWNER, "links", "/home/user/data")
    first = await new_session(backend, mount)
    await sh(
        backend,
        first.session_id,
        f"ln -s {canaries.secret_file} data/abs && ln -s ../../.. data/up && ln -s {canaries.directory} data/dir",
    )
    await backend.delete_session(first.session_id)
    stored = {k.rsplit("/", 1)[-1]: v for k, v in store_files(backend).items()}
    assert stored["abs"] == f"link:{canaries.secret_file}"
    assert stored["up"] == "link:../../.."
    assert stored["dir"] == f"link:{canaries.directory}"
    second = await new_session(backend, mount)
    out = await sh(backend, second.session_id, "for l in abs up dir; do test -L data/$l && readlink data/$l; done")
    assert out.split() == [str(canaries.secret_file), "../../..", str(canaries.directory)]
    # The copy-in did not follow them either: the host canary is nowhere in the session's files.
    session_dir = state_dir / "sessions" / second.session_id
    for directory, _dirs, files in os.walk(session_dir / "home", followlinks=False):
        for name in files:
            path = Path(directory) / name
            if not path.is_symlink():
                assert canaries.secret.encode() not in path.read_bytes(), path
    await backend.delete_session(second.session_id)
    await backend.close()


async def test_bad_names_and_paths_are_refused_by_the_backend(state_dir: Path, task_group: TaskGroup) -> None:
    backend = LocalBackend(state_dir)
    await backend.start(task_group)
    for name in ("../x", "..", "a/b", ".hidden", "", "x" * 65, "x\n"):
        with pytest.raises(InvalidArgumentError):
            await backend.contexts.get_context(OWNER, name, create=True)
        with pytest.raises(InvalidArgumentError):
            await backend.contexts.delete_context(OWNER, name)
    assert not (state_dir / "x").exists()
    assert not (state_dir / "contexts" / "x").exists()
    good = await mount_of(backend, OWNER, "good", "/home/user/good")
    for path in (
        "/home/user/../../etc",
        "/etc",
        "/home/user/a/../../../x",
        "/home/user//x",
        "/tmp/./x",
        "/tmpx",
        "/tmp/a\0b",
    ):
        mount = ContextMount(context_id=good.context_id, name="good", owner=OWNER, path=path)
        with pytest.raises(InvalidArgumentError):
            await new_session(backend, mount)
    bad_name = ContextMount(context_id=good.context_id, name="../good", owner=OWNER, path="/home/user/x")
    with pytest.raises(InvalidArgumentError):
        await backend.create_session(image_id="code_latest", labels={}, owner="c", contexts=[bad_name])
    assert await backend.list_all() == []
    await backend.close()


async def test_a_tree_deeper_than_the_bound_is_not_synced(state_dir: Path, task_group: TaskGroup) -> None:
    backend = LocalBackend(state_dir)
    await backend.start(task_group)
    mount = await mount_of(backend, OWNER, "deep", "/home/user/data")
    session = await new_session(backend, mount)
    await sh(backend, session.session_id, "echo kept > data/f; echo ok")
    await backend.contexts.sync_context(session.session_id)
    await sh(backend, session.session_id, "cd data && for i in $(seq 200); do mkdir d && cd d; done; echo ok")
    with pytest.raises(QuotaExceededError, match="deeper than 128"):
        await backend.contexts.sync_context(session.session_id)
    await backend.delete_session(session.session_id)
    context = await backend.contexts.get_context(OWNER, "deep", create=False)
    assert context.file_count == 1
    assert context.notice is not None
    assert "deeper" in context.notice
    await backend.close()
