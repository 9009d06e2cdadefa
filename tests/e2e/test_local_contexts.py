"""The local backend's contexts with real sandboxes: round trips, syncs, two sessions, quotas, endings."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskGroup

from agentbay_mcp.backends.local import LocalBackend, context_sync
from agentbay_mcp.backends.local.context_store import owner_key
from agentbay_mcp.backends.local.disk_quota import unmount_under
from agentbay_mcp.backends.local.sandbox import SandboxOptions, SessionLimits
from agentbay_mcp.errors import BackendError, ContextNotFoundError, InvalidArgumentError, QuotaExceededError
from agentbay_mcp.testing.contexts import mount_of, new_session, sh
from agentbay_mcp.testing.sessions_cli import sessions_cli

pytestmark = pytest.mark.anyio

MB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]
OWNER = "alice"


async def started(state_dir: Path, task_group: TaskGroup, **options: object) -> LocalBackend:
    backend = LocalBackend(state_dir, **options)  # type: ignore[arg-type]
    await backend.start(task_group)
    return backend


async def test_round_trip_across_sessions(state_dir: Path, task_group: TaskGroup) -> None:
    backend = await started(state_dir, task_group)
    assert backend.capabilities.contexts
    mount = await mount_of(backend, OWNER, "cache", "/home/user/.cache/work")
    first = await new_session(backend, mount, owner="conv-1")
    assert first.contexts == (mount,)
    assert (await backend.get_session(first.session_id)).contexts == (mount,)
    out = await sh(
        backend,
        first.session_id,
        "ls -A .cache/work; mkdir -p .cache/work/d && echo kept > .cache/work/d/f"
        " && ln -s d/f .cache/work/link && stat -c %U .cache/work && echo ok",
    )
    assert out.splitlines()[-1] == "ok", out
    listed = await backend.contexts.list_contexts(OWNER)
    assert [c.in_use_by for c in listed] == [(first.session_id,)]
    await backend.delete_session(first.session_id)

    context = await backend.contexts.get_context(OWNER, "cache", create=False)
    # 5 bytes of d/f, and 3 of the link's target
    assert (context.file_count, context.size_bytes, context.in_use_by, context.notice) == (2, 8, (), None)
    assert context.last_used_at is not None
    second = await new_session(backend, mount, owner="conv-2")
    out = await sh(
        backend, second.session_id, "cat .cache/work/d/f; readlink .cache/work/link; stat -c %u .cache/work/d/f; id -u"
    )
    lines = out.splitlines()
    assert lines[:2] == ["kept", "d/f"], out
    assert lines[2] == lines[3], f"the copy must belong to the session's user: {out}"
    # Another owner's context of that name is unknown; delete is refused while mounted.
    with pytest.raises(ContextNotFoundError):
        await backend.contexts.get_context("bob", "cache", create=False)
    with pytest.raises(InvalidArgumentError, match=second.session_id):
        await backend.contexts.delete_context(OWNER, "cache")
    await backend.delete_session(second.session_id)
    await backend.contexts.delete_context(OWNER, "cache")
    with pytest.raises(ContextNotFoundError):
        await backend.contexts.get_context(OWNER, "cache", create=False)
    assert await backend.contexts.list_contexts(OWNER) == []
    await backend.close()


async def test_sync_while_running_and_last_sync_wins(state_dir: Path, task_group: TaskGroup) -> None:
    backend = await started(state_dir, task_group)
    mount = await mount_of(backend, OWNER, "shared", "/tmp/shared")
    a = await new_session(backend, mount)
    b = await new_session(backend, mount)
    in_use = (await backend.contexts.get_context(OWNER, "shared", create=False)).in_use_by
    assert sorted(in_use) == sorted([a.session_id, b.session_id])
    await sh(backend, a.session_id, "echo from-a > /tmp/shared/a")
    synced = await backend.contexts.sync_context(a.session_id)
    assert [(s.name, s.path, s.file_count, s.warning) for s in synced] == [("shared", "/tmp/shared", 1, "")]
    again = await backend.contexts.sync_context(a.session_id, "shared")  # its own base moved along: no warning
    assert again[0].warning == ""
    await sh(backend, b.session_id, "echo from-b > /tmp/shared/b")
    replaced = await backend.contexts.sync_context(b.session_id)
    assert a.session_id in replaced[0].warning
    assert "last sync wins" in replaced[0].warning
    with pytest.raises(InvalidArgumentError, match="no context 'other'"):
        await backend.contexts.sync_context(b.session_id, "other")
    await backend.delete_session(b.session_id)  # b is the newest: its ending sync needs no warning
    c = await new_session(backend, mount)
    assert (await sh(backend, c.session_id, "ls /tmp/shared")).split() == ["b"]
    await backend.delete_session(a.session_id)  # a's ending replaces b's: the whole tree, last wins
    d = await new_session(backend, mount)
    assert (await sh(backend, d.session_id, "ls /tmp/shared")).split() == ["a"]
    for session in (c, d):
        await backend.delete_session(session.session_id)
    await backend.close()


async def test_owner_quota_keeps_the_context_and_says_why(state_dir: Path, task_group: TaskGroup) -> None:
    backend = await started(state_dir, task_group, context_quota_bytes=2 * MB)
    mount = await mount_of(backend, OWNER, "small", "/home/user/small")
    session = await new_session(backend, mount)
    await sh(backend, session.session_id, "head -c 1000 /dev/zero > small/ok")
    await backend.contexts.sync_context(session.session_id)
    await sh(backend, session.session_id, "head -c 3000000 /dev/zero > small/big")
    with pytest.raises(QuotaExceededError, match="quota of 2 MB"):
        await backend.contexts.sync_context(session.session_id)
    context = await backend.contexts.get_context(OWNER, "small", create=False)
    assert context.size_bytes == 1000
    assert context.notice
    assert "not saved" in context.notice
    await backend.delete_session(session.session_id)  # the ending's sync fails the same way: still deleted
    assert await backend.list_all() == []
    context = await backend.contexts.get_context(OWNER, "small", create=False)
    assert context.size_bytes == 1000
    assert context.notice
    assert session.session_id in context.notice
    fresh = await new_session(backend, mount)
    assert (await sh(backend, fresh.session_id, "ls small")).split() == ["ok"]
    await backend.delete_session(fresh.session_id)  # a sync that works clears the notice
    assert (await backend.contexts.get_context(OWNER, "small", create=False)).notice is None
    await backend.close()


async def test_a_context_larger_than_the_disk_quota_fails_create_cleanly(
    state_dir: Path, task_group: TaskGroup
) -> None:
    backend = await started(state_dir, task_group, sandbox=SandboxOptions(limits=SessionLimits(disk_bytes=32 * MB)))
    if backend.disk_quota is None:
        pytest.skip("no disk quota on this host")
    mount = await mount_of(backend, OWNER, "big", "/home/user/big")
    # Fill the context directly in the store (as a session on a larger quota would have).
    context = backend.contexts.store.read(OWNER, "big")
    assert context is not None
    (context.content() / "blob").write_bytes(b"\0" * (40 * MB))
    figures = json.loads((context.content().parent / "version.json").read_text())
    (context.content().parent / "version.json").write_text(
        json.dumps({**figures, "size_bytes": 40 * MB, "disk_bytes": 40 * MB})
    )
    with pytest.raises(QuotaExceededError, match=r"'big' takes 40.0 MB of disk, more than the 32 MB.*delete_context"):
        await new_session(backend, mount)
    assert await backend.list_all() == []
    assert list((state_dir / "sessions").iterdir()) == []
    assert (await backend.contexts.get_context(OWNER, "big", create=False)).size_bytes == 40 * MB
    await backend.close()


async def test_a_missing_path_syncs_an_empty_context(state_dir: Path, task_group: TaskGroup) -> None:
    backend = await started(state_dir, task_group)
    mount = await mount_of(backend, OWNER, "gone", "/home/user/gone")
    session = await new_session(backend, mount)
    await sh(backend, session.session_id, "echo x > gone/f")
    await backend.contexts.sync_context(session.session_id)
    await sh(backend, session.session_id, "rm -rf gone")
    synced = await backend.contexts.sync_context(session.session_id)
    assert "did not exist" in synced[0].warning
    assert (await backend.contexts.get_context(OWNER, "gone", create=False)).file_count == 0
    await backend.delete_session(session.session_id)
    await backend.close()


async def test_pooled_sessions_get_their_contexts(state_dir: Path, task_group: TaskGroup) -> None:
    backend = await started(state_dir, task_group, pool_size=1)
    with anyio.fail_after(20):
        while len(backend.pool) < 1:  # noqa: ASYNC110 - a test may poll
            await anyio.sleep(0.01)
    mount = await mount_of(backend, OWNER, "pooled", "/home/user/p")
    session = await new_session(backend, mount)
    await sh(backend, session.session_id, "echo pooled > p/f")
    await backend.delete_session(session.session_id)
    assert (await backend.contexts.get_context(OWNER, "pooled", create=False)).file_count == 1
    await backend.close()


def killed_holder(state_dir: Path, name: str, command: str) -> str:
    """A server process with a session mounting `name` (at /home/user/data) that ran `command`, SIGKILLed."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "agentbay_mcp.testing.contexts",
            str(state_dir),
            OWNER,
            name,
            "/home/user/data",
            command,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=REPO,
    )
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline()
        assert line, holder.stderr.read().decode() if holder.stderr else "no output"
        session_id = str(json.loads(line)["session_id"])
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    assert (state_dir / "sessions" / session_id).is_dir(), "the kill gave the server no chance to clean up"
    return session_id


