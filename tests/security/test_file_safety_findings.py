"""Bugs the file-safety tests found, pinned (all fixed): agent crashes on deep trees, FIFOs and devices,
odd names, deep-tree deletion on the host, the agent's stderr, /proc files."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import anyio
import pytest
from mcp import Client

from agentbay_mcp.testing.calls import call
from tests.security import file_attacks as attacks

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]


# Further findings -------------------------------------------------------------------------------------


async def test_append_to_a_fifo_does_not_hang_the_session(client: Client, state_dir: Path) -> None:
    session_id = await attacks.new_session(client)
    await attacks.run(client, session_id, "mkfifo pipe")
    host_fifo = attacks.home_of(state_dir, session_id) / "pipe"
    outcome: list[attacks.Outcome] = []
    answered = anyio.Event()

    async def append() -> None:
        outcome.append(
            await attacks.attempt(client, "write_file", session_id=session_id, path="pipe", content="x", mode="append")
        )
        answered.set()

    hung = False
    async with anyio.create_task_group() as group:
        group.start_soon(append)
        with anyio.move_on_after(5):
            await answered.wait()
        if not answered.is_set():
            hung = True
            # Unblock the agent from the host: open the FIFO for reading, so its open() returns.
            reader = os.open(host_fifo, os.O_RDONLY | os.O_NONBLOCK)
            try:
                with anyio.fail_after(attacks.CALL_SECONDS):
                    await answered.wait()
            finally:
                os.close(reader)
    assert not hung, "write_file(mode='append') to a FIFO hung the session's agent"
    assert not outcome[0].ok, outcome[0]
    assert "regular file" in outcome[0].text, outcome[0]


async def test_move_from_a_device_does_not_copy_it(state_dir: Path) -> None:
    async with attacks.serve(state_dir, file_size_limit_mb=16) as client:
        session_id = await attacks.new_session(client)
        for device in ("/dev/zero", "/dev/urandom"):
            outcome = await attacks.attempt(
                client, "move_file", session_id=session_id, source=device, destination="copy"
            )
            assert not outcome.ok, outcome
            attacks.assert_clear_error(outcome)
            left = attacks.home_of(state_dir, session_id) / "copy"
            assert not left.exists(), f"move_file({device}) left {left.stat().st_size:,} bytes on the host disk"


CRASHERS = {
    # os.walk is recursive on the sandbox's Python 3.11: a 1500-level tree raises RecursionError.
    "deep_tree_search": (
        'p=""; for i in $(seq 1 1500); do p="${p}a/"; done; mkdir -p "$p"',
        "search_files",
        {"path": "/home/user", "pattern": "*.txt"},
    ),
    # shutil.move's "into itself" guard compares strings: /proc/1/root/home/. is /home, which holds the
    # destination, so copytree copies its own output until RecursionError.
    # os.makedirs is recursive too: one create_directory of 1500 missing levels raises RecursionError.
    "create_1500_levels": ("true", "create_directory", {"path": "/".join(["c"] * 1500)}),
    "move_home_into_itself": (
        "mkdir -p proj && echo x > proj/a.txt",
        "move_file",
        {"source": "/proc/1/root/home/.", "destination": "moved"},
    ),
}


@pytest.mark.parametrize("case", sorted(CRASHERS))
async def test_file_operations_that_blow_up_do_not_kill_the_session(
    state_dir: Path, case: str, deep_tree_cleanup: None
) -> None:
    setup, tool, arguments = CRASHERS[case]
    async with attacks.serve(state_dir) as client:
        session_id = await attacks.new_session(client)
        await attacks.run(client, session_id, setup)
        sleeper = await call(client, "start_process", session_id=session_id, command="sleep 300")
        outcome = await attacks.attempt(client, tool, session_id=session_id, **arguments)
        status = await attacks.attempt(
            client, "wait_process", session_id=session_id, process_id=sleeper["process_id"], timeout_ms=0
        )
        assert status.ok, f"{tool} took the session's sandbox down: {outcome}; then {status}"
        assert status.structured is not None
        assert status.structured["running"] is True, status
        if not outcome.ok:
            attacks.assert_clear_error(outcome)


async def test_a_deep_tree_does_not_break_delete_session_or_the_next_start(
    state_dir: Path, deep_tree_cleanup: None
) -> None:
    problems: list[str] = []
    async with attacks.serve(state_dir) as client:
        session_id = await attacks.new_session(client)
        for levels in (500, 1000, 1500):  # each call creates at most 500 missing levels
            await call(client, "create_directory", session_id=session_id, path="/".join(["d"] * levels))
        await call(client, "write_file", session_id=session_id, path="data.txt", content="x" * attacks.MIB)
        deleted = await attacks.attempt(client, "delete_session", session_id=session_id)
        if not deleted.ok:
            problems.append(f"delete_session failed: {deleted}")
        left = sorted(os.listdir(state_dir / "sessions"))
        if left:
            problems.append(f"left on disk after delete_session: {left}")
    try:
        async with attacks.serve(state_dir) as client:  # the next server on this state dir
            await attacks.new_session(client)
    except Exception as exc:  # whatever start-up raises is the finding
        problems.append(f"the next server on this state dir did not start: {exc!r}"[:500])
    assert not problems, problems


async def test_a_non_utf8_file_name_does_not_break_listing(client: Client) -> None:
    session_id = await attacks.new_session(client)
    await attacks.run(
        client, session_id, "mkdir raw && python3 -c \"open(b'raw/bad-\\xff-name', 'w').close()\" && touch raw/ok"
    )
    listing = await attacks.attempt(client, "list_directory", session_id=session_id, path="raw")
    assert listing.ok, listing
    found = await attacks.attempt(client, "search_files", session_id=session_id, path="raw", pattern="*")
    assert found.ok, found


async def test_a_long_but_legal_file_name_can_be_written(client: Client) -> None:
    session_id = await attacks.new_session(client)
    name = "n" * 240
    await attacks.run(client, session_id, f"echo shell > {name}")  # a legal name
    outcome = await attacks.attempt(client, "write_file", session_id=session_id, path=name, content="tool\n")
    assert outcome.ok, outcome


async def test_the_agents_stderr_is_not_a_host_file(client: Client, state_dir: Path) -> None:
    session_id = await attacks.new_session(client)
    log = state_dir / "sessions" / session_id / "sandbox.log"
    secret = f"HOST-LOG-{secrets.token_hex(12)}"
    with log.open("a") as handle:  # what the host keeps there, e.g. a crash report
        handle.write(f"{secret}\n")
    shown = []
    for path in ("/dev/stderr", "/proc/self/fd/2", "/proc/1/fd/2", "/dev/fd/2"):
        outcome = await attacks.attempt(client, "read_file", session_id=session_id, path=path)
        shown.append(outcome)
        assert secret not in outcome.text, f"a host file outside the session was read: {outcome}"
    info = await attacks.attempt(client, "get_file_info", session_id=session_id, path="/proc/self/fd/2")
    assert str(state_dir) not in info.text, f"the host state dir is revealed: {info}"


async def test_proc_files_can_be_read(client: Client) -> None:
    session_id = await attacks.new_session(client)
    version = await call(client, "read_file", session_id=session_id, path="/proc/version")
    assert "Linux" in version["content"], version
