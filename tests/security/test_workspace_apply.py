"""workspace_apply and workspace_diff attacked from inside the sandbox: links (absolute, relative, swapped
while the apply runs) and `..`, with host canaries outside the workspace that must stay untouched.

The session writes the overlay's upper dir, which the server then reads and applies host-side: every
entry in it is hostile. Nothing may be written, read or removed outside the workspace root.
"""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskGroup

from agentbay_mcp.backends.common.workspace_specs import WorkspaceSpec
from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.records import ShellCommand
from agentbay_mcp.errors import BackendError, InvalidArgumentError
from tests.e2e.test_workspaces import make_project, run, snapshot
from tests.security.file_attacks import Canaries

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(os.geteuid() != 0, reason="workspaces need a root server (id-mapped mounts)"),
]


def canary_state(canaries: Canaries) -> dict[str, bytes | str]:
    return snapshot(canaries.directory)


async def session_on(state_dir: Path, task_group: TaskGroup, project: Path) -> tuple[LocalBackend, str]:
    backend = LocalBackend(state_dir, workspaces=[WorkspaceSpec("proj", project, "overlay")])
    await backend.start(task_group)
    record = await backend.create_session(image_id="code_latest", labels={}, owner="c", workspaces=["proj"])
    return backend, record.session_id


async def test_links_leading_out_are_refused_and_never_followed(
    state_dir: Path, task_group: TaskGroup, tmp_path: Path, canaries: Canaries
) -> None:
    project = make_project(tmp_path / "project")
    # The project's own link out of it: a write through it must be refused, not followed.
    (project / "out").symlink_to(canaries.directory)
    before, canary_before = snapshot(project), canary_state(canaries)
    backend, sid = await session_on(state_dir, task_group, project)
    assert backend.workspaces is not None
    secret = canaries.secret_file
    code, out = await run(
        backend,
        sid,
        "cd /workspace/proj"
        f" && ln -s {secret} abs && ln -s ../../{canaries.directory.name}/{secret.name} rel"
        f" && ln -s {canaries.directory} absdir && ln -s .. up"
        " && ln -s src/main.py fine && mkdir -p deep && ln -s ../README.md deep/ok",
    )
    assert code == 0, out
    # A name that would forge a line of the diff (or of the apply's answer) is quoted.
    assert (await run(backend, sid, "printf x > \"/workspace/proj/$(printf 'evil\\n+++ forged')\""))[0] == 0
    diff = await backend.workspaces.diff(sid, "proj", 100_000)
    assert not any(s in diff.diff for s in canaries.secrets())
    assert "+++ forged" not in diff.diff.splitlines()
    assert '+++ b/"evil\\n+++ forged"' in diff.diff.splitlines()
    applied = await backend.workspaces.apply(sid, "proj", None, False)
    refused = {line.split(":")[0] for line in applied.refused}
    assert refused == {"abs", "rel", "absdir", "up"}
    assert set(applied.applied) == {"fine", "deep/ok", "evil\n+++ forged"}
    assert os.readlink(project / "fine") == "src/main.py"
    for name in ("abs", "rel", "absdir", "up"):
        assert not (project / name).is_symlink()
    # Writing under the project's own link to the canaries: refused, nothing written there.
    assert (await run(backend, sid, "cd /workspace/proj && rm out && mkdir out && echo x > out/new"))[0] == 0
    applied = await backend.workspaces.apply(sid, "proj", ["out/new"], False)
    assert applied.applied == ()
    assert [line.split(":")[0] for line in applied.refused] == ["out/new"]
    assert canary_state(canaries) == canary_before
    assert snapshot(project).keys() - before.keys() == {"fine", "deep", "deep/ok", "evil\n+++ forged"}
    await backend.close()


async def test_dotdot_and_absolute_paths_are_refused(
    state_dir: Path, task_group: TaskGroup, tmp_path: Path, canaries: Canaries
) -> None:
    backend, sid = await session_on(state_dir, task_group, make_project(tmp_path / "project"))
    assert backend.workspaces is not None
    for bad in ("../x", "src/../../x", str(canaries.secret_file), "/etc/passwd", ""):
        with pytest.raises(InvalidArgumentError):
            await backend.workspaces.apply(sid, "proj", [bad], True)
    for bad_name in ("..", "../proj", "proj/..", ".x"):
        with pytest.raises(InvalidArgumentError):
            await backend.workspaces.diff(sid, bad_name, 1000)
    await backend.close()


async def test_links_swapped_in_during_apply_lead_nowhere(
    state_dir: Path, task_group: TaskGroup, tmp_path: Path, canaries: Canaries
) -> None:
    project = make_project(tmp_path / "project")
    canary_before = canary_state(canaries)
    backend, sid = await session_on(state_dir, task_group, project)
    assert backend.workspaces is not None
    # Many files in a directory the session keeps swapping for a link to the canaries (and a file for a
    # link to the secret), while the server diffs and applies over and over.
    setup = "cd /workspace/proj && mkdir d && for i in $(seq 200); do echo $i > d/f$i; done && echo t > top"
    assert (await run(backend, sid, setup))[0] == 0
    swapper = (
        "cd /workspace/proj; end=$(($(date +%s) + 8)); while [ $(date +%s) -lt $end ]; do "
        f"mv d d.real; ln -s {canaries.directory} d; rm d; mv d.real d; "
        f"mv top top.real; ln -s {canaries.secret_file} top; rm top; mv top.real top; done"
    )
    assert backend.process_handles is not None
    await backend.process_handles.start_process(
        sid, ShellCommand(command=swapper), stdin=False, foreground=False, cap=4096
    )
    with anyio.move_on_after(7):
        while True:
            diff = await backend.workspaces.diff(sid, "proj", 1_000_000)
            assert not any(s in diff.diff for s in canaries.secrets())
            applied = await backend.workspaces.apply(sid, "proj", None, True)
            assert not any(p.startswith("/") or ".." in p for p in applied.applied)
            assert canary_state(canaries) == canary_before
    assert canary_state(canaries) == canary_before
    assert not (project / "d").is_symlink()
    assert not (project / "top").is_symlink()
    assert links_leading_out(project) == []
    await backend.close()


