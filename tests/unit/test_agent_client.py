"""The host side treats the in-sandbox agent as hostile: bad frames, lies and silence end cleanly."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import socket
import struct
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import psutil
import pytest
from anyio.abc import TaskGroup, UNIXSocketStream

from agentbay_mcp.backends.local import desktop, files, processes
from agentbay_mcp.backends.local.agent import framing
from agentbay_mcp.backends.local.agent_client import (
    SMALL_REPLY_BYTES,
    AgentClient,
    SandboxDiedError,
    decode_frame,
    nesting_ok,
)
from agentbay_mcp.backends.local.agent_errors import translated
from agentbay_mcp.backends.records import ReadSpan
from agentbay_mcp.backends.records_desktop import AppLaunch
from agentbay_mcp.errors import BackendError, ProcessNotFoundError
from agentbay_mcp.testing.rss import PeakRss

pytestmark = pytest.mark.anyio

HEADER = struct.Struct(">I")
Peer = Callable[[socket.socket], None]


def frame(message: object) -> bytes:
    payload = json.dumps(message).encode()
    return HEADER.pack(len(payload)) + payload


def read_request(sock: socket.socket) -> dict[str, object]:
    header = sock.recv(4, socket.MSG_WAITALL)
    (length,) = HEADER.unpack(header)
    return dict(json.loads(sock.recv(length, socket.MSG_WAITALL)))


Connect = Callable[[Peer], Awaitable[AgentClient]]


def _quietly(peer: Peer, sock: socket.socket) -> None:
    # The fixture closes the peer's socket at teardown, possibly while it still reads.
    with contextlib.suppress(OSError, struct.error, ValueError):
        peer(sock)


@pytest.fixture
async def connect(task_group: TaskGroup) -> AsyncIterator[Connect]:
    """Wire a real AgentClient to a hostile peer that runs in a thread."""
    peers: list[socket.socket] = []

    async def make(peer: Peer) -> AgentClient:
        host, agent = socket.socketpair()
        peers.append(agent)
        agent.sendall(frame({"id": 0, "ok": True, "result": {"ready": True}}))
        client = AgentClient(await UNIXSocketStream.from_socket(host), "test")
        task_group.start_soon(client.serve)
        task_group.start_soon(anyio.to_thread.run_sync, _quietly, peer, agent)
        return client

    yield make
    for sock in peers:
        sock.close()


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        pytest.param(HEADER.pack(1 << 30), "oversized", id="oversized_frame"),
        pytest.param(HEADER.pack(5) + b"{{{{{", "not JSON", id="garbage"),
        pytest.param(frame(["not", "an", "object"]), "not a JSON object", id="reply_without_id"),
    ],
)
async def test_a_bad_reply_kills_the_connection(connect: Connect, reply: bytes, error: str) -> None:
    def peer(sock: socket.socket) -> None:
        read_request(sock)
        sock.sendall(reply)

    client = await connect(peer)
    with pytest.raises(SandboxDiedError, match=error):
        await client.call("ping", timeout=5)


async def test_silence_times_out(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        read_request(sock)
        read_request(sock)  # the client's cancel of the timed-out call

    client = await connect(peer)
    with anyio.fail_after(5), pytest.raises(BackendError, match="did not answer 'ping' within 1 s"):
        await client.call("ping", timeout=1)


async def test_peer_exit_is_sandbox_died(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        read_request(sock)
        sock.close()

    client = await connect(peer)
    with pytest.raises(SandboxDiedError, match="restarted on the next call"):
        await client.call("ping", timeout=5)


async def test_result_that_is_not_an_object_is_refused(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        request = read_request(sock)
        sock.sendall(frame({"id": request["id"], "ok": True, "result": "surprise"}))

    client = await connect(peer)
    with pytest.raises(SandboxDiedError, match=r"invalid reply to ping .malformed reply"):
        await client.call("ping", timeout=5)
    assert not client.alive


async def test_lying_process_info_does_not_validate(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        request = read_request(sock)
        bad = {"proc_id": "p1" * 100, "pid": "many", "running": "yes"}
        sock.sendall(frame({"id": request["id"], "ok": True, "result": bad}))

    client = await connect(peer)
    with pytest.raises(SandboxDiedError, match=r"invalid reply to wait \(wrong shape"):
        await processes.wait(client, "p1", 0)


async def test_agent_errors_map_to_the_exception_tree(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        request = read_request(sock)
        error = {"kind": "not_found", "message": "no process 'p9'"}
        sock.sendall(frame({"id": request["id"], "ok": False, "error": error}))

    client = await connect(peer)
    with pytest.raises(ProcessNotFoundError, match="list_processes"):
        await processes.wait(client, "p9", 0)


# ---- bounded decoding: depth, size, addressing ---------------------------------------------------


def raw_frame(payload: bytes) -> bytes:
    return HEADER.pack(len(payload)) + payload


DEEP = 100_000


@pytest.mark.parametrize(
    "payload",
    [
        b'{"id": 1, "ok": true, "result": {"x": ' + b"[" * DEEP + b"]" * DEEP + b"}}",
        b'{"id": ' + b"[" * DEEP + b"]" * DEEP + b', "ok": true, "result": {}}',
        b'{"id": 1, "ok": true, "result": {"x": ' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}}",
    ],
    ids=["deep-result", "deep-id", "deep-objects"],
)
async def test_deep_nesting_ends_the_sandbox_not_the_server(connect: Connect, payload: bytes) -> None:
    def peer(sock: socket.socket) -> None:
        read_request(sock)
        sock.sendall(raw_frame(payload))

    client = await connect(peer)
    with pytest.raises(SandboxDiedError, match=r"invalid reply to ping|to ping that is nested too deeply"):
        await client.call("ping", timeout=5)
    assert not client.alive


def test_nesting_check_passes_real_replies_and_strings_full_of_brackets() -> None:
    listing = {"id": 3, "ok": True, "result": {"entries": [{"name": f"[{i}]{{", "t": [[1]]} for i in range(2000)]}}
    assert nesting_ok(json.dumps(listing).encode())
    assert decode_frame(json.dumps(listing).encode())["id"] == 3
    assert nesting_ok(json.dumps({"s": "[" * 10_000 + '\\"' + "{" * 10_000}).encode())
    assert nesting_ok(b"[" * 32 + b"]" * 32)
    assert not nesting_ok(b"[" * 65 + b"]" * 65)
    assert not nesting_ok(b"[" * 5000)  # unbalanced


def test_nesting_check_refuses_the_shapes_peeling_handles_worst() -> None:
    # Many shallow groups plus one deep chain: every pass peels little (bench/bench_hostile_frames.py times it).
    hostile = (b"[" * 31 + b"]" * 31 + b"{[") * 1000 + b"]}" * 1000
    assert not nesting_ok(hostile)
    assert nesting_ok((b"[" * 31 + b"]" * 31) * 1000)


async def test_a_frame_over_every_pending_budget_is_refused_at_its_header(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        read_request(sock)
        sock.sendall(HEADER.pack(SMALL_REPLY_BYTES + 1))  # and never the body: nothing may wait for it

    client = await connect(peer)
    with anyio.fail_after(3), pytest.raises(SandboxDiedError, match="oversized message to ping"):
        await client.call("ping", timeout=30)


async def test_a_reply_over_its_own_calls_budget_is_refused(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        big = read_request(sock)  # sent first, below
        small = read_request(sock)
        filler = "x" * (SMALL_REPLY_BYTES + 10)
        sock.sendall(frame({"id": small["id"], "ok": True, "result": {"filler": filler}}))
        sock.sendall(frame({"id": big["id"], "ok": True, "result": {}}))

    client = await connect(peer)
    async with anyio.create_task_group() as group:
        group.start_soon(lambda: _expect_died(client.call("big", timeout=5, reply_budget=4 * SMALL_REPLY_BYTES)))
        await anyio.sleep(0.05)
        with pytest.raises(SandboxDiedError, match=r"invalid reply to small .* over the"):
            await client.call("small", timeout=5)


async def _expect_died(call: Awaitable[object]) -> None:
    with pytest.raises(SandboxDiedError):
        await call


@pytest.mark.parametrize("hostile_id", [999, 0, True, "1", None])
async def test_unsolicited_frames_end_the_sandbox(connect: Connect, hostile_id: object) -> None:
    def peer(sock: socket.socket) -> None:
        read_request(sock)
        sock.sendall(frame({"id": hostile_id, "ok": True, "result": {}}))

    client = await connect(peer)
    with pytest.raises(SandboxDiedError, match=r"unsolicited|no request id"):
        await client.call("ping", timeout=5)


async def test_a_frame_nobody_asked_for_ends_the_sandbox_before_any_call(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        sock.sendall(frame({"id": 5, "ok": True, "result": {}}))

    client = await connect(peer)
    with anyio.fail_after(3):
        while client.alive:  # noqa: ASYNC110 - the client has no public "died" event to wait on
            await anyio.sleep(0.01)
    with pytest.raises(SandboxDiedError, match=r"broke the protocol.*unsolicited"):
        await client.call("ping", timeout=5)


async def test_late_replies_to_a_call_given_up_on_are_no_violation(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        slow = read_request(sock)
        cancel = read_request(sock)
        assert cancel["op"] == "cancel"
        sock.sendall(frame({"id": slow["id"], "ok": True, "result": {"late": True}}))
        sock.sendall(frame({"id": cancel["id"], "ok": True, "result": {"cancelled": False}}))
        again = read_request(sock)
        sock.sendall(frame({"id": again["id"], "ok": True, "result": {"fine": True}}))

    client = await connect(peer)
    with pytest.raises(BackendError, match="did not answer"):
        await client.call("slow", timeout=0.3)
    assert await client.call("again", timeout=5) == {"fine": True}
    assert client.alive


async def test_a_large_legit_reply_is_decoded_off_the_loop_and_delivered(connect: Connect) -> None:
    filler = "".join(chr(32 + i % 90) for i in range(1 << 20))  # 1 MiB of JSON: over the inline-decoding size

    def peer(sock: socket.socket) -> None:
        request = read_request(sock)
        sock.sendall(frame({"id": request["id"], "ok": True, "result": {"filler": filler}}))

    client = await connect(peer)
    reply = await client.call("big", timeout=5, reply_budget=4 * SMALL_REPLY_BYTES)
    assert reply == {"filler": filler}


async def test_a_file_read_comes_as_raw_bytes_after_the_json(connect: Connect) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value: nothing is escaped or base64'd

    def peer(sock: socket.socket) -> None:
        request = read_request(sock)
        result = {framing.BLOB: data, "offset": 0, "size": len(data), "next_offset": len(data)}
        result["head"] = base64.b64encode(data[:16]).decode()
        sock.sendall(framing.encode({"id": request["id"], "ok": True, "result": result}))

    client = await connect(peer)
    chunk = await files.read(client, "/f", ReadSpan(offset=0), max_bytes=len(data))
    assert chunk.data == data
    assert client.largest_replies["file_read"] < len(data) + 200


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param(HEADER.pack(1000) + b"{}" + b"x" * 10, "JSON .* is longer than the frame", id="json_length_lies"),
        pytest.param(b"{}", "no JSON length", id="no_json_length"),
        pytest.param(HEADER.pack(2) + b"[]" + b"xy", "not a JSON object", id="not_an_object"),
    ],
)
async def test_a_lying_frame_with_raw_bytes_ends_the_sandbox(connect: Connect, body: bytes, error: str) -> None:
    def peer(sock: socket.socket) -> None:
        read_request(sock)
        sock.sendall(HEADER.pack(framing.BLOB_FLAG | len(body)) + body)

    client = await connect(peer)
    with pytest.raises(SandboxDiedError, match=error):
        await client.call("ping", timeout=5)


async def test_raw_bytes_never_ride_an_error(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        request = read_request(sock)
        error = {"kind": "not_found", "message": "no"}
        sock.sendall(framing.encode({"id": request["id"], "ok": False, "error": error, "result": {framing.BLOB: b"x"}}))

    client = await connect(peer)
    with pytest.raises(SandboxDiedError, match="raw bytes on an error"):
        await client.call("ping", timeout=5)


async def test_a_frame_with_raw_bytes_over_the_budget_is_refused_at_its_header(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        read_request(sock)
        sock.sendall(HEADER.pack(framing.BLOB_FLAG | (SMALL_REPLY_BYTES + 1)))  # and never the body

    client = await connect(peer)
    with anyio.fail_after(3), pytest.raises(SandboxDiedError, match="oversized message to ping"):
        await client.call("ping", timeout=30)


GOOD_ROW = ["a", 0o100644, 3, 1.5, 1.5, 1.5, None]


@pytest.mark.parametrize(
    ("row", "error"),
    [
        pytest.param(GOOD_ROW[:6], "not a list of 7", id="short"),
        pytest.param(["a", "0o100644", *GOOD_ROW[2:]], "name or mode", id="mode_as_text"),
        pytest.param(["a", 1 << 40, *GOOD_ROW[2:]], "name or mode", id="mode_too_large"),
        pytest.param([*GOOD_ROW[:3], 1e300, *GOOD_ROW[4:]], "out of range", id="time_out_of_range"),
        pytest.param([*GOOD_ROW[:3], "yesterday", *GOOD_ROW[4:]], "not a number", id="time_as_text"),
    ],
)
async def test_a_lying_listing_row_is_a_clear_error(connect: Connect, row: list[object], error: str) -> None:
    def peer(sock: socket.socket) -> None:
        request = read_request(sock)
        rows = [GOOD_ROW, row]
        sock.sendall(frame({"id": request["id"], "ok": True, "result": {"rows": rows, "total": 2, "truncated": False}}))

    client = await connect(peer)
    with pytest.raises(SandboxDiedError, match=f"wrong shape: .*{error}"):
        await files.listing(client, "/d", 10)


async def test_a_listing_row_becomes_an_entry_with_its_type_derived_from_the_mode(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        request = read_request(sock)
        rows = [GOOD_ROW, ["l", 0o120777, 1, 0, 0, 0, "a"]]
        sock.sendall(frame({"id": request["id"], "ok": True, "result": {"rows": rows, "total": 3, "truncated": True}}))

    client = await connect(peer)
    listing = await files.listing(client, "/d/", 10)
    first, link = listing.entries
    assert (first.path, first.type, first.permissions, first.mode, first.size) == (
        "/d/a",
        "file",
        "-rw-r--r--",
        "0o644",
        3,
    )
    assert first.modified.timestamp() == 1.5
    assert (link.type, link.target, listing.total, listing.truncated) == ("symlink", "a", 3, True)


# ---- the screenshot: inflated only up to the server's own screen ----------------------------------


def zlib_bomb(inflated: int) -> bytes:
    packer = zlib.compressobj(9)
    zeros = bytes(1 << 20)
    parts = [packer.compress(zeros) for _ in range(inflated >> 20)]
    return b"".join(parts) + packer.flush()


@pytest.mark.parametrize(("width", "height"), [(1280, 800), (65536, 65536)])
async def test_a_screenshot_bomb_inflates_no_more_than_the_screen(connect: Connect, width: int, height: int) -> None:
    bomb = base64.b64encode(zlib_bomb(400 << 20)).decode()  # 400 MB of zeros in about 0.5 MB

    def peer(sock: socket.socket) -> None:
        request = read_request(sock)
        result = {"width": width, "height": height, "format": "bgrx", "compression": "zlib", "data": bomb}
        sock.sendall(frame({"id": request["id"], "ok": True, "result": result}))

    client = await connect(peer)
    with (
        PeakRss(me=psutil.Process()) as rss,
        pytest.raises(SandboxDiedError, match=r"invalid reply to desktop_screenshot .wrong shape"),
    ):
        await desktop.screenshot(client, (1280, 800))
    assert rss.growth("me") < 64 << 20, rss.growth("me")


# ---- every reply type, of the wrong shape ---------------------------------------------------------

#: Every field name any operation reads, so a wrong value lands wherever the code looks.
FIELDS = [
    "proc_id",
    "pid",
    "command",
    "running",
    "exit_code",
    "signal",
    "killed_by",
    "elapsed_ms",
    "stdout_bytes",
    "stderr_bytes",
    "stdin_open",
    "info",
    "summary",
    "streams",
    "lines",
    "written",
    "procs",
    "data",
    "offset",
    "size",
    "next_offset",
    "head",
    "path",
    "bytes_written",
    "applied",
    "edits",
    "diff",
    "name",
    "type",
    "entries",
    "rows",
    "total",
    "truncated",
    "matches",
    "created",
    "source",
    "destination",
    "env",
    "apps",
    "stopped",
    "windows",
    "window",
    "windows_before",
    "processes",
    "active_window_id",
    "focus_mode",
    "screen_width",
    "screen_height",
    "on",
    "window_id",
    "title",
    "x",
    "y",
    "width",
    "height",
    "format",
    "compression",
    "pointer_x",
    "pointer_y",
]
WRONG_VALUES: list[Any] = [[{"a": 1}], "x", -1, {"k": [1]}]

Op = Callable[[AgentClient], Awaitable[object]]
LAUNCH = AppLaunch(proc_id="p1", pid=5, windows_before=[])
OPS: dict[str, Op] = {
    "spawn": lambda a: processes.start(a, "true", cwd=None, env={}, stdin=False, foreground=False, cap=100),
    "run": lambda a: processes.run(a, "true", cwd=None, env={}, wait_ms=0, cap=100),
    "wait": lambda a: processes.wait(a, "p1", 0),
    "read": lambda a: processes.read(a, "p1", {}, 0, 100),
    "summary": lambda a: processes.summary(a, "p1", 100),
    "tail": lambda a: processes.tail(a, "p1", 3),
    "write": lambda a: processes.write(a, "p1", b"hi", False),
    "kill": lambda a: processes.kill(a, "p1", 15, 0, "kill"),
    "list": processes.list_all,
    "file_read": lambda a: files.read(a, "/f", ReadSpan(offset=0), max_bytes=9),
    "file_write": lambda a: files.write(a, "/f", b"x", "overwrite"),
    "file_edit": lambda a: files.edit(a, "/f", [{"old_text": "a", "new_text": "b"}], False),
    "file_info": lambda a: files.info(a, "/f"),
    "file_list": lambda a: files.listing(a, "/d", 10),
    "file_search": lambda a: files.search(a, "/d", "*", [], 10),
    "file_mkdir": lambda a: files.mkdir(a, "/d"),
    "file_move": lambda a: files.move(a, "/a", "/b"),
    "desktop_status": desktop.env,
    "desktop_apps": lambda a: desktop.installed_apps(a, False),
    "desktop_start_app": lambda a: desktop.launch(a, "xterm", None),
    "desktop_app_status": lambda a: desktop.app_status(a, LAUNCH),
    "desktop_stop_app": lambda a: desktop.stop_app(a, 5, None),
    "desktop_visible_apps": desktop.visible_apps,
    "desktop_windows": desktop.windows,
    "desktop_active": desktop.active,
    "desktop_window": lambda a: desktop.detail(a, 7),
    "desktop_focus_mode": lambda a: desktop.focus_mode(a, True),
    "desktop_screenshot": lambda a: desktop.screenshot(a, (1280, 800)),
    "desktop_input": lambda a: desktop.input_action(a, {"action": "move", "x": 1, "y": 1}),
}
#: Operations whose reply carries nothing the host reads (any object is a fine answer).
IGNORED_REPLIES = {"forget", "desktop_window_action"}


def test_every_operation_the_local_backend_sends_is_covered() -> None:
    import inspect
    import re

    sent: set[str] = set()
    for module in (processes, files, desktop):
        source = inspect.getsource(module)
        sent |= set(re.findall(r'agent\.call\(\s*"(\w+)"', source))
        sent |= set(re.findall(r'exchange\(\s*agent,\s*"(\w+)"', source))
        sent |= {f"desktop_{op}" for op in re.findall(r'_call\(\s*agent,\s*"(\w+)"', source)}
    assert sent == set(OPS) | IGNORED_REPLIES


#: A pointer at -1 and a move from "x" to "x" are shapes those replies may have.
VALID_BY_CHANCE = {("desktop_input", "-1"), ("file_move", '"x"')}


@pytest.mark.parametrize("value", WRONG_VALUES, ids=["list", "str", "int", "dict"])
@pytest.mark.parametrize("op", sorted(OPS))
async def test_wrong_shapes_are_a_clear_error_and_no_traceback(
    connect: Connect, op: str, value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    if (op, json.dumps(value)) in VALID_BY_CHANCE:
        pytest.skip("a valid reply")

    def peer(sock: socket.socket) -> None:
        while True:  # answer every request (spawn is followed by wait) with the same lie
            request = read_request(sock)
            sock.sendall(frame({"id": request["id"], "ok": True, "result": dict.fromkeys(FIELDS, value)}))

    client = await connect(peer)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SandboxDiedError, match=r"invalid reply to \w+ \(wrong shape: .*restarted on the next call"):
        await OPS[op](client)
    assert not client.alive
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


@pytest.mark.parametrize("op", sorted(OPS))
async def test_an_empty_reply_is_a_clear_error(connect: Connect, op: str) -> None:
    def peer(sock: socket.socket) -> None:
        while True:
            request = read_request(sock)
            sock.sendall(frame({"id": request["id"], "ok": True, "result": {}}))

    client = await connect(peer)
    if op == "desktop_active":  # {} means "no active window"
        assert await OPS[op](client) is None
        return
    with pytest.raises(SandboxDiedError, match="wrong shape"):
        await OPS[op](client)


async def test_translated_still_maps_agent_errors(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        request = read_request(sock)
        sock.sendall(frame({"id": request["id"], "ok": False, "error": {"kind": "not_found", "message": "no"}}))

    client = await connect(peer)
    with pytest.raises(ProcessNotFoundError):
        async with translated(client, "wait", "p9"):
            await client.call("wait", timeout=5)
