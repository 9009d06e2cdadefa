"""The process part of the `SandboxBackend` contract, called on the backend directly.

Background processes (start_process, write_process_input) need process handles: the local and memory
backends have them, the agentbay cloud shell has none and declares so (Capabilities.process_handles;
the command service refuses with NotSupportedError). Every backend keeps a command that ran past its
timeout, and reads its output with cursors and its last lines.
"""

from __future__ import annotations

import signal

import anyio
import pytest

from agentbay_mcp.backends.protocols import SandboxBackend
from agentbay_mcp.backends.records import ProcessOutput, ShellCommand
from agentbay_mcp.errors import SessionNotFoundError
from tests.contract.test_backend_contract import backend, new_session  # noqa: F401 - the parametrized fixture

pytestmark = pytest.mark.anyio


async def read_until(
    backend: SandboxBackend,  # noqa: F811
    session_id: str,
    proc_id: str,
    stream: str,
    wanted: bytes,
    cursors: dict[str, int] | None = None,
) -> tuple[bytes, ProcessOutput]:
    """Read `stream` from `cursors` until it holds `wanted` (10 s at most); returns the bytes and the last read."""
    cursors = dict(cursors or {})
    seen = b""
    with anyio.fail_after(10):
        while True:
            output = await backend.processes.read_process_output(
                session_id, proc_id, cursors, wait_ms=500, max_bytes=65536
            )
            chunk = output.streams[stream]
            seen += chunk.data
            cursors[stream] = chunk.next_cursor
            if wanted in seen or not output.info.running:
                return seen, output


async def test_a_background_process_takes_input_and_streams_output(backend: SandboxBackend) -> None:  # noqa: F811
    session_id = await new_session(backend)
    handles = backend.process_handles
    if not backend.capabilities.process_handles:
        # No start_process or write_process_input to call (the service refuses them, with the reason).
        assert handles is None
        assert backend.capabilities.unsupported["process_handles"]
        assert await backend.processes.list_processes(session_id) == []
        return
    assert handles is not None

    info = await handles.start_process(session_id, ShellCommand(command="cat"), stdin=True, foreground=False, cap=65536)
    assert info.running
    assert info.stdin_open
    assert info.command == "cat"
    assert [p.proc_id for p in await backend.processes.list_processes(session_id)] == [info.proc_id]

    assert await handles.write_process_input(session_id, info.proc_id, b"hello\n", eof=False) == 6
    seen, first = await read_until(backend, session_id, info.proc_id, "stdout", b"hello\n")
    assert seen == b"hello\n"
    assert first.info.running
    assert first.streams["stdout"].start == 0
    assert first.streams["stdout"].dropped == 0
    assert await backend.processes.process_tail(session_id, info.proc_id, 5) == {"stdout": ["hello"], "stderr": []}

    # EOF ends cat; a read from the cursor sees only what is new.
    assert await handles.write_process_input(session_id, info.proc_id, b"bye\n", eof=True) == 4
    done = await backend.processes.wait_process(session_id, info.proc_id, 10000)
    assert not done.running
    assert done.exit_code == 0
    assert not done.stdin_open
    later, _ = await read_until(backend, session_id, info.proc_id, "stdout", b"bye\n", {"stdout": len(seen)})
    assert later == b"bye\n"
    assert (await backend.processes.process_tail(session_id, info.proc_id, 1))["stdout"] == ["bye"]

    await backend.processes.forget_process(session_id, info.proc_id)
    assert await backend.processes.list_processes(session_id) == []


async def test_a_kept_command_is_read_with_cursors_and_tailed(backend: SandboxBackend) -> None:  # noqa: F811
    session_id = await new_session(backend)
    outcome = await backend.processes.run_process(
        session_id, ShellCommand(command="echo one; echo two; sleep 30"), wait_ms=1000, cap=65536, timeout_ms=1000
    )
    assert outcome.info.running
    proc_id = outcome.info.proc_id
    seen, _ = await read_until(backend, session_id, proc_id, "stdout", b"one\ntwo\n")
    assert seen == b"one\ntwo\n"

    # A small max_bytes returns a piece, and its cursor continues exactly after it.
    head = await backend.processes.read_process_output(session_id, proc_id, {}, wait_ms=500, max_bytes=4)
    assert head.streams["stdout"].data == b"one\n"
    assert head.streams["stdout"].next_cursor == 4
    rest = await backend.processes.read_process_output(session_id, proc_id, {"stdout": 4}, wait_ms=500, max_bytes=65536)
    assert rest.streams["stdout"].data == b"two\n"
    assert rest.streams["stdout"].start == 4

    tail = await backend.processes.process_tail(session_id, proc_id, 1)
    assert tail["stdout"] == ["two"]
    assert "stderr" in tail  # the cloud shell may note its timeout there

    await backend.processes.kill_process(session_id, proc_id, signal.SIGTERM, 200, "timeout")
    assert not (await backend.processes.wait_process(session_id, proc_id, 5000)).running
    await backend.processes.forget_process(session_id, proc_id)


async def test_list_processes_of_an_unknown_session_is_not_found(backend: SandboxBackend) -> None:  # noqa: F811
    with pytest.raises(SessionNotFoundError):
        await backend.processes.list_processes("session-" + "0" * 24)
