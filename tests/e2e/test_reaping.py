"""Sessions of servers that died without cleaning up: reaped at the next start-up or by the operator.

Each server holds an flock on `<state>/servers/<server_id>.lock` for its whole life; the kernel drops
it however the process dies. A session whose server's lock is free is an orphan, and only then.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client

from agentbay_mcp.backends.local.layout import new_session_id
from agentbay_mcp.testing.calls import call, call_error
from agentbay_mcp.testing.servers import server_env, session_dirs, stdio_params
from agentbay_mcp.testing.sessions_cli import killed_server, list_json, sessions_cli
from agentbay_mcp.testing.stdio import RawStdioServer, lock_files, sessions_dir_entries


def server_id_of(state_dir: Path, session_id: str) -> str:
    """The server a session's record names as its owner."""
    record = json.loads((state_dir / "sessions" / session_id / "meta.json").read_text())
    return str(record["server_id"])


# Start-up reaping ------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_sigkilled_servers_sessions_are_reaped_when_the_next_server_starts(state_dir: Path, mode: str) -> None:
    orphans = killed_server(state_dir, 5, labels={"doomed": "yes"})
    # The kill gave the server no chance: its sessions and its lock file are still there.
    assert session_dirs(state_dir) == sorted(orphans)
    dead = server_id_of(state_dir, orphans[0])
    assert lock_files(state_dir) == [f"{dead}.lock"]

    async with Client(stdio_params(state_dir), mode=mode) as client:
        listed = await call(client, "list_sessions")  # answered only once the lifespan has started
        assert listed["total_count"] == 0
        assert session_dirs(state_dir) == []
        assert sessions_dir_entries(state_dir) == [], "trash litter left by the reaper"
        assert f"{dead}.lock" not in lock_files(state_dir), "the dead server's lock file was not cleaned up"
        assert "not found" in await call_error(client, "get_session", session_id=orphans[0])
        fresh = await call(client, "create_session")
        assert session_dirs(state_dir) == [fresh["session_id"]]
    assert session_dirs(state_dir) == []
    assert lock_files(state_dir) == []


def test_reaping_spares_a_live_neighbour(state_dir: Path) -> None:
    with RawStdioServer(state_dir) as a:
        a.initialize()
        a_ids = a.create_sessions(3, labels={"server": "a"})
        b_ids = killed_server(state_dir, 3, labels={"server": "b"})
        a_server, b_server = server_id_of(state_dir, a_ids[0]), server_id_of(state_dir, b_ids[0])
        assert a_server != b_server
        assert session_dirs(state_dir) == sorted(a_ids + b_ids)
        # A creation in flight on each server: A's may be finishing right now and must be left alone.
        a_staging = state_dir / "sessions" / f".staging-{a_server}-{new_session_id()}"
        b_staging = state_dir / "sessions" / f".staging-{b_server}-{new_session_id()}"
        a_staging.mkdir()
        b_staging.mkdir()

        with RawStdioServer(state_dir) as c:
            c.initialize()
            assert session_dirs(state_dir) == sorted(a_ids)
            assert a_staging.exists(), "the reaper removed a live server's staging dir"
            assert not b_staging.exists()
            assert f"{a_server}.lock" in lock_files(state_dir)
            assert f"{b_server}.lock" not in lock_files(state_dir)
            assert "reaped 3 orphaned session(s)" in c.stderr_text
            # C sees none of A's sessions: they belong to A's conversation.
            assert c.call_tool("list_sessions")["total_count"] == 0
            assert "not found" in c.call_tool_error("get_session", session_id=a_ids[0])
            c.close_stdin()
            assert c.wait_exit(timeout=10) == 0, c.stderr_text

        # A noticed nothing: every session still works through A's own pipe.
        for session_id in a_ids:
            assert a.call_tool("get_session", session_id=session_id)["labels"] == {"server": "a"}
        listed = a.call_tool("list_sessions")
        assert [s["session_id"] for s in listed["sessions"]] == a_ids
        assert "not found" in a.call_tool_error("get_session", session_id=b_ids[0])
        a.close_stdin()
        assert a.wait_exit(timeout=10) == 0, a.stderr_text
    assert session_dirs(state_dir) == []
    assert lock_files(state_dir) == []


# Operator commands -----------------------------------------------------------------------------


