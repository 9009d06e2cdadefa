"""Process primitives of the local backend: calls into a session's agent, replies validated.

Everything here goes through the agent inside the sandbox; the host never runs session commands.
Agent errors are translated to the project's exception tree in this one place.
"""

from __future__ import annotations

import base64
from typing import Any

from agentbay_mcp.backends.base import OutputSummary, ProcessInfo, ProcessOutput, RunOutcome
from agentbay_mcp.backends.local.agent_client import AgentClient
from agentbay_mcp.backends.local.agent_errors import translated
from agentbay_mcp.errors import BackendError

#: Slack added to the agent's own wait so the host's timeout never fires first.
CALL_SLACK_SECONDS = 10.0
#: Bytes of recent output the agent keeps per stream of a process.
RING_BYTES = 1024 * 1024


def _b64(value: Any) -> bytes:
    return base64.b64decode(value) if isinstance(value, str) else b""


async def start(
    agent: AgentClient,
    command: str,
    *,
    cwd: str | None,
    env: dict[str, str],
    stdin: bool,
    foreground: bool,
    cap: int,
) -> ProcessInfo:
    """Spawn `sh -c command`; returns its first state."""
    async with translated():
        reply = await agent.call(
            "spawn",
            command=command,
            cwd=cwd,
            env=env,
            stdin="pipe" if stdin else "closed",
            foreground=foreground,
            head_bytes=max(cap // 4, 1),
            spill_after=cap,
            ring_bytes=max(RING_BYTES, cap * 2),
        )
        info = await agent.call("wait", proc_id=str(reply.get("proc_id")))
        return ProcessInfo.model_validate(info)


def _decode_summaries(streams: Any) -> None:
    if isinstance(streams, dict):
        for stream in streams.values():
            if isinstance(stream, dict):
                stream["head"] = _b64(stream.get("head"))
                stream["tail"] = _b64(stream.get("tail"))


async def run(
    agent: AgentClient, command: str, *, cwd: str | None, env: dict[str, str], wait_ms: int, cap: int
) -> RunOutcome:
    """Spawn a foreground command and wait for it, in one round trip."""
    async with translated():
        reply = await agent.call(
            "run",
            command=command,
            cwd=cwd,
            env=env,
            stdin="closed",
            foreground=True,
            head_bytes=max(cap // 4, 1),
            spill_after=cap,
            ring_bytes=max(RING_BYTES, cap * 2),
            cap=cap,
            wait_ms=wait_ms,
            timeout=wait_ms / 1000 + CALL_SLACK_SECONDS,
        )
        _decode_summaries(reply.get("summary"))
        return RunOutcome.model_validate(reply)


async def wait(agent: AgentClient, proc_id: str, wait_ms: int) -> ProcessInfo:
    """State after waiting up to `wait_ms` for the exit."""
    async with translated(proc_id):
        reply = await agent.call("wait", proc_id=proc_id, wait_ms=wait_ms, timeout=wait_ms / 1000 + CALL_SLACK_SECONDS)
        return ProcessInfo.model_validate(reply)


async def read(
    agent: AgentClient, proc_id: str, cursors: dict[str, int], wait_ms: int, max_bytes: int
) -> ProcessOutput:
    """New output since `cursors`."""
    async with translated(proc_id):
        reply = await agent.call(
            "read",
            proc_id=proc_id,
            cursors=cursors,
            wait_ms=wait_ms,
            max_bytes=max_bytes,
            timeout=wait_ms / 1000 + CALL_SLACK_SECONDS,
        )
        streams = reply.get("streams")
        if isinstance(streams, dict):
            for chunk in streams.values():
                if isinstance(chunk, dict):
                    chunk["data"] = _b64(chunk.get("data"))
        return ProcessOutput.model_validate(reply)


async def summary(agent: AgentClient, proc_id: str, cap: int) -> OutputSummary:
    """Both streams within `cap`."""
    async with translated(proc_id):
        reply = await agent.call("summary", proc_id=proc_id, cap=cap)
        _decode_summaries(reply.get("streams"))
        return OutputSummary.model_validate(reply)


async def tail(agent: AgentClient, proc_id: str, lines: int) -> dict[str, list[str]]:
    """Last lines of each stream."""
    async with translated(proc_id):
        reply = await agent.call("tail", proc_id=proc_id, lines=lines)
        found = reply.get("lines")
        if not isinstance(found, dict):
            raise BackendError("the session sandbox sent a malformed tail")
        return {str(k): [str(line)[:500] for line in v][:lines] for k, v in found.items() if isinstance(v, list)}


async def write(agent: AgentClient, proc_id: str, data: bytes, eof: bool) -> int:
    """Write to stdin."""
    async with translated(proc_id):
        reply = await agent.call("write", proc_id=proc_id, data=base64.b64encode(data).decode(), eof=eof)
        written = reply.get("written")
        return written if isinstance(written, int) else 0


async def kill(agent: AgentClient, proc_id: str, signal: int, grace_ms: int, reason: str) -> ProcessInfo:
    """Signal the process group."""
    async with translated(proc_id):
        reply = await agent.call("kill", proc_id=proc_id, signal=signal, grace_ms=grace_ms, reason=reason)
        return ProcessInfo.model_validate(reply)


async def forget(agent: AgentClient, proc_id: str) -> None:
    """Kill if needed and drop buffers."""
    async with translated(proc_id):
        await agent.call("forget", proc_id=proc_id)


async def list_all(agent: AgentClient) -> list[ProcessInfo]:
    """Background processes."""
    async with translated():
        reply = await agent.call("list")
        procs = reply.get("procs")
        if not isinstance(procs, list):
            raise BackendError("the session sandbox sent a malformed process list")
        return [ProcessInfo.model_validate(p) for p in procs[:1000]]
