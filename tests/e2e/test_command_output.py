"""Command output at scale: the cap and its marker, full output files, encodings.

execute_command returns each stream capped (64 KiB by default) as head + marker + tail, keeps the
complete output in the session under /tmp/.agentbay, and never holds more than its buffers in
memory whatever a command prints. Timeouts and background output are in
test_command_output_timeouts.py."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from mcp import Client

from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.answers import unpack
from agentbay_mcp.testing.rss import PeakRss
from agentbay_mcp.testing.stdio import RawStdioServer
from tests.e2e import command_output_support as support

pytestmark = pytest.mark.anyio


# 5 MB through execute_command ------------------------------------------------------------------------

FIVE_MB_OUTPUTS = {
    "no-newlines": ("head -c 5000000 /dev/zero | tr '\\0' a", b"a" * support.FIVE_MB),
    "numbered-lines": ("seq 1 1000000 | head -c 5000000", support.numbered_lines(1_000_000)[: support.FIVE_MB]),
}


@pytest.mark.parametrize("kind", list(FIVE_MB_OUTPUTS))
async def test_5mb_stdout_is_capped_with_a_marker_and_kept_in_full(
    client: Client, settings: Settings, state_dir: Path, kind: str
) -> None:
    command, expected = FIVE_MB_OUTPUTS[kind]
    assert len(expected) == support.FIVE_MB
    cap = settings.output_cap_bytes
    session_id = await support.new_session(client)

    result = await support.execute(client, session_id, command)

    assert result["exit_code"] == 0, result["message"]
    assert result["timed_out"] is False
    assert result["stdout_truncated"] is True
    assert result["stdout_bytes"] == support.FIVE_MB
    assert result["stderr"] == ""
    assert result["stderr_truncated"] is False
    assert result["full_stderr_path"] is None
    assert "truncated" in result["message"]

    stdout: str = result["stdout"]
    capped = support.split_capped(stdout)
    head, tail = capped.head.encode(), capped.tail.encode()
    # Bounded: the cap's worth of output plus the marker, whatever the command printed.
    assert len(head) + len(tail) == cap
    assert len(stdout.encode()) == cap + len(capped.marker.encode())
    assert len(capped.marker) < 512
    # The marker tells the truth about what was cut and where the rest is.
    assert capped.stream == "stdout"
    assert capped.total == support.FIVE_MB
    assert capped.cut == support.FIVE_MB - cap
    full_path = result["full_stdout_path"]
    assert full_path, "a truncated stream must say where its full output is"
    assert full_path in capped.where
    assert f"complete stdout ({support.FIVE_MB:,} bytes)" in capped.where
    # Head and tail are the real start and end of the output, both substantial.
    assert len(head) >= 1024
    assert len(tail) >= 1024
    assert expected.startswith(head)
    assert expected.endswith(tail)

    # The complete output, seen from inside the session and directly on the host.
    assert await support.file_size_in_session(client, session_id, full_path) == support.FIVE_MB
    on_host = support.host_path(state_dir, session_id, full_path)
    assert on_host.stat().st_size == support.FIVE_MB
    assert on_host.read_bytes() == expected


# 500 MB through a real stdio server ------------------------------------------------------------------


def _pid_namespace(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return None


def rss_of_server(server_pid: int) -> PeakRss:
    """Peak RSS of the server, of the server plus its descendants outside the sandbox, and of the agent."""
    server = psutil.Process(server_pid)
    namespace = _pid_namespace(server_pid)
    descendants = server.children(recursive=True)
    # bwrap's outer process shares our pid namespace; the agent and its commands are in the sandbox's.
    outside = [p for p in descendants if _pid_namespace(p.pid) == namespace]
    inside = [p for p in descendants if _pid_namespace(p.pid) != namespace]
    agents = [p for p in inside if "python" in p.name()]
    assert len(agents) == 1, f"expected one sandbox agent, found {[p.name() for p in inside]}"
    return PeakRss(server=server, outside=[server, *outside], agent=agents[0])


@pytest.mark.slow
def test_500mb_output_through_a_real_stdio_server_keeps_its_memory_flat(state_dir: Path) -> None:
    allowed = 30 * 1024 * 1024
    with RawStdioServer(state_dir) as server:
        server.initialize()
        session_id = server.call_tool("create_session")["session_id"]
        # Warm up the paths a capped command takes (imports, buffers) before the baseline.
        warm = server.call_tool("execute_command", session_id=session_id, command="head -c 5000000 /dev/zero")
        assert warm["stdout_truncated"] is True

        with rss_of_server(server.pid) as rss:
            started = time.monotonic()
            response = server.request(
                "tools/call",
                {
                    "name": "execute_command",
                    "arguments": {
                        "session_id": session_id,
                        "command": f"head -c {support.FIVE_HUNDRED_MB} /dev/zero | tr '\\0' a",
                        "timeout_ms": 60000,
                    },
                },
                timeout=90,
            )
            took = time.monotonic() - started
        mib = {key: rss.growth(key) / 2**20 for key in ("server", "outside", "agent")}
        print(
            f"500 MB in {took:.1f} s; RSS growth: server {mib['server']:.1f} MiB, server + bwrap outside the "
            f"sandbox {mib['outside']:.1f} MiB, sandbox agent {mib['agent']:.1f} MiB"
        )
        assert "result" in response, response
        result = response["result"]
        assert not result.get("isError"), result
        out = unpack("execute_command", result)

        assert took < 30, f"500 MB took {took:.1f} s"
        assert rss.growth("server") <= allowed, f"server RSS grew {rss.growth('server') / 2**20:.1f} MiB"
        assert rss.growth("outside") <= allowed, f"server + bwrap RSS grew {rss.growth('outside') / 2**20:.1f} MiB"
        # The agent's buffers are bounded too (head, a ring, one read): it must not hold the output.
        assert rss.growth("agent") <= allowed, f"sandbox agent RSS grew {rss.growth('agent') / 2**20:.1f} MiB"

        assert out["exit_code"] == 0
        assert out["timed_out"] is False
        assert out["stdout_truncated"] is True
        assert out["stdout_bytes"] == support.FIVE_HUNDRED_MB
        capped = support.split_capped(out["stdout"])
        assert capped.total == support.FIVE_HUNDRED_MB
        assert capped.head
        assert set(capped.head) == {"a"}
        assert capped.tail
        assert set(capped.tail) == {"a"}
        assert len(out["stdout"]) < 70 * 1024
        full_path = out["full_stdout_path"]
        assert full_path
        assert full_path in capped.where
        on_host = support.host_path(state_dir, session_id, full_path)
        assert on_host.stat().st_size == support.FIVE_HUNDRED_MB
        with on_host.open("rb") as full:
            assert full.read(1 << 20) == b"a" * (1 << 20)
            full.seek(-(1 << 20), os.SEEK_END)
            assert full.read() == b"a" * (1 << 20)
        in_session = server.call_tool("execute_command", session_id=session_id, command=f"wc -c < {full_path}")
        assert int(in_session["stdout"]) == support.FIVE_HUNDRED_MB

        server.call_tool("delete_session", session_id=session_id)
        assert not on_host.exists(), "deleting the session must remove its 500 MB output file"


# stderr, encodings -------------------------------------------------------------------------------------


async def test_stderr_is_capped_independently_of_stdout(client: Client, settings: Settings, state_dir: Path) -> None:
    cap = settings.output_cap_bytes
    session_id = await support.new_session(client)

    only_err = await support.execute(client, session_id, "head -c 300000 /dev/zero | tr '\\0' e >&2; echo out")
    assert only_err["stdout"] == "out\n"
    assert only_err["stdout_truncated"] is False
    assert only_err["full_stdout_path"] is None
    assert only_err["stderr_truncated"] is True
    assert only_err["stderr_bytes"] == 300_000
    capped = support.split_capped(only_err["stderr"])
    assert capped.stream == "stderr"
    assert capped.total == 300_000
    assert capped.cut == 300_000 - cap
    assert only_err["full_stderr_path"]
    assert only_err["full_stderr_path"] in capped.where
    assert support.host_path(state_dir, session_id, only_err["full_stderr_path"]).stat().st_size == 300_000

    only_out = await support.execute(client, session_id, "head -c 300000 /dev/zero | tr '\\0' o; echo err >&2")
    assert only_out["stderr"] == "err\n"
    assert only_out["stderr_truncated"] is False
    assert only_out["full_stderr_path"] is None
    assert only_out["stdout_truncated"] is True
    assert support.split_capped(only_out["stdout"]).stream == "stdout"

    both = await support.execute(
        client, session_id, "head -c 100000 /dev/zero | tr '\\0' o; head -c 200000 /dev/zero | tr '\\0' e >&2"
    )
    out, err = support.split_capped(both["stdout"]), support.split_capped(both["stderr"])
    assert (out.stream, out.total, out.cut) == ("stdout", 100_000, 100_000 - cap)
    assert (err.stream, err.total, err.cut) == ("stderr", 200_000, 200_000 - cap)
    assert set(out.head + out.tail) == {"o"}
    assert set(err.head + err.tail) == {"e"}
    assert both["full_stdout_path"] != both["full_stderr_path"]
    assert support.host_path(state_dir, session_id, both["full_stdout_path"]).read_bytes() == b"o" * 100_000
    assert support.host_path(state_dir, session_id, both["full_stderr_path"]).read_bytes() == b"e" * 200_000


async def test_invalid_utf8_is_replaced_not_an_error(client: Client) -> None:
    session_id = await support.new_session(client)

    small = await support.execute(client, session_id, "printf 'ok\\377\\376bad\\300\\n'; printf '\\377err' >&2")
    assert small["exit_code"] == 0
    assert small["stdout"] == f"ok{support.REPLACEMENT}{support.REPLACEMENT}bad{support.REPLACEMENT}\n"
    assert small["stderr"] == f"{support.REPLACEMENT}err"
    assert small["stdout_bytes"] == 9
    assert small["stderr_bytes"] == 4

    # Invalid bytes at the very start and end of a capped stream.
    big = await support.execute(
        client, session_id, "printf '\\377'; head -c 200000 /dev/zero | tr '\\0' a; printf '\\376'"
    )
    capped = support.split_capped(big["stdout"])
    assert capped.head.startswith(support.REPLACEMENT + "a")
    assert capped.tail.endswith("a" + support.REPLACEMENT)

    # And in a background process's output.
    started = await support.tool(client, "start_process", session_id=session_id, command="printf 'x\\377y\\n'")
    await support.tool(
        client, "wait_process", session_id=session_id, process_id=started["process_id"], timeout_ms=10000
    )
    read = await support.tool(client, "read_process_output", session_id=session_id, process_id=started["process_id"])
    assert read["stdout"] == f"x{support.REPLACEMENT}y\n"


#: Valid UTF-8 longer than the cap, as (piece, repeat) runs. With the default 64 KiB cap (16 KiB
#: head, 48 KiB tail):
#:  - "emoji": the head cut falls 3 bytes into a 4-byte character, the tail starts on a boundary;
#:  - "euro": the head cut falls 1 byte into a 3-byte character, the tail starts 1 byte into one;
#:  - "tail-only": the head is ASCII, the tail starts 1 byte into a 3-byte character.
MULTIBYTE: dict[str, list[tuple[str, int]]] = {
    "emoji": [("a", 1), ("\U0001f600", 100_000)],
    "euro": [("\u20ac", 100_000), ("z", 1)],
    "tail-only": [("a", 20_000), ("\u20ac", 100_000), ("z", 1)],
}


def _multibyte_text(kind: str) -> str:
    return "".join(piece * repeat for piece, repeat in MULTIBYTE[kind])


def _multibyte_command(kind: str) -> str:
    """A short shell command printing `_multibyte_text(kind)` exactly (python3 is in the sandbox)."""
    runs = [(piece.encode().hex(), repeat) for piece, repeat in MULTIBYTE[kind]]
    return f"python3 -c \"import sys; sys.stdout.buffer.write(b''.join(bytes.fromhex(h) * n for h, n in {runs}))\""


async def _capped_multibyte(client: Client, kind: str) -> tuple[str, dict[str, Any], support.Capped]:
    """Run a multi-byte case; anything wrong before the UTF-8 checks raises RuntimeError, not AssertionError.

    So a failing precondition is told apart from the UTF-8 property the tests check.
    """
    text = _multibyte_text(kind)
    try:
        session_id = await support.new_session(client)
        result = await support.execute(client, session_id, _multibyte_command(kind))
        assert result["exit_code"] == 0, result
        assert result["stdout_truncated"] is True
        assert result["stdout_bytes"] == len(text.encode())
        capped = support.split_capped(result["stdout"])
        assert capped.total == len(text.encode())
    except AssertionError as exc:
        raise RuntimeError(f"precondition failed: {exc}") from exc
    return text, result, capped


@pytest.mark.parametrize("kind", list(MULTIBYTE))
async def test_multibyte_output_cut_at_the_cap_has_no_broken_characters(client: Client, kind: str) -> None:
    text, result, capped = await _capped_multibyte(client, kind)

    # Every character shown is a real one: at most one replacement char, and only where the head was cut.
    assert result["stdout"].count(support.REPLACEMENT) <= 1
    head = capped.head.removesuffix(support.REPLACEMENT)
    assert support.REPLACEMENT not in head
    assert text.startswith(head)
    assert support.REPLACEMENT not in capped.tail
    assert text.endswith(capped.tail)
    assert len(head) > 1000
    assert len(capped.tail) > 1000
    # The text survives a UTF-8 round trip (no lone surrogates or other debris).
    assert result["stdout"].encode().decode() == result["stdout"]


@pytest.mark.parametrize("kind", ["emoji", "euro"])
async def test_head_cut_inside_a_character_is_trimmed_not_replaced(client: Client, kind: str) -> None:
    text, result, capped = await _capped_multibyte(client, kind)
    assert support.REPLACEMENT not in result["stdout"]
    assert text.startswith(capped.head)


async def test_marker_counts_every_byte_not_shown(client: Client) -> None:
    text, _, capped = await _capped_multibyte(client, "tail-only")
    try:  # what holds today: head and tail are exact (the head is ASCII here)
        assert text.startswith(capped.head)
        assert text.endswith(capped.tail)
    except AssertionError as exc:
        raise RuntimeError(f"precondition failed: {exc}") from exc
    shown = len(capped.head.encode()) + len(capped.tail.encode())
    assert capped.cut == len(text.encode()) - shown


def _kill_session_agent(session_id: str) -> None:
    """SIGKILL the session's in-sandbox agent (a grandchild of this process: the in-memory server's bwrap)."""
    me = psutil.Process()
    bwraps = [p for p in me.children() if p.name() == "bwrap" and any(session_id in arg for arg in p.cmdline())]
    agents = [c for b in bwraps for c in b.children() if any("sandbox_agent.py" in arg for arg in c.cmdline())]
    if len(agents) != 1:
        raise RuntimeError(f"expected one agent for {session_id}, found {agents}")
    agents[0].kill()
    agents[0].wait(timeout=10)


async def test_full_output_file_is_not_overwritten_after_a_sandbox_restart(client: Client, state_dir: Path) -> None:
    try:
        session_id = await support.new_session(client)
        first = await support.execute(client, session_id, "head -c 100000 /dev/zero | tr '\\0' A")
        first_path = first["full_stdout_path"]
        assert first_path
        first_file = support.host_path(state_dir, session_id, first_path)
        assert first_file.read_bytes() == b"A" * 100_000
        _kill_session_agent(session_id)  # the sandbox dies; the next call restarts it
        second: dict[str, Any] = {}
        with anyio.fail_after(support.CALL_TIMEOUT):
            for _ in range(50):
                result = await client.call_tool(
                    "execute_command",
                    {"session_id": session_id, "command": "head -c 70000 /dev/zero | tr '\\0' B"},
                )
                if not result.is_error:
                    second = unpack("execute_command", result)
                    break
                await anyio.sleep(0.1)  # the server may not have seen the sandbox die yet: retry, as told
        assert second.get("stdout_bytes") == 70_000, second
        assert second["full_stdout_path"]
    except AssertionError as exc:
        raise RuntimeError(f"precondition failed: {exc}") from exc

    # The first result said its complete output is at first_path: it must still be there.
    assert second["full_stdout_path"] != first_path
    assert first_file.read_bytes() == b"A" * 100_000
