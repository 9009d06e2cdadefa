"""Workspaces on the local backend, in real bwrap sandboxes: each mode, diff, apply, conflicts, endings.

The project is owned by root (the server's uid here), so the sandbox (host uid 65534) can write it
only through the id-mapped mount.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskGroup

from agentbay_mcp.backends.common.workspace_specs import WorkspaceSpec
from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.local.workspaces import LocalWorkspaces
from agentbay_mcp.backends.records import ShellCommand
from agentbay_mcp.errors import (
    BackendError,
    BackendUnavailableError,
    InvalidArgumentError,
    SandboxDiedError,
    SandboxLostError,
    SessionNotFoundError,
)

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(os.geteuid() != 0, reason="workspaces need a root server (id-mapped mounts)"),
]


def make_project(path: Path) -> Path:
    (path / "src").mkdir(parents=True)
    (path / "README.md").write_text("hello\nworld\n")
    (path / "src" / "main.py").write_text("print('hi')\n")
    (path / "src" / "old.txt").write_text("old\n")
    (path / "blob.bin").write_bytes(b"\0\1\2")
    os.chmod(path, 0o755)
    return path


def snapshot(path: Path) -> dict[str, bytes | str]:
    """Every entry below `path` with its content (files) or target (links)."""
    found: dict[str, bytes | str] = {}
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            full = Path(root) / name
            rel = str(full.relative_to(path))
            if full.is_symlink():
                found[rel] = "-> " + os.readlink(full)
            elif full.is_file():
                found[rel] = full.read_bytes()
            else:
                found[rel] = "dir"
    return found


async def run(backend: LocalBackend, session_id: str, command: str) -> tuple[int | None, str]:
    outcome = await backend.processes.run_process(
        session_id, ShellCommand(command=command), wait_ms=20000, cap=65536, timeout_ms=20000
    )
    assert outcome.summary is not None
    out = outcome.summary["stdout"].head + outcome.summary["stderr"].head
    return outcome.info.exit_code, out.decode(errors="replace")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "project")


async def started(state_dir: Path, task_group: TaskGroup, *specs: WorkspaceSpec, **kwargs: object) -> LocalBackend:
    backend = LocalBackend(state_dir, workspaces=specs, **kwargs)  # type: ignore[arg-type]
    await backend.start(task_group)
    return backend


async def overlay_session(
    state_dir: Path, task_group: TaskGroup, project: Path
) -> tuple[LocalBackend, LocalWorkspaces, str]:
    """A backend offering `project` as the overlay workspace 'proj', and a session showing it."""
    backend = await started(state_dir, task_group, WorkspaceSpec("proj", project, "overlay"))
    assert backend.workspaces is not None
    sid = (await backend.create_session(image_id="code_latest", labels={}, owner="c", workspaces=["proj"])).session_id
    return backend, backend.workspaces, sid


async def test_overlay_edits_stay_in_the_session_until_applied(
    state_dir: Path, task_group: TaskGroup, project: Path
) -> None:
    backend = await started(state_dir, task_group, WorkspaceSpec("proj", project, "overlay"))
    assert backend.capabilities.workspaces
    assert backend.workspaces is not None
    before = snapshot(project)
    record = await backend.create_session(image_id="code_latest", labels={}, owner="c", workspaces=["proj"])
    sid = record.session_id
    code, out = await run(
        backend,
        sid,
        "cd /workspace/proj && echo more >> README.md && echo new > src/new.txt && rm src/old.txt"
        " && printf '\\0\\3' > blob.bin && ln -s ../README.md src/link && touch src/main.py && id -u",
    )
    assert code == 0, out
    assert snapshot(project) == before  # nothing reached the host
    diff = await backend.workspaces.diff(sid, "proj", 100_000)
    kinds = {change.path: change.kind for change in diff.changes}
    assert kinds == {
        "README.md": "modified",
        "blob.bin": "modified",
        "src/link": "added",
        "src/new.txt": "added",
        "src/old.txt": "deleted",
    }
    assert "+more" in diff.diff
    assert "+new" in diff.diff
    assert "-old" in diff.diff
    assert [c.binary for c in diff.changes if c.path == "blob.bin"] == [True]
    assert not any(change.conflict for change in diff.changes)
    applied = await backend.workspaces.apply(sid, "proj", None, False)
    assert sorted(applied.applied) == sorted(kinds)
    assert (project / "README.md").read_text() == "hello\nworld\nmore\n"
    assert (project / "src" / "new.txt").stat().st_uid == 0  # the workspace owner's, not the sandbox's
    assert not (project / "src" / "old.txt").exists()
    assert os.readlink(project / "src" / "link") == "../README.md"
    again = await backend.workspaces.diff(sid, "proj", 100_000)
    assert again.changes == ()
    # The session keeps working on the same files after the apply.
    assert (await run(backend, sid, "cat /workspace/proj/src/new.txt"))[1] == "new\n"
    await backend.delete_session(sid)
    assert (project / "README.md").read_text() == "hello\nworld\nmore\n"
    await backend.close()


async def test_rw_writes_reach_the_host_and_ro_refuses(state_dir: Path, task_group: TaskGroup, tmp_path: Path) -> None:
    rw, ro = make_project(tmp_path / "rw"), make_project(tmp_path / "ro")
    specs = (WorkspaceSpec("rw", rw, "rw"), WorkspaceSpec("ro", ro, "ro"))
    backend = await started(state_dir, task_group, *specs)
    sid = (
        await backend.create_session(image_id="code_latest", labels={}, owner="c", workspaces=["rw", "ro"])
    ).session_id
    code, out = await run(backend, sid, "echo edit >> /workspace/rw/README.md && echo n > /workspace/rw/n.txt")
    assert code == 0, out
    assert (rw / "README.md").read_text().endswith("edit\n")
    assert (rw / "n.txt").stat().st_uid == 0
    code, out = await run(backend, sid, "echo edit >> /workspace/ro/README.md")
    assert code != 0
    assert "Read-only" in out
    code, out = await run(backend, sid, "touch /workspace/x")
    assert code != 0  # /workspace itself is read-only
    assert (await backend.workspaces.diff(sid, "rw", 1000)).changes == ()  # type: ignore[union-attr]
    with pytest.raises(InvalidArgumentError, match="on the host already"):
        await backend.workspaces.apply(sid, "rw", None, False)  # type: ignore[union-attr]
    await backend.delete_session(sid)
    assert (rw / "README.md").exists()
    assert (ro / "README.md").read_text() == "hello\nworld\n"
    await backend.close()


async def test_no_workspace_no_mount_and_unknown_names(state_dir: Path, task_group: TaskGroup, project: Path) -> None:
    backend = await started(state_dir, task_group, WorkspaceSpec("proj", project, "overlay"))
    sid = (await backend.create_session(image_id="code_latest", labels={}, owner="c")).session_id
    code, _ = await run(backend, sid, "ls /workspace")
    assert code != 0
    with pytest.raises(InvalidArgumentError, match="offers: proj"):
        await backend.create_session(image_id="code_latest", labels={}, owner="c", workspaces=["nope"])
    with pytest.raises(InvalidArgumentError, match="has no workspace"):
        await backend.workspaces.diff(sid, "proj", 1000)  # type: ignore[union-attr]
    await backend.close()


async def test_without_configured_workspaces_the_capability_says_why(state_dir: Path, task_group: TaskGroup) -> None:
    backend = await started(state_dir, task_group)
    assert not backend.capabilities.workspaces
    assert backend.workspaces is None
    with pytest.raises(BackendUnavailableError, match="--workspace NAME="):
        await backend.create_session(image_id="code_latest", labels={}, owner="c", workspaces=["x"])
    await backend.close()


async def test_a_host_edit_is_a_conflict(state_dir: Path, task_group: TaskGroup, project: Path) -> None:
    backend, _, sid = await overlay_session(state_dir, task_group, project)
    assert (await run(backend, sid, "echo session > /workspace/proj/README.md; echo a > /workspace/proj/a"))[0] == 0
    (project / "README.md").write_text("host edit\n")
    assert backend.workspaces is not None
    diff = await backend.workspaces.diff(sid, "proj", 10_000)
    assert {c.path: c.conflict for c in diff.changes} == {"README.md": True, "a": False}
    applied = await backend.workspaces.apply(sid, "proj", None, False)
    assert applied.applied == ("a",)
    assert applied.conflicts == ("README.md",)
    assert (project / "README.md").read_text() == "host edit\n"
    applied = await backend.workspaces.apply(sid, "proj", ["README.md"], True)
    assert applied.applied == ("README.md",)
    assert (project / "README.md").read_text() == "session\n"
    # Our own apply is not a conflict next time.
    assert (await run(backend, sid, "echo again > /workspace/proj/README.md"))[0] == 0
    diff = await backend.workspaces.diff(sid, "proj", 10_000)
    assert [(c.path, c.conflict) for c in diff.changes] == [("README.md", False)]
    await backend.close()


@pytest.mark.parametrize("mode", ["overlay", "rw", "ro"])
async def test_every_ending_leaves_the_project_intact(
    state_dir: Path, task_group: TaskGroup, project: Path, mode: str
) -> None:
    before = snapshot(project)
    backend = await started(state_dir, task_group, WorkspaceSpec("proj", project, mode))  # type: ignore[arg-type]
    kept = (await backend.create_session(image_id="code_latest", labels={}, owner="c", workspaces=["proj"])).session_id
    gone = (await backend.create_session(image_id="code_latest", labels={}, owner="c", workspaces=["proj"])).session_id
    await backend.delete_session(gone)
    assert snapshot(project) == before
    # A server that dies without cleaning up: its session is reaped by the next one.
    await backend.close()  # (unmounts its sessions' mounts; the tree stays for the reaper)
    successor = await started(state_dir, task_group, WorkspaceSpec("proj", project, mode))  # type: ignore[arg-type]
    assert not (state_dir / "sessions" / kept).exists()
    assert snapshot(project) == before
    await successor.close()


async def test_a_restarted_sandbox_sees_its_workspace_and_its_edits(
    state_dir: Path, task_group: TaskGroup, project: Path
) -> None:
    backend, _, sid = await overlay_session(state_dir, task_group, project)
    assert (await run(backend, sid, "echo kept > /workspace/proj/new"))[0] == 0
    os.kill(backend._sandboxes[sid].child_pid, signal.SIGKILL)
    with contextlib.suppress(SandboxDiedError, SandboxLostError):
        await anyio.sleep(0.2)
        await run(backend, sid, "true")
    assert await run(backend, sid, "cat /workspace/proj/new") == (0, "kept\n")
    await backend.close()


async def test_deleting_a_directory_is_a_conflict_if_the_host_changed_anything_in_it(
    state_dir: Path, task_group: TaskGroup, project: Path
) -> None:
    # The host's edit two levels down changes neither src's nor src/sub's own ctime: only what is in them.
    (project / "src" / "sub").mkdir()
    backend, ws, sid = await overlay_session(state_dir, task_group, project)
    await anyio.sleep(0.02)  # past the session's start, in the coarse clock file times use
    (project / "src" / "sub" / "host-work.txt").write_text("the user's\n")
    assert (await run(backend, sid, "rm -rf /workspace/proj/src"))[0] == 0
    diff = await ws.diff(sid, "proj", 10_000)
    assert [(c.path, c.kind, c.conflict) for c in diff.changes] == [("src/", "deleted", True)]
    applied = await ws.apply(sid, "proj", None, False)
    assert (applied.applied, applied.conflicts) == ((), ("src/",))
    assert (project / "src" / "sub" / "host-work.txt").read_text() == "the user's\n"
    await backend.close()


async def test_deleting_a_directory_the_session_applied_into_is_no_conflict(
    state_dir: Path, task_group: TaskGroup, project: Path
) -> None:
    backend, ws, sid = await overlay_session(state_dir, task_group, project)
    await anyio.sleep(0.02)
    assert (await run(backend, sid, "mkdir -p /workspace/proj/src/new && echo x > /workspace/proj/src/new/f"))[0] == 0
    assert (await ws.apply(sid, "proj", None, False)).applied == ("src/new/f",)
    assert (await run(backend, sid, "rm -rf /workspace/proj/src"))[0] == 0
    diff = await ws.diff(sid, "proj", 10_000)
    assert [(c.path, c.kind, c.conflict) for c in diff.changes] == [("src/", "deleted", False)]
    applied = await ws.apply(sid, "proj", None, False)
    assert (applied.applied, applied.conflicts) == (("src/",), ())
    assert not (project / "src").exists()
    await backend.close()


async def test_two_sessions_applying_at_once_never_both_write_a_path(
    state_dir: Path, task_group: TaskGroup, project: Path
) -> None:
    # Each apply checks conflicts, then writes: two sessions of one workspace must not interleave there.
    backend = await started(state_dir, task_group, WorkspaceSpec("proj", project, "overlay"))
    assert backend.workspaces is not None
    sids = [
        (await backend.create_session(image_id="code_latest", labels={}, owner="c", workspaces=["proj"])).session_id
        for _ in range(2)
    ]
    await anyio.sleep(0.02)
    for sid in sids:
        code, out = await run(backend, sid, f"cd /workspace/proj && for i in $(seq 400); do echo {sid} > f$i; done")
        assert code == 0, out
    results = {}

    async def apply(sid: str) -> None:
        results[sid] = await backend.workspaces.apply(sid, "proj", None, False)  # type: ignore[union-attr]

    async with anyio.create_task_group() as group:
        for sid in sids:
            group.start_soon(apply, sid)
    first, second = (results[sid] for sid in sids)
    assert not set(first.applied) & set(second.applied)
    assert len(first.applied) + len(second.applied) == 400
    await backend.close()


async def test_a_huge_change_list_is_cut_at_the_cap(state_dir: Path, task_group: TaskGroup, project: Path) -> None:
    # 3,000 files with 4 KB paths: 12 MB of names, which the answer once carried whole (twice: text and
    # structured), and a session on a 4 GiB disk can make 200,000 of them.
    backend, ws, sid = await overlay_session(state_dir, task_group, project)
    make = (
        "import os\nos.chdir('/workspace/proj')\n"
        "for i in range(14):\n    os.mkdir('d' * 250)\n    os.chdir('d' * 250)\n"
        "for i in range(3000):\n    open(f'{i:05}' + 'f' * 200, 'w').close()\n"
    )
    assert (await run(backend, sid, f'python3 -c "{make}"'))[0] == 0
    diff = await ws.diff(sid, "proj", 100_000)
    assert diff.truncated
    assert 0 < sum(len(change.path) for change in diff.changes) <= 100_000
    await backend.close()


async def test_a_tree_remade_below_a_removed_directory_applies_as_the_session_sees_it(
    state_dir: Path, task_group: TaskGroup, project: Path
) -> None:
    # rm -rf src && mkdir -p src/sub: overlayfs marks src opaque, but not src/sub (nothing of the
    # host's shows below an opaque directory anyway), so the host's src/sub/a.txt is gone for the session.
    (project / "src" / "sub").mkdir()
    (project / "src" / "sub" / "a.txt").write_text("a\n")
    (project / "src" / "sub" / "keep.txt").write_text("old\n")
    backend, ws, sid = await overlay_session(state_dir, task_group, project)
    remake = "cd /workspace/proj && rm -rf src && mkdir -p src/sub && echo new > src/sub/keep.txt"
    assert (await run(backend, sid, remake))[0] == 0
    diff = await ws.diff(sid, "proj", 10_000)
    assert {c.path: c.kind for c in diff.changes} == {
        "src/main.py": "deleted",
        "src/old.txt": "deleted",
        "src/sub/a.txt": "deleted",
        "src/sub/keep.txt": "modified",
    }
    await ws.apply(sid, "proj", None, False)
    code, seen = await run(backend, sid, "cd /workspace/proj && find . | sort")
    assert code == 0
    assert sorted(["."] + [f"./{path}" for path in snapshot(project)]) == seen.split()
    assert (await ws.diff(sid, "proj", 10_000)).changes == ()
    await backend.close()


async def test_an_apply_past_the_walks_bounds_says_so_and_paths_reach_the_rest(
    state_dir: Path, task_group: TaskGroup, project: Path
) -> None:
    # 2 x 10,000 files with 3.7 KB paths: 74 MB of paths, past the 64 MiB one walk takes. A partial
    # apply once answered like a whole one, and paths= could not reach past the cut either.
    backend, ws, sid = await overlay_session(state_dir, task_group, project)
    make = (
        "import os\\nfor top in 'ab':\\n    os.chdir('/workspace/proj')\\n    os.mkdir(top)\\n    os.chdir(top)\\n"
        "    for i in range(14):\\n        os.mkdir('d' * 250)\\n        os.chdir('d' * 250)\\n"
        "    for i in range(10000):\\n        open(f'{i:05}' + 'f' * 200, 'w').close()\\n"
    )
    code, out = await run(backend, sid, f'python3 -c "$(printf "{make}")"')
    assert code == 0, out
    applied = await ws.apply(sid, "proj", None, False)
    assert 0 < len(applied.applied) < 20_000
    assert [line.split(":")[0] for line in applied.refused] == ["(the rest)"]
    for top in ("a", "b"):
        part = await ws.apply(sid, "proj", [top], False)
        assert part.refused == ()
    count = sum(len(files) for _, _, files in os.walk(project / "a")) + sum(
        len(files) for _, _, files in os.walk(project / "b")
    )
    assert count == 20_000
    await backend.close()


async def test_a_host_directory_moved_away_is_said_plainly(
    state_dir: Path, task_group: TaskGroup, project: Path, tmp_path: Path
) -> None:
    backend, ws, sid = await overlay_session(state_dir, task_group, project)
    assert (await run(backend, sid, "echo x > /workspace/proj/new"))[0] == 0
    os.rename(project, tmp_path / "moved")  # (the session keeps its mount of it)
    with pytest.raises(BackendError, match=r"workspace proj: its host directory \S*project is no longer the directory"):
        await ws.diff(sid, "proj", 1000)
    with pytest.raises(BackendError, match="moved, removed, or a link along its path"):
        await ws.apply(sid, "proj", None, False)
    assert not (tmp_path / "moved" / "new").exists()
    await backend.close()


async def test_a_directory_replaced_by_a_file_or_a_link_applies(
    state_dir: Path, task_group: TaskGroup, project: Path
) -> None:
    # Once listed as 'modified src' and refused for ever: a file is never renamed over a directory.
    (project / "docs").mkdir()
    backend, ws, sid = await overlay_session(state_dir, task_group, project)
    replace = "cd /workspace/proj && rm -rf src docs && echo file > src && ln -s README.md docs"
    assert (await run(backend, sid, replace))[0] == 0
    diff = await ws.diff(sid, "proj", 10_000)
    assert [(c.path, c.kind) for c in diff.changes] == [
        ("docs", "added"),
        ("docs/", "deleted"),
        ("src", "added"),
        ("src/", "deleted"),
    ]
    applied = await ws.apply(sid, "proj", None, False)
    assert (applied.conflicts, applied.refused) == ((), ())
    assert (project / "src").read_text() == "file\n"
    assert os.readlink(project / "docs") == "README.md"
    assert (await ws.diff(sid, "proj", 10_000)).changes == ()
    await backend.close()


async def test_the_diff_stops_diffing_once_its_text_is_full(
    state_dir: Path, task_group: TaskGroup, project: Path
) -> None:
    # Each of these pairs costs difflib most of a second (its time grows with the square of the lines),
    # and all of it was spent for every changed file, even long after the answer's text was full.
    text = "".join(f"line {i} some text here\n" for i in range(12_000))
    for index in range(12):
        (project / f"big{index:02}.txt").write_text(text)
    backend, ws, sid = await overlay_session(state_dir, task_group, project)
    assert (await run(backend, sid, "cd /workspace/proj && sed -i s/1/2/g big*.txt && printf '\\0' > bin"))[0] == 0
    began = time.monotonic()
    diff = await ws.diff(sid, "proj", 1000)
    assert time.monotonic() - began < 4
    assert diff.truncated
    assert len(diff.changes) == 13
    assert [c.path for c in diff.changes if c.binary] == ["bin"]  # still told apart, past the text's cap
    await backend.close()


async def test_an_apply_racing_the_sessions_deletion_reports_what_it_wrote(
    state_dir: Path, task_group: TaskGroup, project: Path
) -> None:
    # The apply wrote every file, then failed to note it in the (removed) session dir: the model was
    # told only "Error executing tool", as if nothing had reached the host.
    backend, ws, sid = await overlay_session(state_dir, task_group, project)
    assert (await run(backend, sid, "cd /workspace/proj && mkdir m && for i in $(seq 3000); do echo $i > m/f$i; done"))[
        0
    ] == 0
    outcome: list[object] = []

    async def apply() -> None:
        try:
            outcome.append(await ws.apply(sid, "proj", None, False))  # type: ignore[union-attr]
        except SessionNotFoundError as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(apply)
        await anyio.sleep(0.05)
        await backend.delete_session(sid)
    [result] = outcome
    written = len(os.listdir(project / "m")) if (project / "m").exists() else 0
    if isinstance(result, SessionNotFoundError):
        assert written == 0
    else:
        assert len(result.applied) == written == 3000  # type: ignore[attr-defined]
    await backend.close()


async def test_a_file_the_host_deleted_and_the_session_changed_is_a_conflict(
    state_dir: Path, task_group: TaskGroup, project: Path
) -> None:
    # With the host's file gone, the session's copy once looked merely 'added', and apply brought
    # the deleted file back unasked. A file the session renamed is no conflict (its original is there).
    backend, ws, sid = await overlay_session(state_dir, task_group, project)
    change = "cd /workspace/proj && echo more >> README.md && mv src/old.txt src/renamed.txt"
    assert (await run(backend, sid, change))[0] == 0
    os.unlink(project / "README.md")
    diff = await ws.diff(sid, "proj", 10_000)
    assert [(c.path, c.kind, c.conflict) for c in diff.changes] == [
        ("README.md", "added", True),
        ("src/old.txt", "deleted", False),
        ("src/renamed.txt", "added", False),
    ]
    applied = await ws.apply(sid, "proj", None, False)
    assert applied.conflicts == ("README.md",)
    assert not (project / "README.md").exists()
    await backend.close()
