"""Command output past its time and size: a timed-out command returns what it printed (capped, with
its full output file), and background processes keep a ring of recent output read with cursors;
older output is dropped and reported as dropped_bytes."""

from __future__ import annotations

import time
from pathlib import Path

import anyio
import pytest
from mcp import Client

from agentbay_mcp.testing.calls import call_error
from tests.e2e import command_output_support as support

pytestmark = pytest.mark.anyio


# Timeouts ----------------------------------------------------------------------------------------------

TIMEOUT_CASES = {
    "lines": ("echo start; echo err >&2; sleep 30", "start\n", "err\n", 15),
    "no-newline": ("printf partial; printf e >&2; sleep 30", "partial", "e", 15),
    # sh and its sleep ignore SIGTERM: the SIGKILL after the grace must still end it, output kept.
    "ignores-sigterm": ("trap '' TERM; echo start; sleep 30", "start\n", "", 9),
}


@pytest.mark.parametrize("kind", list(TIMEOUT_CASES))
async def test_timed_out_command_returns_the_output_it_printed(client: Client, kind: str) -> None:
    command, stdout, stderr, signum = TIMEOUT_CASES[kind]
    session_id = await support.new_session(client)
    started = time.monotonic()
    result = await support.execute(client, session_id, command, timeout_ms=1000)
    took = time.monotonic() - started

    assert result["timed_out"] is True
    assert result["stdout"] == stdout
    assert result["stderr"] == stderr
    assert result["stdout_bytes"] == len(stdout)
    assert result["stderr_bytes"] == len(stderr)
    assert result["exit_code"] == 128 + signum
    assert "Timed out after 1000 ms" in result["message"]
    assert 1.0 <= took < 6.0, f"took {took:.1f} s"
    assert 1000 <= result["duration_ms"] < 6000
    # The session is fine afterwards, with nothing of the command left running.
    after = await support.execute(client, session_id, "cat /proc/[0-9]*/comm 2>/dev/null | grep -c '^sleep$' || true")
    assert after["stdout"].strip() == "0"


async def test_timed_out_command_past_the_cap_returns_capped_output_and_full_file(
    client: Client, state_dir: Path
) -> None:
    session_id = await support.new_session(client)
    result = await support.execute(
        client, session_id, "head -c 200000 /dev/zero | tr '\\0' b; echo; echo last-line; sleep 30", timeout_ms=1500
    )
    total = 200_000 + len("\nlast-line\n")
    assert result["timed_out"] is True
    assert result["stdout_truncated"] is True
    assert result["stdout_bytes"] == total
    capped = support.split_capped(result["stdout"])
    assert capped.total == total
    assert capped.head.startswith("bbbb")
    assert capped.tail.endswith("b\nlast-line\n")
    assert result["full_stdout_path"]
    assert support.host_path(state_dir, session_id, result["full_stdout_path"]).stat().st_size == total


# Background processes: ring, dropped bytes, cursors ------------------------------------------------------

#: About 3 MB of distinct lines: far more than a background process keeps.
BACKGROUND_LINES = 450_000


async def _wait_for_stdout_bytes(client: Client, session_id: str, process_id: str, total: int) -> None:
    with anyio.fail_after(30):
        while True:
            status = await support.tool(
                client, "wait_process", session_id=session_id, process_id=process_id, timeout_ms=50
            )
            if status["stdout_bytes"] >= total:
                assert status["stdout_bytes"] == total
                return


async def test_background_reads_after_overflow_report_dropped_bytes_and_keep_the_newest(client: Client) -> None:
    expected = support.numbered_lines(BACKGROUND_LINES)
    assert len(expected) > 3_000_000
    session_id = await support.new_session(client)
    process = await support.tool(
        client,
        "start_process",
        session_id=session_id,
        command=f'seq 1 {BACKGROUND_LINES}; read x; echo "after:$x"; read y',
    )
    process_id = process["process_id"]
    await _wait_for_stdout_bytes(client, session_id, process_id, len(expected))

    # From the start: what was dropped is reported, and the text is the kept output from there on.
    first = await support.tool(client, "read_process_output", session_id=session_id, process_id=process_id)
    dropped = first["dropped_bytes"]
    assert dropped > 0
    assert first["stdout"].encode() == expected[dropped : dropped + len(first["stdout"].encode())]
    assert first["cursor"] == f"{dropped + len(first['stdout'].encode())}:0"
    assert first["status"]["running"] is True

    # Reading on until `more` is false returns exactly the newest output, up to the real end.
    kept = first["stdout"].encode()
    cursor, more = first["cursor"], first["more"]
    reads = 1
    while more:
        chunk = await support.tool(
            client, "read_process_output", session_id=session_id, process_id=process_id, cursor=cursor
        )
        assert chunk["dropped_bytes"] == 0
        kept += chunk["stdout"].encode()
        cursor, more = chunk["cursor"], chunk["more"]
        reads += 1
        assert reads < 100
    assert kept == expected[dropped:]
    assert cursor == f"{len(expected)}:0"

    # A stale cursor (the start again) still says what it missed.
    again = await support.tool(
        client, "read_process_output", session_id=session_id, process_id=process_id, cursor="0:0"
    )
    assert again["dropped_bytes"] == dropped

    # With the latest cursor: nothing old comes back, only what is printed after it.
    nothing = await support.tool(
        client, "read_process_output", session_id=session_id, process_id=process_id, cursor=cursor
    )
    assert (nothing["stdout"], nothing["stderr"], nothing["more"], nothing["dropped_bytes"]) == ("", "", False, 0)
    assert nothing["cursor"] == cursor
    await support.tool(client, "write_process_input", session_id=session_id, process_id=process_id, data="hello\n")
    new = await support.tool(
        client, "read_process_output", session_id=session_id, process_id=process_id, cursor=cursor, wait_ms=10000
    )
    assert new["stdout"] == "after:hello\n"
    assert new["dropped_bytes"] == 0
    assert new["cursor"] == f"{len(expected) + len(b'after:hello' + bytes([10]))}:0"


@pytest.mark.parametrize("cursor", ["garbage", "1:2:3", "-1:0", "12", "a:b", " 0:0"])
async def test_malformed_cursor_is_a_clear_error(client: Client, cursor: str) -> None:
    session_id = await support.new_session(client)
    process = await support.tool(client, "start_process", session_id=session_id, command="echo hi; sleep 30")
    process_id = process["process_id"]

    with anyio.fail_after(support.CALL_TIMEOUT):
        message = await call_error(
            client, "read_process_output", session_id=session_id, process_id=process_id, cursor=cursor
        )
    assert f"cursor {cursor!r} is not valid" in message
    assert "omit it" in message  # says how to recover
    # The process is untouched: a read without a cursor still works.
    read = await support.tool(client, "read_process_output", session_id=session_id, process_id=process_id, wait_ms=5000)
    assert read["stdout"] == "hi\n"
