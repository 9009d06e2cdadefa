"""The host side treats the in-sandbox agent as hostile: bad frames, lies and silence end cleanly."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import pytest
from anyio.abc import TaskGroup, UNIXSocketStream

from agentbay_mcp.backends.local import processes
from agentbay_mcp.backends.local.agent_client import AgentClient, SandboxDiedError
from agentbay_mcp.errors import BackendError, ProcessNotFoundError

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


async def test_oversized_frame_kills_the_connection(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        read_request(sock)
        sock.sendall(HEADER.pack(1 << 30))

    client = await connect(peer)
    with pytest.raises(SandboxDiedError, match="oversized"):
        await client.call("ping", timeout=5)


async def test_garbage_kills_the_connection(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        read_request(sock)
        sock.sendall(HEADER.pack(5) + b"{{{{{")

    client = await connect(peer)
    with pytest.raises(SandboxDiedError, match="not JSON"):
        await client.call("ping", timeout=5)


async def test_a_reply_without_id_kills_the_connection(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        read_request(sock)
        sock.sendall(frame(["not", "an", "object"]))

    client = await connect(peer)
    with pytest.raises(SandboxDiedError, match="malformed"):
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
    with pytest.raises(BackendError, match="malformed reply"):
        await client.call("ping", timeout=5)


async def test_lying_process_info_does_not_validate(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        request = read_request(sock)
        bad = {"proc_id": "p1" * 100, "pid": "many", "running": "yes"}
        sock.sendall(frame({"id": request["id"], "ok": True, "result": bad}))

    client = await connect(peer)
    with pytest.raises(BackendError, match="does not validate"):
        await processes.wait(client, "p1", 0)


async def test_agent_errors_map_to_the_exception_tree(connect: Connect) -> None:
    def peer(sock: socket.socket) -> None:
        request = read_request(sock)
        error = {"kind": "not_found", "message": "no process 'p9'"}
        sock.sendall(frame({"id": request["id"], "ok": False, "error": error}))

    client = await connect(peer)
    with pytest.raises(ProcessNotFoundError, match="list_processes"):
        await processes.wait(client, "p9", 0)