async def test_a_sigkilled_servers_session_is_synced_when_reaped(state_dir: Path, task_group: TaskGroup) -> None:
    orphan = await anyio.to_thread.run_sync(
        killed_holder, state_dir, "survivor", "mkdir -p data/deep && echo saved > data/deep/f && echo ok"
    )
    backend = await started(state_dir, task_group)  # reaps the orphan, syncing it first
    assert list((state_dir / "sessions").iterdir()) == []
    context = await backend.contexts.get_context(OWNER, "survivor", create=False)
    assert (context.file_count, context.notice, context.in_use_by) == (1, None, ())
    stored = backend.contexts.store.read(OWNER, "survivor")
    assert stored is not None
    assert stored.synced_by == orphan
    mount = await mount_of(backend, OWNER, "survivor", "/tmp/again")
    session = await new_session(backend, mount)
    assert await sh(backend, session.session_id, "cat /tmp/again/deep/f") == "saved\n"
    await backend.delete_session(session.session_id)
    await backend.close()


async def test_an_orphan_that_cannot_be_read_safely_keeps_the_context(state_dir: Path, task_group: TaskGroup) -> None:
    backend = await started(state_dir, task_group)
    if backend.disk_quota is None:
        pytest.skip("no disk quota on this host: nothing to unmount")
    mount = await mount_of(backend, OWNER, "kept", "/home/user/data")
    session = await new_session(backend, mount)
    await sh(backend, session.session_id, "echo first > data/f")
    await backend.delete_session(session.session_id)
    await backend.close()
    orphan = await anyio.to_thread.run_sync(killed_holder, state_dir, "kept", "rm data/f; echo ok")
    unmount_under(state_dir / "sessions" / orphan)  # as after a reboot: the session's files are out of reach
    backend = await started(state_dir, task_group)
    assert list((state_dir / "sessions").iterdir()) == []
    context = await backend.contexts.get_context(OWNER, "kept", create=False)
    assert context.file_count == 1, "an unreadable session must never empty its context"
    assert context.notice is not None
    assert orphan in context.notice
    await backend.close()


