"""Helpers for tests and benchmarks of the local backend's contexts: shell commands and mounts."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import anyio

from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.records import SessionRecord, ShellCommand
from agentbay_mcp.backends.records_contexts import ContextMount

CALL_TIMEOUT = 60


async def sh(backend: LocalBackend, session_id: str, command: str, cap: int = 1 << 20) -> str:
    """Run `command` in the session and return its stdout (stderr too, if it failed)."""
    with anyio.fail_after(CALL_TIMEOUT):
        outcome = await backend.processes.run_process(
            session_id, ShellCommand(command=command), wait_ms=50_000, cap=cap
        )
    assert outcome.summary is not None, "the command did not end in time"
    out = outcome.summary["stdout"].head.decode(errors="replace")
    if outcome.info.exit_code != 0:
        out += outcome.summary["stderr"].head.decode(errors="replace")
    return out


async def mount_of(backend: LocalBackend, owner: str, name: str, path: str) -> ContextMount:
    """A mount of the owner's context `name` (made if missing) at `path`, as the service would pass it."""
    context = await backend.contexts.get_context(owner, name, create=True)
    return ContextMount(context_id=context.context_id, name=name, owner=owner, path=path)


async def new_session(backend: LocalBackend, *mounts: ContextMount, owner: str = "c") -> SessionRecord:
    """A code session with `mounts`."""
    return await backend.create_session(image_id="code_latest", labels={}, owner=owner, contexts=list(mounts))


async def _hold(state_dir: str, owner: str, name: str, path: str, command: str) -> None:
    """Be a server with one session that mounts `name` and ran `command`; print its id, then wait to be killed."""
    async with anyio.create_task_group() as group:
        backend = LocalBackend(Path(state_dir))
        await backend.start(group)
        mount = await mount_of(backend, owner, name, path)
        record = await new_session(backend, mount, owner="doomed")
        out = await sh(backend, record.session_id, command)
        print(json.dumps({"session_id": record.session_id, "out": out}), flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":  # python -m agentbay_mcp.testing.contexts STATE_DIR OWNER NAME PATH COMMAND
    state, principal, context, at, command = sys.argv[1:6]
    anyio.run(_hold, state, principal, context, at, command)
