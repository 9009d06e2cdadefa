"""No set-id file reaches a host directory through a workspace.

In `rw` mode what the sandbox user creates is owned on the host by the directory's owner (the
id-mapped mount), and nosuid on the sandbox's mounts does not apply to the host's own path: a
set-uid copy of a shell made there would run as that owner (root, for a root-owned project) for
anyone on the host who reaches the directory. Every way of setting the bits is tried.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pytest
from anyio.abc import TaskGroup

from agentbay_mcp.backends.common.workspace_specs import WorkspaceSpec
from agentbay_mcp.backends.local import LocalBackend
from tests.e2e.test_workspaces import make_project, run

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(os.geteuid() != 0, reason="workspaces need a root server (id-mapped mounts)"),
]

SET_ID = r"""
import ctypes, os, stat
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def raw(result):
    if result < 0:
        raise OSError(ctypes.get_errno(), "")
    return result
def attempt(name, call):
    try:
        call()
        print(name, "ALLOWED")
    except OSError as exc:
        print(name, "refused", exc.errno)
os.chdir("/workspace/proj")
for name in ("chmod", "fchmod", "fchmodat", "fchmodat2", "setgid"):
    open(name, "w").close()
top = os.open(".", os.O_RDONLY)
attempt("chmod", lambda: os.chmod("chmod", 0o4755))
attempt("setgid", lambda: os.chmod("setgid", 0o2755))
attempt("fchmod", lambda: os.fchmod(os.open("fchmod", os.O_RDONLY), 0o4755))
attempt("fchmodat", lambda: os.chmod("fchmodat", 0o6755, dir_fd=top))
attempt("fchmodat2", lambda: raw(libc.syscall(452, top, b"fchmodat2", 0o4755, 0)))
attempt("open", lambda: os.open("open", os.O_WRONLY | os.O_CREAT, 0o4755))
attempt("creat", lambda: raw(libc.creat(b"creat", 0o4755)))
attempt("mknod", lambda: os.mknod("mknod", stat.S_IFREG | 0o4755))
attempt("tmpfile", lambda: os.open(".", os.O_WRONLY | os.O_TMPFILE, 0o4755))
how = ctypes.create_string_buffer(24)
attempt("openat2", lambda: raw(libc.syscall(437, top, b"openat2", how, 24)))
attempt("io_uring_setup", lambda: raw(libc.syscall(425, 8, ctypes.create_string_buffer(120))))
# What stays allowed: plain modes, and a mode argument an open that creates nothing ignores.
os.close(os.open("chmod", os.O_RDONLY, 0o4755))
os.chmod("chmod", 0o755)
print("plain", oct(os.stat("chmod").st_mode & 0o7777))
"""


async def test_an_rw_workspace_never_gets_a_set_id_file(state_dir: Path, task_group: TaskGroup, tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    backend = LocalBackend(state_dir, workspaces=[WorkspaceSpec("proj", project, "rw")])
    await backend.start(task_group)
    sid = (await backend.create_session(image_id="code_latest", labels={}, owner="c", workspaces=["proj"])).session_id
    (project / "script.py").write_text(SET_ID)
    code, out = await run(backend, sid, "python3 /workspace/proj/script.py")
    assert code == 0, out
    results = dict(line.split(" ", 1) for line in out.splitlines())
    assert results["plain"] == "0o755"  # plain modes still work
    set_id = [
        str(path.relative_to(project))
        for path in project.rglob("*")
        if path.lstat().st_mode & (stat.S_ISUID | stat.S_ISGID)
    ]
    assert set_id == [], out
    assert {name: result for name, result in results.items() if result == "ALLOWED"} == {}
    assert results["openat2"] == results["io_uring_setup"] == f"refused {errno.ENOSYS}"
    assert results["chmod"] == f"refused {errno.EPERM}"
    await backend.close()


async def test_writing_a_set_id_file_of_the_project_keeps_its_mode_but_not_the_bits(
    state_dir: Path, task_group: TaskGroup, tmp_path: Path
) -> None:
    # write_file once re-created an edited file with all its mode bits, set-uid included: new content
    # in a set-uid file of the project's owner. Now the filter refuses those bits, so they are left out.
    project = make_project(tmp_path / "project")
    (project / "tool").write_text("#!/bin/sh\n")
    (project / "tool").chmod(0o4755)
    backend = LocalBackend(state_dir, workspaces=[WorkspaceSpec("proj", project, "rw")])
    await backend.start(task_group)
    sid = (await backend.create_session(image_id="code_latest", labels={}, owner="c", workspaces=["proj"])).session_id
    await backend.files.write_file(sid, "/workspace/proj/tool", b"#!/bin/sh\nid\n", "overwrite")
    assert (project / "tool").read_bytes() == b"#!/bin/sh\nid\n"
    assert stat.S_IMODE((project / "tool").stat().st_mode) == 0o755
    await backend.close()