async def test_contexts_work_without_bwrap(state_dir: Path, task_group: TaskGroup) -> None:
    backend = await started(state_dir, task_group, sandbox=SandboxOptions(isolation="none"))
    assert backend.capabilities.contexts
    mount = await mount_of(backend, OWNER, "plain", "/home/user/plain")
    session = await new_session(backend, mount)
    await sh(backend, session.session_id, "echo plain > $HOME/plain/f")
    await backend.delete_session(session.session_id)
    assert (await backend.contexts.get_context(OWNER, "plain", create=False)).file_count == 1
    await backend.close()


async def test_litter_of_a_crash_is_tidied(state_dir: Path, task_group: TaskGroup) -> None:
    backend = await started(state_dir, task_group)
    mount = await mount_of(backend, OWNER, "tidy", "/home/user/t")
    context = backend.contexts.store.read(OWNER, "tidy")
    assert context is not None
    # As a server killed mid-sync (a version written, `current` not swapped) and mid-create would leave.
    for litter in (context.path / ".sync-abc", context.path / "v7", context.path.parent / ".new~tidy~0000"):
        (litter / "content").mkdir(parents=True)
    os.symlink("v7", context.path / ".current.1234")
    session = await new_session(backend, mount)
    assert sorted(os.listdir(context.path)) == ["current", "meta.json", "v0"]
    assert not (context.path.parent / ".new~tidy~0000").exists()
    await backend.delete_session(session.session_id)
    await backend.close()