def test_operator_list_and_reap_next_to_a_live_server(state_dir: Path) -> None:
    with RawStdioServer(state_dir) as a:
        a.initialize()
        a_ids = [
            a.call_tool("create_session", labels={"team": "red"})["session_id"],
            a.call_tool("create_session", image_id="code_latest")["session_id"],
        ]
        b_ids = killed_server(state_dir, 2, image_id="code_latest", labels={"team": "blue", "tier": "2"})
        a_server, b_server = server_id_of(state_dir, a_ids[0]), server_id_of(state_dir, b_ids[0])

        rows = list_json(state_dir)
        assert set(rows) == set(a_ids + b_ids), "every server's sessions are listed"
        a_owner, b_owner = rows[a_ids[0]]["owner"], rows[b_ids[0]]["owner"]
        assert a_owner.startswith("conn:")
        assert b_owner.startswith("conn:")
        assert a_owner != b_owner
        expected = dict.fromkeys(a_ids, (a_owner, a_server, True, a.pid))
        expected |= dict.fromkeys(b_ids, (b_owner, b_server, False, None))
        for session_id, want in expected.items():
            row = rows[session_id]
            assert (row["owner"], row["server_id"], row["server_alive"], row["server_pid"]) == want
        for session_id in b_ids:
            row = rows[session_id]
            assert (row["image_id"], row["labels"]) == ("code_latest", {"team": "blue", "tier": "2"})
        assert (rows[a_ids[0]]["image_id"], rows[a_ids[0]]["labels"]) == ("linux_latest", {"team": "red"})
        assert (rows[a_ids[1]]["image_id"], rows[a_ids[1]]["labels"]) == ("code_latest", {})

        table = sessions_cli(state_dir, "list")
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        assert lines[0].split()[:3] == ["SESSION", "OWNER", "SERVER"]
        by_id = {line.split()[0]: line for line in lines[1:-1]}
        assert set(by_id) == set(a_ids + b_ids)
        assert re.search(rf"\s{a.pid}\s+linux_latest\s.*team=red$", by_id[a_ids[0]])
        assert re.search(rf"\s{a.pid}\s+code_latest\s.*\s-$", by_id[a_ids[1]])
        for session_id in b_ids:
            assert re.search(r"\sgone\s+code_latest\s.*team=blue,tier=2$", by_id[session_id])
        assert lines[-1].startswith("4 session(s); 2 orphaned")

        reap = sessions_cli(state_dir, "reap")
        assert reap.returncode == 0, reap.stderr
        assert sorted(re.findall(r"^reaped (session-\w+)$", reap.stdout, re.MULTILINE)) == sorted(b_ids)
        assert reap.stdout.splitlines()[-1] == f"2 orphaned session(s) reaped from {state_dir}."
        assert session_dirs(state_dir) == sorted(a_ids)
        assert sessions_dir_entries(state_dir) == sorted(a_ids)
        assert lock_files(state_dir) == [f"{a_server}.lock"], "a live server's lock must survive list and reap"

        for session_id in a_ids:  # still A's, still usable
            assert a.call_tool("get_session", session_id=session_id)["session_id"] == session_id
        again = sessions_cli(state_dir, "reap")
        assert again.returncode == 0, again.stderr
        assert again.stdout.splitlines() == [f"0 orphaned session(s) reaped from {state_dir}."]
        assert set(list_json(state_dir)) == set(a_ids)
        a.close_stdin()
        assert a.wait_exit(timeout=10) == 0, a.stderr_text
    assert session_dirs(state_dir) == []


def test_operator_reap_with_no_server_running_removes_everything(state_dir: Path) -> None:
    # Two servers up at once, then both killed (a server started after one kill would reap its orphans).
    with RawStdioServer(state_dir) as one, RawStdioServer(state_dir) as two:
        one.initialize()
        two.initialize()
        first = one.create_sessions(2)
        second = two.create_sessions(3, labels={"batch": "2"})
        one.kill()
        two.kill()
    (state_dir / "sessions" / f".trash-{new_session_id()}-0badc0de").mkdir()  # a delete cut short
    assert session_dirs(state_dir) == sorted(first + second)

    rows = list_json(state_dir)
    assert set(rows) == set(first + second)
    assert not any(row["server_alive"] for row in rows.values())
    assert {row["server_pid"] for row in rows.values()} == {None}
    table = sessions_cli(state_dir, "list")
    assert table.returncode == 0, table.stderr
    assert table.stdout.splitlines()[-1].startswith("5 session(s); 5 orphaned")

    reap = sessions_cli(state_dir, "reap")
    assert reap.returncode == 0, reap.stderr
    assert sorted(re.findall(r"^reaped (session-\w+)$", reap.stdout, re.MULTILINE)) == sorted(first + second)
    assert reap.stdout.splitlines()[-1] == f"5 orphaned session(s) reaped from {state_dir}."
    assert sessions_dir_entries(state_dir) == []
    assert lock_files(state_dir) == []

    after = sessions_cli(state_dir, "list")
    assert after.returncode == 0, after.stderr
    assert after.stdout.strip() == f"No sessions in {state_dir}."


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_operator_commands_on_an_empty_state_dir(tmp_path: Path, kind: str) -> None:
    state_dir = tmp_path / "state"
    if kind == "empty":
        state_dir.mkdir()

    listing = sessions_cli(state_dir, "list")
    assert listing.returncode == 0, listing.stderr
    assert listing.stdout.strip() == f"No sessions in {state_dir}."
    assert list_json(state_dir) == {}
    reap = sessions_cli(state_dir, "reap")
    assert reap.returncode == 0, reap.stderr
    assert reap.stdout.strip() == f"0 orphaned session(s) reaped from {state_dir}."
    # An operator's look must not create anything.
    assert state_dir.exists() == (kind == "empty")
    assert not (tmp_path / "decoy-state").exists()


@pytest.mark.parametrize("argv", [("list", "--json"), ("reap",)], ids=["list", "reap"])
def test_state_dir_flag_after_the_action(state_dir: Path, argv: tuple[str, ...]) -> None:
    orphans = killed_server(state_dir, 1)
    done = subprocess.run(
        [sys.executable, "-m", "agentbay_mcp", "sessions", *argv, "--state-dir", str(state_dir)],
        env=server_env(state_dir.parent / "decoy-state"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    if argv[0] == "list":
        assert [row["session_id"] for row in json.loads(done.stdout)["sessions"]] == orphans
    else:
        assert done.stdout.splitlines() == [
            f"reaped {orphans[0]}",
            f"1 orphaned session(s) reaped from {state_dir}.",
        ]
        assert session_dirs(state_dir) == []
