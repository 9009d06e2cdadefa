"""Huge files through the file tools: a 2 GB sparse file, 100,000-line files, lines and UTF-8 chunks, size
limits and a full disk. Real MCP tools on real bubblewrap sandboxes; memory and time stay bounded."""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from mcp import Client

from agentbay_mcp.testing.calls import call, call_error, unwrapped
from agentbay_mcp.testing.rss import PeakRss
from agentbay_mcp.testing.servers import stdio_params
from tests.security import file_attacks as attacks

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]


# 3. A 2 GB sparse file through a real stdio server ----------------------------------------------------


def server_process(state_dir: Path) -> psutil.Process:
    """The `python -m agentbay_mcp` child of this test process serving `state_dir`."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "agentbay_mcp" in " ".join(child.cmdline()) and child.environ().get("AGENTBAY_MCP_STATE_DIR") == str(
                state_dir
            ):
                return child
    raise AssertionError("no stdio server child found")


def sandbox_agent(server: psutil.Process) -> psutil.Process:
    agents = [
        p
        for p in server.children(recursive=True)
        if p.name().startswith("python") and "sandbox_agent.py" in " ".join(p.cmdline())
    ]
    assert len(agents) == 1, agents
    return agents[0]


def chunk_bytes(result: dict[str, Any]) -> bytes:
    """The bytes a read_file result carries, whatever its encoding."""
    if result["encoding"] == "base64":
        return base64.b64decode(result["content"])
    return str(result["content"]).encode()


async def test_2gb_sparse_file_reads_fast_at_any_offset_with_bounded_memory(state_dir: Path) -> None:
    size = 2 * attacks.GIB
    start_mark, end_mark, middle_mark = (f"{where}-{secrets.token_hex(8)}" for where in ("START", "END", "MIDDLE"))
    end_at, middle_at = size - 4096 + 100, attacks.GIB + 12345
    with unwrapped():
        async with Client(stdio_params(state_dir)) as client:
            session_id = await attacks.new_session(client)
            await attacks.run(
                client,
                session_id,
                f"truncate -s 2G big && printf {start_mark} | dd of=big bs=1 seek=100 conv=notrunc status=none "
                f"&& printf {middle_mark} | dd of=big bs=1 seek={middle_at} conv=notrunc status=none "
                f"&& printf {end_mark} | dd of=big bs=1 seek={end_at} conv=notrunc status=none",
            )
            host_big = attacks.home_of(state_dir, session_id) / "big"
            assert host_big.stat().st_size == size
            assert host_big.stat().st_blocks * 512 < 64 * attacks.MIB, "the file is not sparse"
            server = server_process(state_dir)
            agent = sandbox_agent(server)

            async def timed(offset: int) -> tuple[float, bytes, dict[str, Any]]:
                started = time.perf_counter()
                with anyio.fail_after(attacks.CALL_SECONDS):
                    result = await call(
                        client, "read_file", session_id=session_id, path="big", offset=offset, length=4096
                    )
                return time.perf_counter() - started, chunk_bytes(result), result

            for _ in range(3):  # warm up
                await timed(0)
                await timed(size - 4096)
            near_start, near_end = [], []
            for _ in range(7):
                took, data, result = await timed(0)
                near_start.append(took)
                assert start_mark.encode() in data
                assert result["size"] == size
                took, data, result = await timed(size - 4096)
                near_end.append(took)
                assert data[100 : 100 + len(end_mark)] == end_mark.encode()
                assert result["next_offset"] is None
            start_s, end_s = statistics.median(near_start), statistics.median(near_end)
            assert start_s < 1.0, near_start
            assert end_s < 1.0, near_end
            assert end_s < 5 * max(start_s, 0.001), f"near the end {end_s * 1000:.1f} ms, start {start_s * 1000:.1f} ms"

            # Full 256 KiB chunks from all over the file: the server and the agent stay small.
            with PeakRss(server=server, agent=agent) as rss:
                for number in range(40):
                    offset = (size // 40) * number
                    result = await call(client, "read_file", session_id=session_id, path="big", offset=offset)
                    assert result["length"] == 256 * 1024
                    assert result["next_offset"] == offset + 256 * 1024
                middle = await call(client, "read_file", session_id=session_id, path="big", offset=middle_at - 10)
                assert middle_mark.encode() in chunk_bytes(middle)
            print(
                f"2 GiB sparse: 4 KiB near the start {start_s * 1000:.2f} ms, near the end {end_s * 1000:.2f} ms "
                f"(medians); RSS growth over 41 x 256 KiB reads: server {rss.growth('server') / attacks.MIB:.1f} MiB, "
                f"agent {rss.growth('agent') / attacks.MIB:.1f} MiB"
            )
            assert rss.growth("server") < 50 * attacks.MIB, (
                f"server RSS grew {rss.growth('server') / attacks.MIB:.1f} MiB"
            )
            assert rss.growth("agent") < 50 * attacks.MIB, f"agent RSS grew {rss.growth('agent') / attacks.MIB:.1f} MiB"


async def test_line_read_of_a_huge_file_without_newlines_is_bounded(state_dir: Path) -> None:
    async with attacks.serve(state_dir, memory_limit_mb=256) as client:
        session_id = await attacks.new_session(client)
        await attacks.run(client, session_id, "truncate -s 2G big")
        sleeper = await call(client, "start_process", session_id=session_id, command="sleep 300")
        outcome = await attacks.attempt(
            client, "read_file", session_id=session_id, path="big", start_line=1, line_count=1
        )
        status = await attacks.attempt(
            client, "wait_process", session_id=session_id, process_id=sleeper["process_id"], timeout_ms=0
        )
        assert status.ok, f"the read took the session's sandbox down: {outcome}; then {status}"
        assert status.structured is not None
        assert status.structured["running"] is True, status
        if outcome.ok:
            assert outcome.structured is not None
            assert outcome.structured["length"] <= 256 * 1024
        else:
            attacks.assert_clear_error(outcome)
        assert outcome.seconds < 10, outcome


# 6. Full disk and file size limits ----------------------------------------------------------------------


async def test_overwrite_over_the_size_limit_keeps_the_original(state_dir: Path) -> None:
    async with attacks.serve(state_dir, file_size_limit_mb=1) as client:
        session_id = await attacks.new_session(client)
        original = "original content\n" * 100
        await call(client, "write_file", session_id=session_id, path="work/data.txt", content=original)
        directory = attacks.home_of(state_dir, session_id) / "work"
        inode = (directory / "data.txt").stat().st_ino
        message = await call_error(
            client, "write_file", session_id=session_id, path="work/data.txt", content="y" * (2 * attacks.MIB)
        )
        assert "/home/user/work/data.txt" in message, message
        assert "File too large" in message, message
        assert "size limit" in message, message
        assert (directory / "data.txt").read_text() == original
        assert (directory / "data.txt").stat().st_ino == inode
        assert sorted(os.listdir(directory)) == ["data.txt"], "a temporary file was left behind"
        read = await call(client, "read_file", session_id=session_id, path="work/data.txt")
        assert read["content"] == original
        # A new file over the limit fails the same way and leaves nothing.
        message = await call_error(
            client, "write_file", session_id=session_id, path="work/new.txt", content="z" * (2 * attacks.MIB)
        )
        assert "File too large" in message, message
        assert sorted(os.listdir(directory)) == ["data.txt"], "a temporary file was left behind"
        # Under the limit it works.
        await call(client, "write_file", session_id=session_id, path="work/data.txt", content="w" * (attacks.MIB // 2))
        assert (directory / "data.txt").stat().st_size == attacks.MIB // 2


async def test_overwrite_on_a_full_disk_keeps_the_original(client: Client) -> None:
    session_id = await attacks.new_session(client)
    original = "original on shm\n"
    await call(client, "write_file", session_id=session_id, path="/dev/shm/keep.txt", content=original)
    # /dev/shm is the session's 64 MiB tmpfs: fill it up.
    filled = await call(
        client, "execute_command", session_id=session_id, command="dd if=/dev/zero of=/dev/shm/fill bs=1M count=80"
    )
    assert filled["exit_code"] != 0, filled
    assert "No space left" in filled["stderr"], filled
    message = await call_error(
        client, "write_file", session_id=session_id, path="/dev/shm/keep.txt", content="n" * (2 * attacks.MIB)
    )
    assert "/dev/shm/keep.txt" in message, message
    assert "No space left" in message, message
    assert "disk is full" in message, message
    assert (await call(client, "read_file", session_id=session_id, path="/dev/shm/keep.txt"))["content"] == original
    entries = await call(client, "list_directory", session_id=session_id, path="/dev/shm")
    assert sorted(e["name"] for e in entries["entries"]) == ["fill", "keep.txt"], "a temporary file was left behind"
    await attacks.run(client, session_id, "rm /dev/shm/fill")


# 7. Lines and UTF-8 chunks ------------------------------------------------------------------------------


LINE_COUNT = 100_000


def numbered_line(number: int) -> str:
    return f"line {number} é€😀 {'x' * (number % 7)}\n"


async def test_line_windows_and_continuation_in_a_100k_line_file(state_dir: Path) -> None:
    lines = [numbered_line(n) for n in range(1, LINE_COUNT + 1)]
    async with attacks.serve(state_dir) as client:
        session_id = await attacks.new_session(client)
        await attacks.run(
            client,
            session_id,
            "python3 -c \"import sys; sys.stdout.write(''.join(f'line {n} é€😀 {\\\"x\\\" * (n % 7)}\\n' "
            f'for n in range(1, {LINE_COUNT + 1})))" > lines.txt',
        )
        assert (attacks.home_of(state_dir, session_id) / "lines.txt").read_text() == "".join(lines)

        for start, count in ((1, 5), (2, 1), (4321, 17), (LINE_COUNT // 2, 100), (LINE_COUNT - 9, 9)):
            page = await call(
                client, "read_file", session_id=session_id, path="lines.txt", start_line=start, line_count=count
            )
            assert page["content"] == "".join(lines[start - 1 : start - 1 + count]), (start, count)
            assert page["start_line"] == start
            assert page["next_line"] == start + count
            assert page["offset"] == len("".join(lines[: start - 1]).encode())

        last = await call(client, "read_file", session_id=session_id, path="lines.txt", start_line=LINE_COUNT - 2)
        assert last["content"] == "".join(lines[-3:])
        assert last["next_line"] is None
        beyond = await call(client, "read_file", session_id=session_id, path="lines.txt", start_line=LINE_COUNT + 5)
        assert (beyond["content"], beyond["next_line"]) == ("", None)

        # next_line continues exactly where the page stopped, page after page.
        start, collected = 1, ""
        for _ in range(3):
            page = await call(client, "read_file", session_id=session_id, path="lines.txt", start_line=start)
            assert page["content"].endswith("\n")
            assert page["length"] <= 256 * 1024
            collected += page["content"]
            assert page["next_line"] is not None
            assert page["next_line"] == start + page["content"].count("\n")
            start = page["next_line"]
        assert collected == "".join(lines[: start - 1])


async def test_offset_chunks_with_a_small_read_cap_never_split_a_character(state_dir: Path) -> None:
    cap = 4096
    text = "".join(f"{n} aé€😀ü\n" if n % 3 else f"{n} {'😀' * (n % 11)}€\n" for n in range(12_000))
    data = text.encode()
    async with attacks.serve(state_dir, read_cap_bytes=cap) as client:
        session_id = await attacks.new_session(client)
        await call(client, "write_file", session_id=session_id, path="utf8.txt", content=text)
        chunks: list[str] = []
        offset: int | None = 0
        while offset is not None:
            part = await call(client, "read_file", session_id=session_id, path="utf8.txt", offset=offset)
            assert part["encoding"] == "utf-8"
            assert part["invalid_utf8"] is False, f"a chunk at {offset} split a character"
            assert "\ufffd" not in part["content"]
            assert part["length"] <= cap
            assert part["length"] > cap - 4 or part["next_offset"] is None
            assert part["offset"] == offset
            chunks.append(part["content"])
            if part["next_offset"] is not None:
                assert part["next_offset"] == offset + len(part["content"].encode())
            offset = part["next_offset"]
            assert len(chunks) <= len(data) // (cap - 4) + 2
        assert "".join(chunks) == text
        assert len(chunks) > 10


async def test_line_mode_near_the_end_of_a_long_file_is_fast(state_dir: Path) -> None:
    count = 800_000
    async with attacks.serve(state_dir) as client:
        session_id = await attacks.new_session(client)
        await attacks.run(client, session_id, f"seq 1 {count} > many.txt")
        started = time.monotonic()
        page = await call(
            client, "read_file", session_id=session_id, path="many.txt", start_line=count - 9, line_count=3
        )
        took = time.monotonic() - started
        assert page["content"] == "".join(f"{n}\n" for n in range(count - 9, count - 6))
        assert took < 3.0, f"3 lines near the end of a {count}-line file took {took:.1f} s"


async def test_a_line_longer_than_the_read_cap_still_makes_progress(state_dir: Path) -> None:
    async with attacks.serve(state_dir, read_cap_bytes=4096) as client:
        session_id = await attacks.new_session(client)
        await call(client, "write_file", session_id=session_id, path="long.txt", content="a\n" + "y" * 5000 + "\nz\n")
        page = await attacks.attempt(client, "read_file", session_id=session_id, path="long.txt", start_line=2)
        if page.ok:
            assert page.structured is not None
            assert page.structured["content"] or page.structured["next_line"] not in (None, 2), page
        else:
            attacks.assert_clear_error(page)


async def test_a_length_inside_one_character_still_makes_progress(client: Client) -> None:
    session_id = await attacks.new_session(client)
    await call(client, "write_file", session_id=session_id, path="emoji.txt", content="😀abc")
    part = await call(client, "read_file", session_id=session_id, path="emoji.txt", offset=0, length=2)
    assert part["length"] > 0 or part["next_offset"] != 0, part