async def test_two_servers_on_one_state_dir_sync_one_context_in_turn(state_dir: Path, task_group: TaskGroup) -> None:
    """Each backend has its own in-process locks: only the store's flock keeps their syncs apart."""
    one = await started(state_dir, task_group)
    two = await started(state_dir, task_group)
    mount = await mount_of(one, OWNER, "busy", "/home/user/busy")
    sessions = []
    for backend, tag in ((one, "one"), (two, "two")):
        record = await new_session(backend, mount)
        await sh(backend, record.session_id, f"for i in $(seq 50); do echo {tag} > busy/{tag}-$i; done")
        sessions.append((backend, record.session_id))
    rounds = 6
    async with anyio.create_task_group() as group:
        for backend, session_id in sessions:
            for _ in range(rounds):
                group.start_soon(backend.contexts.sync_context, session_id)
    stored = one.contexts.store.read(OWNER, "busy")
    assert stored is not None
    assert stored.version == 2 * rounds
    names = sorted(os.listdir(stored.content()))
    assert len(names) == 50
    assert len({name.split("-")[0] for name in names}) == 1, f"a version mixes two sessions' trees: {names}"
    assert sorted(os.listdir(stored.path)) == ["current", "meta.json", f"v{stored.version}"]
    for backend, session_id in sessions:
        await backend.delete_session(session_id)
    await one.close()
    await two.close()


async def test_a_context_can_be_the_whole_home(state_dir: Path, task_group: TaskGroup) -> None:
    backend = await started(state_dir, task_group)
    mount = await mount_of(backend, OWNER, "home", "/home/user")
    first = await new_session(backend, mount)
    await sh(backend, first.session_id, "mkdir proj && echo hi > proj/readme")
    await backend.delete_session(first.session_id)
    second = await new_session(backend, mount)
    out = await sh(backend, second.session_id, "cat proj/readme; stat -c %u proj/readme; id -u; touch proj/w && echo w")
    lines = out.splitlines()
    assert lines[0] == "hi", out
    assert lines[1] == lines[2], out
    assert lines[3] == "w", out
    await backend.delete_session(second.session_id)
    await backend.close()


async def test_one_context_at_two_paths_of_one_session(state_dir: Path, task_group: TaskGroup) -> None:
    backend = await started(state_dir, task_group)
    first = await mount_of(backend, OWNER, "twice", "/home/user/a")
    second = first.model_copy(update={"path": "/tmp/b"})
    session = await new_session(backend, first, second)
    await sh(backend, session.session_id, "echo a > a/f; echo b > /tmp/b/g")
    with anyio.fail_after(30):
        synced = await backend.contexts.sync_context(session.session_id, "twice")
    assert [s.path for s in synced] == ["/home/user/a", "/tmp/b"]
    assert [s.warning for s in synced] == ["", ""]
    await backend.delete_session(session.session_id)
    stored = backend.contexts.store.read(OWNER, "twice")
    assert stored is not None
    assert os.listdir(stored.content()) == ["g"]  # the mounts sync in order: the last one wins
    await backend.close()


async def test_parallel_syncs_of_two_contexts_stay_within_the_owner_quota(
    state_dir: Path, task_group: TaskGroup
) -> None:
    # Each sync measures the owner's other contexts before it copies: two running at once must not
    # both count the other as empty and together store twice the quota.
    backend = await started(state_dir, task_group, context_quota_bytes=4 * MB)
    sessions = []
    for name in ("left", "right"):
        session = await new_session(backend, await mount_of(backend, OWNER, name, "/home/user/data"))
        await sh(backend, session.session_id, "cd data && for i in $(seq 750); do head -c 4096 /dev/zero > f$i; done")
        sessions.append(session)
    failures: list[QuotaExceededError] = []

    async def sync(session_id: str) -> None:
        try:
            await backend.contexts.sync_context(session_id)
        except QuotaExceededError as exc:
            failures.append(exc)

    async with anyio.create_task_group() as group:
        for session in sessions:
            group.start_soon(sync, session.session_id)
    sizes = [context.size_bytes for context in await backend.contexts.list_contexts(OWNER)]
    assert sum(sizes) <= 4 * MB, sizes
    assert len(failures) == 1
    for session in sessions:
        await backend.delete_session(session.session_id)
    await backend.close()


