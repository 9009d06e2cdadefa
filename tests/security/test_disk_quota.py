"""The per-session disk quota: home, /tmp and output spill files share one loop-mounted ext4 image.

Issue: "a session can write any number of files (twelve 100 MB files under a 100 MB limit, `df`
inside shows the host's free space) and fill the host's disk". These tests use a 64 MB quota and
check, on real sandboxes and real loop devices: ENOSPC past it (dd and write_file), the host file
bounded, room again after deleting, `df` inside, and that no mount or loop device outlives a session
however it ends (delete, shutdown, a SIGKILLed server reaped by the next start or `sessions reap`,
staging and trash litter).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup
from mcp import Client, StdioServerParameters
from pydantic import ValidationError

from agentbay_mcp.backends.common.server_lock import new_server_id
from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.local.agent_client import SandboxDiedError
from agentbay_mcp.backends.local.disk_quota import IMAGE_NAME, DiskQuota, unavailable_reason
from agentbay_mcp.backends.local.layout import StateDir, new_session_id, remove_tree
from agentbay_mcp.backends.local.sandbox import SandboxOptions, SessionLimits
from agentbay_mcp.backends.records import ShellCommand
from agentbay_mcp.cli import build_parser, settings_from_args
from agentbay_mcp.cli.doctor import check_disk_quota
from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import call, call_error
from agentbay_mcp.testing.servers import session_dirs, stdio_params
from agentbay_mcp.testing.sessions_cli import sessions_cli
from agentbay_mcp.testing.stdio import RawStdioServer, sessions_dir_entries
from agentbay_mcp.testing.waiting import eventually

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.skipif(unavailable_reason() is not None, reason=f"no loop mounts here: {unavailable_reason()}"),
]

MB = 1024 * 1024
QUOTA_MB = 64
CALL_TIMEOUT = 60


def mounts_under(state_dir: Path) -> list[str]:
    """Mount points of this mount namespace inside the state dir (read independently of disk_quota)."""
    root = str(state_dir.resolve())
    with open("/proc/self/mounts") as handle:
        return [line.split()[1] for line in handle if line.split()[1].startswith(root)]


def loop_devices_of(state_dir: Path) -> list[str]:
    """Loop devices whose backing file is (or was, before it was deleted) inside the state dir."""
    root = str(state_dir.resolve())
    found = []
    for backing in Path("/sys/block").glob("loop*/loop/backing_file"):
        try:
            if backing.read_text().startswith(root):
                found.append(backing.parent.parent.name)
        except OSError:
            continue  # detached while we looked
    return found


async def nothing_mounted(state_dir: Path) -> bool:
    """No mount and no loop device left for the state dir (a dying sandbox lets go within moments)."""
    return await eventually(lambda: not mounts_under(state_dir) and not loop_devices_of(state_dir), timeout=15)


def owned_by_nobody(state_dir: Path) -> Path:
    """Make the state dir nobody's; returns where that server's stderr goes."""
    state_dir.mkdir(parents=True)
    os.chown(state_dir, 65534, 65534)
    return state_dir.parent / "nobody-server.log"


def read_text(path: Path) -> str:
    return path.read_text()


def quota_settings(state_dir: Path, **extra: Any) -> Settings:
    return Settings(state_dir=state_dir, disk_limit_mb=QUOTA_MB, **extra)


async def run(client: Client, session_id: str, command: str) -> dict[str, Any]:
    with anyio.fail_after(CALL_TIMEOUT):
        return await call(client, "execute_command", session_id=session_id, command=command)


def image_bytes_on_host(state_dir: Path, session_id: str) -> int:
    return os.stat(state_dir / "sessions" / session_id / IMAGE_NAME).st_blocks * 512


# The quota inside a session ----------------------------------------------------------------------


async def test_writes_past_the_quota_fail_and_deleting_files_makes_room(state_dir: Path) -> None:
    async with Client(build_server(quota_settings(state_dir))) as client:
        session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]

        # df inside shows the quota, for home and /tmp alike (one file system), not the host's disk.
        df = await run(client, session_id, "df -Pk /home/user /tmp | tail -n 2")
        totals = {int(line.split()[1]) for line in df["stdout"].splitlines()}
        assert len(totals) == 1, df
        assert 48 * 1024 < totals.pop() <= QUOTA_MB * 1024, df

        # The case: many files each under --file-size-limit-mb; together they stop at the quota.
        dd = await run(
            client,
            session_id,
            "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do "
            "dd if=/dev/urandom of=/home/user/f$i bs=1M count=8 status=none || exit 7; done",
        )
        assert dd["exit_code"] == 7, dd
        assert "No space left on device" in dd["stderr"]
        tmp = await run(client, session_id, "dd if=/dev/zero of=/tmp/more bs=1M count=4 status=none")
        assert tmp["exit_code"] != 0, "/tmp must share the quota"
        assert "No space left on device" in tmp["stderr"]
        assert image_bytes_on_host(state_dir, session_id) <= (QUOTA_MB + 1) * MB

        # write_file names the quota and what to do.
        message = await call_error(
            client, "write_file", session_id=session_id, path="notes.txt", content="x" * (2 * MB)
        )
        assert f"disk quota of {QUOTA_MB} MB is full" in message
        assert "delete files" in message

        # Deleting makes room again, and (discard) the host file shrinks with it.
        await run(client, session_id, "rm -f /home/user/f* /tmp/more")
        written = await call(client, "write_file", session_id=session_id, path="notes.txt", content="x" * (2 * MB))
        assert written["bytes_written"] == 2 * MB
        again = await run(client, session_id, "dd if=/dev/zero of=/tmp/again bs=1M count=16 status=none && echo ok")
        assert again["stdout"] == "ok\n", again
        assert await eventually(lambda: image_bytes_on_host(state_dir, session_id) < 32 * MB)

        await call(client, "delete_session", session_id=session_id)
        assert await nothing_mounted(state_dir)
        assert session_dirs(state_dir) == []
        assert sessions_dir_entries(state_dir) == []


async def test_long_command_output_counts_against_the_quota(state_dir: Path) -> None:
    async with Client(build_server(quota_settings(state_dir))) as client:
        session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]
        # Output beyond the cap is spilled to /tmp/.agentbay inside the session: on its file system.
        await run(client, session_id, "head -c 20000000 /dev/zero | tr '\\0' a")
        used = await run(client, session_id, "du -sk /tmp/.agentbay | cut -f1; df -Pk /tmp | tail -n 1")
        spilled_kb, df_line = used["stdout"].splitlines()
        assert int(spilled_kb) >= 19000
        assert int(df_line.split()[2]) >= 19000, "the spill file is not on the session's file system"


async def test_files_survive_a_sandbox_restart_on_the_quota_disk(state_dir: Path, task_group: TaskGroup) -> None:
    backend = LocalBackend(state_dir, sandbox=SandboxOptions(limits=SessionLimits(disk_bytes=QUOTA_MB * MB)))
    await backend.start(task_group)
    assert backend.disk_quota is not None
    record = await backend.create_session(image_id="code_latest", labels={}, owner="c")
    session_id = record.session_id

    async def sh(command: str) -> bytes:
        with anyio.fail_after(CALL_TIMEOUT):
            outcome = await backend.processes.run_process(
                session_id, ShellCommand(command=command), wait_ms=20_000, cap=65536
            )
        assert outcome.summary is not None
        return outcome.summary["stdout"].head

    assert await sh("echo kept > f; echo tmp > /tmp/t; echo ok") == b"ok\n"
    os.kill(backend._sandboxes[session_id].child_pid, signal.SIGKILL)
    # A call racing the death may fail with "the sandbox is gone ... retry"; the next one restarts it.
    with contextlib.suppress(SandboxDiedError):
        await anyio.sleep(0.2)
        await sh("true")
    out = await sh("cat f /tmp/t; df -Pk /home/user | tail -n 1")
    lines = out.decode().splitlines()
    assert lines[:2] == ["kept", "tmp"]
    assert int(lines[2].split()[1]) <= QUOTA_MB * 1024, "the restarted sandbox must still be on the quota disk"
    assert mounts_under(state_dir), "a restart keeps the session's mount"
    await backend.delete_session(session_id)
    await backend.close()
    assert await nothing_mounted(state_dir)


def test_images_are_sparse_and_need_no_lazy_inode_init(state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    quota = DiskQuota.prepare(state_dir, 4096 * MB)
    # Every group's inode table is zeroed in the template, so the kernel's lazy-init thread never
    # writes gigabytes of zeros into each session's image after its mount.
    groups = subprocess.run(
        ["dumpe2fs", str(quota.template)], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert groups.count("ITABLE_ZEROED") == len(re.findall(r"^Group \d+:", groups, re.MULTILINE)) > 0
    session = state_dir / "s"
    session.mkdir()
    quota.provision(session, 65534)
    try:
        assert os.stat(session / IMAGE_NAME).st_size == 4096 * MB
        assert os.stat(session / IMAGE_NAME).st_blocks * 512 < 8 * MB, "the copy must stay sparse"
        assert (session / "home").resolve() == (session / "disk" / "home").resolve()
        assert (session / "home").stat().st_uid == 65534
    finally:
        remove_tree(session)
    assert mounts_under(state_dir) == []


# Every ending detaches the loop device ----------------------------------------------------------


async def test_server_shutdown_leaves_no_mount_or_loop_device(state_dir: Path) -> None:
    async with Client(build_server(quota_settings(state_dir))) as client:
        for _ in range(3):
            session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]
            await run(client, session_id, "echo data > file")
        assert len(mounts_under(state_dir)) == 3
        assert len(loop_devices_of(state_dir)) == 3
    assert await nothing_mounted(state_dir)
    assert session_dirs(state_dir) == []


async def test_close_detaches_disks_of_sessions_it_could_not_release(state_dir: Path, task_group: TaskGroup) -> None:
    backend = LocalBackend(state_dir, sandbox=SandboxOptions(limits=SessionLimits(disk_bytes=QUOTA_MB * MB)))
    await backend.start(task_group)
    record = await backend.create_session(image_id="code_latest", labels={}, owner="c")
    await backend.close()  # as when the release at shutdown ran out of time: the session stays for reaping
    assert session_dirs(state_dir) == [record.session_id]
    assert await nothing_mounted(state_dir)


@pytest.mark.parametrize("reaper", ["next_start", "sessions_reap"])
async def test_a_sigkilled_servers_disks_are_detached_when_reaped(state_dir: Path, reaper: str) -> None:
    with RawStdioServer(state_dir, "--disk-limit-mb", str(QUOTA_MB)) as server:
        server.initialize()
        orphans = server.create_sessions(2, image_id="code_latest")
        server.kill()
    assert await eventually(lambda: len(loop_devices_of(state_dir)) == 2), "the kill left the mounts behind"
    assert len(mounts_under(state_dir)) == 2
    if reaper == "next_start":
        async with Client(stdio_params(state_dir, "--disk-limit-mb", str(QUOTA_MB))) as client:
            assert (await call(client, "list_sessions"))["total_count"] == 0  # answered after start-up reaping
            assert session_dirs(state_dir) == []
    else:
        done = await anyio.to_thread.run_sync(sessions_cli, state_dir, "reap")
        assert done.returncode == 0, done.stderr
        assert all(f"reaped {session_id}" in done.stdout for session_id in orphans)
    assert await nothing_mounted(state_dir)
    assert sessions_dir_entries(state_dir) == []


async def test_staging_and_trash_litter_with_a_mounted_disk_is_reaped(state_dir: Path, task_group: TaskGroup) -> None:
    state = StateDir(state_dir)
    state.ensure()
    quota = DiskQuota.prepare(state_dir, QUOTA_MB * MB)
    staging = state.staging_dir(new_server_id(), new_session_id())  # of a server that is gone
    trash = state.sessions / ".trash-session-0-dead"  # a delete interrupted between rename and unmount
    for litter in (staging, trash):
        litter.mkdir()
        quota.provision(litter, 65534)
        (litter / "home" / "file").write_bytes(b"data")
    assert len(mounts_under(state_dir)) == 2

    backend = LocalBackend(state_dir, sandbox=SandboxOptions(limits=SessionLimits(disk_bytes=QUOTA_MB * MB)))
    await backend.start(task_group)  # reaps at start-up
    assert sessions_dir_entries(state_dir) == []
    await backend.close()
    assert await nothing_mounted(state_dir)


# Where it cannot be enforced, and the knobs --------------------------------------------------------


async def test_no_quota_without_bubblewrap_isolation_says_so_once(
    state_dir: Path, task_group: TaskGroup, caplog: pytest.LogCaptureFixture
) -> None:
    options = SandboxOptions(isolation="none", limits=SessionLimits(disk_bytes=QUOTA_MB * MB))
    backend = LocalBackend(state_dir, sandbox=options)
    with caplog.at_level(logging.WARNING, logger="agentbay_mcp.backends.local.backend"):
        await backend.start(task_group)
        record = await backend.create_session(image_id="code_latest", labels={}, owner="c")
    assert backend.disk_quota is None
    warnings = [r.getMessage() for r in caplog.records if "disk quota" in r.getMessage()]
    assert len(warnings) == 1
    assert "not enforced" in warnings[0]
    assert mounts_under(state_dir) == []
    assert (state_dir / "sessions" / record.session_id / "home").is_dir()
    await backend.delete_session(record.session_id)
    await backend.close()


async def test_a_server_that_is_not_root_runs_sessions_without_a_quota_and_says_so(state_dir: Path) -> None:
    """A real server as `nobody` (bwrap uses an unprivileged user namespace): sessions work, without a quota."""
    log = owned_by_nobody(state_dir)
    server = (
        f"exec setpriv --reuid=65534 --regid=65534 --clear-groups -- {sys.executable} -m agentbay_mcp "
        f"--disk-limit-mb {QUOTA_MB} 2>>{log}"
    )
    env = {"AGENTBAY_MCP_STATE_DIR": str(state_dir), "HOME": str(state_dir), "PATH": os.environ["PATH"]}
    with anyio.fail_after(CALL_TIMEOUT):
        async with Client(StdioServerParameters(command="sh", args=["-c", server], env=env)) as client:
            session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]
            df = await run(client, session_id, "df -Pk /home/user | tail -n 1")
            assert int(df["stdout"].split()[1]) > 2 * QUOTA_MB * 1024, "without root there is no quota file system"
            assert mounts_under(state_dir) == []
    text = read_text(log)
    warnings = [line for line in text.splitlines() if "disk quota" in line]
    assert len(warnings) == 1, text
    assert "NOT enforced: the server is not root" in warnings[0]
    assert "fix: run the server as root" in warnings[0]


async def test_zero_turns_the_quota_off_silently(
    state_dir: Path, task_group: TaskGroup, caplog: pytest.LogCaptureFixture
) -> None:
    backend = LocalBackend(state_dir, sandbox=SandboxOptions(limits=SessionLimits(disk_bytes=0)))
    with caplog.at_level(logging.WARNING):
        await backend.start(task_group)
        record = await backend.create_session(image_id="code_latest", labels={}, owner="c")
    assert backend.disk_quota is None
    assert not [r for r in caplog.records if "disk quota" in r.getMessage()]
    assert mounts_under(state_dir) == []
    assert not (state_dir / "sessions" / record.session_id / "home").is_symlink()
    await backend.delete_session(record.session_id)
    await backend.close()


def test_disk_limit_setting_flag_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings(state_dir=tmp_path).disk_limit_mb == 4096
    monkeypatch.setenv("AGENTBAY_MCP_DISK_LIMIT_MB", "512")
    assert Settings(state_dir=tmp_path).disk_limit_mb == 512
    args = build_parser().parse_args(["serve", "--disk-limit-mb", "128"])
    assert settings_from_args(args).disk_limit_mb == 128  # the flag beats the environment
    assert Settings(state_dir=tmp_path, disk_limit_mb=0).disk_limit_mb == 0
    with pytest.raises(ValidationError, match="at least 16 MB"):
        Settings(state_dir=tmp_path, disk_limit_mb=8)


def test_doctor_reports_the_quota(state_dir: Path) -> None:
    state_dir.mkdir(parents=True)
    ok = check_disk_quota(quota_settings(state_dir))
    assert ok.status == "OK"
    assert f"{QUOTA_MB} MB" in ok.detail
    assert mounts_under(state_dir) == [], "the doctor's probe mount must not stay"
    off = check_disk_quota(Settings(state_dir=state_dir, disk_limit_mb=0))
    assert off.status == "WARN"
    assert "fill this host's disk" in off.detail
    assert off.fix
    unconfined = check_disk_quota(quota_settings(state_dir, isolation="none"))
    assert unconfined.status == "WARN"
    assert "--isolation none" in unconfined.detail