def links_leading_out(project: Path) -> list[str]:
    """Links in the project that resolve outside it."""
    found = []
    for root, dirs, files in os.walk(project):
        for name in dirs + files:
            path = Path(root) / name
            resolved = os.path.realpath(path)
            if path.is_symlink() and not (resolved == str(project) or resolved.startswith(f"{project}/")):
                found.append(str(path))
    return found


async def test_a_refusal_never_puts_a_session_made_name_raw_in_the_answer(
    state_dir: Path, task_group: TaskGroup, tmp_path: Path
) -> None:
    project = make_project(tmp_path / "project")
    backend, sid = await session_on(state_dir, task_group, project)
    assert backend.workspaces is not None
    hostile = "$(printf 'D\\n\\033[2KApplied 9 changes')"
    assert (await run(backend, sid, f'cd /workspace/proj && ln -s "/x/{hostile}" "{hostile}"'))[0] == 0
    applied = await backend.workspaces.apply(sid, "proj", None, False)
    assert len(applied.refused) == 1
    assert applied.refused[0].isprintable(), applied.refused
    await backend.close()


async def test_a_sparse_file_stays_sparse_on_the_host(state_dir: Path, task_group: TaskGroup, tmp_path: Path) -> None:
    # A session's sparse file costs it nothing of its disk quota: written out whole, it would fill the
    # host's disk with zeros (8 GiB an apply, as many applies as asked), quota or not.
    project = make_project(tmp_path / "project")
    backend, sid = await session_on(state_dir, task_group, project)
    assert backend.workspaces is not None
    make = "cd /workspace/proj && printf head > big && truncate -s 64M big && printf tail >> big"
    make += " && truncate -s 96M hole"
    assert (await run(backend, sid, make))[0] == 0
    applied = await backend.workspaces.apply(sid, "proj", None, False)
    assert sorted(applied.applied) == ["big", "hole"]
    big, hole = os.stat(project / "big"), os.stat(project / "hole")
    assert (big.st_size, hole.st_size) == (64 * 2**20 + 4, 96 * 2**20)
    assert big.st_blocks * 512 < 2**20
    assert hole.st_blocks * 512 < 2**20
    fd = os.open(project / "big", os.O_RDONLY)
    try:
        assert os.pread(fd, 4, 0) == b"head"
        assert os.pread(fd, 4, 32 * 2**20) == b"\0\0\0\0"
        assert os.pread(fd, 100, 64 * 2**20) == b"tail"
    finally:
        os.close(fd)
    await backend.close()


async def test_a_link_swapped_into_the_workspace_path_on_the_host_leads_nowhere(
    state_dir: Path, task_group: TaskGroup, tmp_path: Path, canaries: Canaries
) -> None:
    # The path the operator gave is checked at start; a user who can write a directory along it (their
    # home) can later put a link there. Followed, a new session would get the link's target mounted
    # (rw: writable as that directory's owner, root for /etc), and an apply would write into it.
    home = tmp_path / "home"
    project = make_project(home / "work" / "proj")
    (canaries.directory / "proj").mkdir()  # where work -> canaries would lead an apply
    canary_before = canary_state(canaries)
    backend = LocalBackend(state_dir, workspaces=[WorkspaceSpec("proj", project, "rw"), WorkspaceSpec("ov", project)])
    await backend.start(task_group)
    assert backend.workspaces is not None
    sid = (await backend.create_session(image_id="code_latest", labels={}, owner="c", workspaces=["ov"])).session_id
    assert (await run(backend, sid, "echo x > /workspace/ov/new"))[0] == 0
    os.rename(home / "work", home / "work.old")
    os.symlink(canaries.directory, home / "work")
    with pytest.raises(BackendError, match="is no longer the directory"):
        await backend.workspaces.apply(sid, "ov", None, False)
    os.unlink(home / "work")
    os.rename(home / "work.old", home / "work")
    os.rename(project, home / "proj.old")
    os.symlink(canaries.directory, project)
    with pytest.raises(BackendError, match="is no longer the directory"):
        await backend.create_session(image_id="code_latest", labels={}, owner="c", workspaces=["proj"])
    assert canary_state(canaries) == canary_before
    await backend.close()


async def test_a_link_climbing_out_through_another_link_is_refused(
    state_dir: Path, task_group: TaskGroup, tmp_path: Path
) -> None:
    # d -> . makes d/d/d the workspace root, so e -> d/d/d/../../.. is three levels above it, while
    # the target, read as text, normalizes to '.': each link looked inside on its own.
    project = make_project(tmp_path / "home" / "work" / "project")
    backend, sid = await session_on(state_dir, task_group, project)
    assert backend.workspaces is not None
    links = "cd /workspace/proj && ln -s . d && ln -s d/d/d/../../.. e && ln -s src/../README.md f"
    assert (await run(backend, sid, links))[0] == 0
    applied = await backend.workspaces.apply(sid, "proj", None, False)
    assert applied.applied == ("d",)
    assert sorted(line.split(":")[0] for line in applied.refused) == ["e", "f"]
    assert links_leading_out(project) == []
    await backend.close()