async def test_a_delete_raced_by_another_servers_create_is_refused(state_dir: Path, task_group: TaskGroup) -> None:
    """Server two publishes a session mounting the context while server one's delete waits for the
    context's lock: the delete must see that session once it has the lock, not before."""
    one = await started(state_dir, task_group)
    two = await started(state_dir, task_group)
    mount = await mount_of(one, OWNER, "raced", "/home/user/raced")
    outcomes: dict[str, object] = {}

    async def delete() -> None:
        try:
            await one.contexts.delete_context(OWNER, "raced")
            outcomes["delete"] = "deleted"
        except InvalidArgumentError as exc:
            outcomes["delete"] = exc

    async def create() -> None:
        try:
            outcomes["create"] = await new_session(two, mount)
        except ContextNotFoundError as exc:
            outcomes["create"] = exc

    held = one.contexts.store.locked(OWNER, "raced")  # a third party's turn at the context
    held.__enter__()
    released = False
    try:
        async with anyio.create_task_group() as group:
            group.start_soon(delete)
            await anyio.sleep(0.5)  # one waits for the lock
            group.start_soon(create)
            await anyio.sleep(1.5)  # two has published its session and waits for the lock to copy in
            released = True
            held.__exit__(None, None, None)
    finally:
        if not released:
            held.__exit__(None, None, None)
    # Whichever server gets the lock first, two's session was published before one could delete.
    assert isinstance(outcomes["delete"], InvalidArgumentError), f"deleted while in use: {outcomes}"
    created = outcomes["create"]
    assert not isinstance(created, ContextNotFoundError), created
    assert (await one.contexts.get_context(OWNER, "raced", create=False)).in_use_by
    await two.delete_session(created.session_id)  # type: ignore[attr-defined]
    await one.close()
    await two.close()


async def test_a_failed_copy_in_names_no_host_path(
    state_dir: Path, task_group: TaskGroup, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = await started(state_dir, task_group)
    mount = await mount_of(backend, OWNER, "slow", "/home/user/slow")
    session = await new_session(backend, mount)
    await sh(backend, session.session_id, "for i in $(seq 200); do echo $i > slow/f$i; done")
    await backend.delete_session(session.session_id)
    monkeypatch.setattr(context_sync, "_COPY_TIMEOUT_SECONDS", 1e-6)  # cp cannot finish in time
    with pytest.raises(BackendError) as failed:
        await new_session(backend, mount)
    assert "slow" in str(failed.value)
    assert str(state_dir) not in str(failed.value)
    assert await backend.list_all() == []
    await backend.close()


async def test_parallel_syncs_of_one_sessions_contexts_keep_its_bases(state_dir: Path, task_group: TaskGroup) -> None:
    """Each sync rewrites the session's contexts.json (its mounts and their bases): two at once on one
    session must not write it over each other (a torn file loses every mount's save at the end)."""
    backend = await started(state_dir, task_group)
    left = await mount_of(backend, OWNER, "left", "/home/user/left")
    right = await mount_of(backend, OWNER, "right", "/home/user/right")
    session = await new_session(backend, left, right)
    await sh(
        backend, session.session_id, "for d in left right; do for i in $(seq 300); do echo $i > $d/f$i; done; done"
    )
    for _ in range(3):
        async with anyio.create_task_group() as group:
            for name in ("left", "right"):
                group.start_soon(backend.contexts.sync_context, session.session_id, name)
    bases = {
        item.mount.name: item.base for item in context_sync.read_mounted(state_dir / "sessions" / session.session_id)
    }
    versions = {c.name: backend.contexts.store.read(OWNER, c.name).version for c in (left, right)}  # type: ignore[union-attr]
    assert bases == versions
    await backend.delete_session(session.session_id)
    await backend.close()


async def test_the_reap_command_keeps_the_owner_quota(state_dir: Path, task_group: TaskGroup) -> None:
    """A sparse file costs the session no disk but is written whole by a save: without the quota the
    reap command would fill the host's disk with what an orphan left."""
    orphan = await anyio.to_thread.run_sync(killed_holder, state_dir, "sparse", "truncate -s 64M data/f && echo ok")
    done = await anyio.to_thread.run_sync(
        functools.partial(sessions_cli, state_dir, "reap", timeout=120, AGENTBAY_MCP_CONTEXT_QUOTA_MB="8")
    )
    assert done.returncode == 0, done.stderr
    assert orphan in done.stdout
    backend = await started(state_dir, task_group)
    context = await backend.contexts.get_context(OWNER, "sparse", create=False)
    assert context.size_bytes == 0, "the orphan's save passed the quota"
    assert context.notice is not None
    assert "quota of 8 MB" in context.notice
    await backend.close()


async def test_hard_links_are_saved_once_and_shown_again(state_dir: Path, task_group: TaskGroup) -> None:
    backend = await started(state_dir, task_group, context_quota_bytes=8 * MB)
    mount = await mount_of(backend, OWNER, "linked", "/home/user/data")
    session = await new_session(backend, mount)
    command = "head -c 4000000 /dev/zero > data/big && for i in $(seq 10); do ln data/big data/l$i; done; echo ok"
    assert (await sh(backend, session.session_id, command)).strip() == "ok"
    synced = await backend.contexts.sync_context(session.session_id)  # 44 MB by names, 4 MB on disk
    assert (synced[0].size_bytes, synced[0].file_count) == (4_000_000, 11)
    await backend.delete_session(session.session_id)
    again = await new_session(backend, mount)
    assert (await sh(backend, again.session_id, "stat -c %h data/l3")).strip() == "11"
    await backend.delete_session(again.session_id)
    await backend.close()


async def test_a_sparse_file_larger_than_the_disk_quota_is_shown_again(state_dir: Path, task_group: TaskGroup) -> None:
    """A session may show more bytes than its disk holds (holes): the save must keep the holes, or the
    context no longer fits the next session's disk and can never be shown again."""
    backend = await started(state_dir, task_group, sandbox=SandboxOptions(limits=SessionLimits(disk_bytes=32 * MB)))
    if backend.disk_quota is None:
        pytest.skip("no disk quota on this host")
    mount = await mount_of(backend, OWNER, "holes", "/home/user/data")
    session = await new_session(backend, mount)
    await sh(backend, session.session_id, "truncate -s 40M data/f && echo end >> data/f && echo ok")
    await backend.delete_session(session.session_id)
    context = await backend.contexts.get_context(OWNER, "holes", create=False)
    assert (context.size_bytes, context.notice) == (40 * MB + 4, None)
    again = await new_session(backend, mount)
    assert (await sh(backend, again.session_id, "stat -c %s data/f; tail -c 4 data/f")).split() == [
        str(40 * MB + 4),
        "end",
    ]
    await backend.delete_session(again.session_id)
    await backend.close()


async def test_deleting_unknown_contexts_leaves_nothing_behind(state_dir: Path, task_group: TaskGroup) -> None:
    """delete_context is called with names the caller picks: an unknown one must cost no lock file on
    disk and no lock in memory, or a loop of calls grows both without bound."""
    backend = await started(state_dir, task_group)
    await mount_of(backend, OWNER, "real", "/home/user/real")
    owner_dir = backend.contexts.store.owner_dir(OWNER)
    before = sorted(os.listdir(owner_dir))
    for index in range(50):
        with pytest.raises(ContextNotFoundError):
            await backend.contexts.delete_context(OWNER, f"ghost-{index}")
    assert sorted(os.listdir(owner_dir)) == before
    assert len(backend.contexts._locks) <= 1
    assert not backend.contexts.store.root.joinpath(owner_key("nobody-yet")).exists()
    with pytest.raises(ContextNotFoundError):
        await backend.contexts.delete_context("nobody-yet", "ghost")
    assert not backend.contexts.store.root.joinpath(owner_key("nobody-yet")).exists()
    await backend.close()


async def test_created_and_deleted_contexts_leave_no_lock_behind(state_dir: Path, task_group: TaskGroup) -> None:
    """A principal may create and delete contexts under new names forever (within the count quota):
    each must take its lock file and in-memory lock with it."""
    backend = await started(state_dir, task_group)
    await mount_of(backend, OWNER, "kept", "/home/user/kept")
    owner_dir = backend.contexts.store.owner_dir(OWNER)
    before = (sorted(os.listdir(owner_dir)), len(backend.contexts._locks))
    for index in range(20):
        await backend.contexts.get_context(OWNER, f"brief-{index}", create=True)
        await backend.contexts.delete_context(OWNER, f"brief-{index}")
    assert (sorted(os.listdir(owner_dir)), len(backend.contexts._locks)) == before
    # The name works again afterwards, and its lock with it.
    again = await mount_of(backend, OWNER, "brief-3", "/home/user/again")
    session = await new_session(backend, again)
    await sh(backend, session.session_id, "echo x > again/f")
    await backend.delete_session(session.session_id)
    assert (await backend.contexts.get_context(OWNER, "brief-3", create=False)).file_count == 1
    await backend.close()
