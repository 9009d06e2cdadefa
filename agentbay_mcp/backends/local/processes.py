"""Process primitives of the local backend: calls into a session's agent, replies validated.

Everything here goes through the agent inside the sandbox; the host never runs session commands.
Agent errors are translated to the project's exception tree in this one place. Each call names the
most its reply may take (its budget, from the caps the server asked for) and checks the reply's
shape before using it: the agent is not trusted.
"""

from __future__ import annotations

import base64
from typing import Any

from agentbay_mcp.backends.base import OutputSummary, ProcessInfo, ProcessOutput, RunOutcome
from agentbay_mcp.backends.local.agent_client import (
    ESCAPED_PER_BYTE,
    ESCAPED_PER_CHAR,
    AgentClient,
    base64_bytes,
)
from agentbay_mcp.backends.local.agent_errors import ReplyShapeError, base64_field, exchange, field, records

#: Slack added to the agent's own wait so the host's timeout never fires first.
CALL_SLACK_SECONDS = 10.0
#: Bytes of recent output the agent keeps per stream of a process.
RING_BYTES = 1024 * 1024
#: Background processes a session may have (the agent refuses more).
MAX_BACKGROUND = 32
#: One process's info as JSON: its command (ProcessInfo caps it at 1,000,000 characters; start_app
#: commands have no tighter limit) escaped, plus the numbers.
PROCESS_INFO_BYTES = ESCAPED_PER_CHAR * 1_000_000 + 4096
#: One stream summary's text besides its data: a spill path (4096 bytes) and a note (2000 characters).
SUMMARY_TEXT_BYTES = ESCAPED_PER_BYTE * 4096 + ESCAPED_PER_CHAR * 2000 + 1024
#: Lines of output `tail` returns come from the last 4 KiB of each stream.
TAIL_BYTES = 2 * ESCAPED_PER_CHAR * 4096 + 1024


def summary_budget(cap: int) -> int:
    """A process's info and both streams' summaries within `cap` (head and tail together are at most `cap`)."""
    return PROCESS_INFO_BYTES + 2 * (base64_bytes(cap) + SUMMARY_TEXT_BYTES)


def _streams(value: Any) -> dict[str, dict[str, Any]]:
    """A reply's per-stream objects (stdout, stderr), else ReplyShapeError."""
    if not isinstance(value, dict):
        raise ReplyShapeError("'streams' is not an object")
    for name, stream in value.items():
        if not isinstance(stream, dict):
            raise ReplyShapeError(f"stream {str(name)[:20]!r} is not an object")
    return value


def _decode_summaries(streams: Any) -> None:
    """Base64 head and tail of each stream decoded in place (None: the process still runs)."""
    if streams is None:
        return
    for stream in _streams(streams).values():
        stream["head"] = base64_field(stream.get("head"), "head")
        stream["tail"] = base64_field(stream.get("tail"), "tail")


def _spawn_fields(
    command: str, cwd: str | None, env: dict[str, str], stdin: bool, foreground: bool, cap: int
) -> dict[str, Any]:
    """What `spawn` and `run` send to start `sh -c command`, its output kept within `cap`."""
    return {
        "command": command,
        "cwd": cwd,
        "env": env,
        "stdin": "pipe" if stdin else "closed",
        "foreground": foreground,
        "head_bytes": max(cap // 4, 1),
        "spill_after": cap,
        "ring_bytes": max(RING_BYTES, cap * 2),
    }


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
    fields = _spawn_fields(command, cwd, env, stdin, foreground, cap)
    proc_id = await exchange(agent, "spawn", lambda reply: field(reply, "proc_id", str), **fields)
    return await exchange(agent, "wait", ProcessInfo.model_validate, proc_id=proc_id, reply_budget=PROCESS_INFO_BYTES)


def _outcome(reply: dict[str, Any]) -> RunOutcome:
    _decode_summaries(reply.get("summary"))
    return RunOutcome.model_validate(reply)


async def run(
    agent: AgentClient, command: str, *, cwd: str | None, env: dict[str, str], wait_ms: int, cap: int
) -> RunOutcome:
    """Spawn a foreground command and wait for it, in one round trip."""
    return await exchange(
        agent,
        "run",
        _outcome,
        **_spawn_fields(command, cwd, env, False, True, cap),
        cap=cap,
        wait_ms=wait_ms,
        timeout=wait_ms / 1000 + CALL_SLACK_SECONDS,
        reply_budget=summary_budget(cap),
    )


async def wait(agent: AgentClient, proc_id: str, wait_ms: int) -> ProcessInfo:
    """State after waiting up to `wait_ms` for the exit."""
    return await exchange(
        agent,
        "wait",
        ProcessInfo.model_validate,
        proc_id=proc_id,
        wait_ms=wait_ms,
        timeout=wait_ms / 1000 + CALL_SLACK_SECONDS,
        reply_budget=PROCESS_INFO_BYTES,
    )


async def read(
    agent: AgentClient, proc_id: str, cursors: dict[str, int], wait_ms: int, max_bytes: int
) -> ProcessOutput:
    """New output since `cursors`."""

    def check(reply: dict[str, Any]) -> ProcessOutput:
        for chunk in _streams(reply.get("streams")).values():
            chunk["data"] = base64_field(chunk.get("data"), "data")
            if len(chunk["data"]) > max_bytes:
                raise ReplyShapeError("more output than asked for")
        return ProcessOutput.model_validate(reply)

    return await exchange(
        agent,
        "read",
        check,
        proc_id=proc_id,
        cursors=cursors,
        wait_ms=wait_ms,
        max_bytes=max_bytes,
        timeout=wait_ms / 1000 + CALL_SLACK_SECONDS,
        reply_budget=PROCESS_INFO_BYTES + 2 * (base64_bytes(max_bytes) + 1024),
    )


def _summary(reply: dict[str, Any]) -> OutputSummary:
    _decode_summaries(field(reply, "streams", dict))
    return OutputSummary.model_validate(reply)


async def summary(agent: AgentClient, proc_id: str, cap: int) -> OutputSummary:
    """Both streams within `cap`."""
    return await exchange(agent, "summary", _summary, proc_id=proc_id, cap=cap, reply_budget=summary_budget(cap))


async def tail(agent: AgentClient, proc_id: str, lines: int) -> dict[str, list[str]]:
    """Last lines of each stream."""

    def check(reply: dict[str, Any]) -> dict[str, list[str]]:
        found = field(reply, "lines", dict)
        if not all(isinstance(v, list) and all(isinstance(line, str) for line in v) for v in found.values()):
            raise ReplyShapeError("'lines' is not lists of text per stream")
        return {str(k)[:20]: [line[:500] for line in v][-lines:] for k, v in found.items()}

    budget = PROCESS_INFO_BYTES + TAIL_BYTES
    return await exchange(agent, "tail", check, proc_id=proc_id, lines=lines, reply_budget=budget)


async def write(agent: AgentClient, proc_id: str, data: bytes, eof: bool) -> int:
    """Write to stdin."""

    def check(reply: dict[str, Any]) -> int:
        written = field(reply, "written", int)
        if not 0 <= written <= len(data):
            raise ReplyShapeError("'written' is not within what was sent")
        return written

    encoded = base64.b64encode(data).decode()
    return await exchange(agent, "write", check, proc_id=proc_id, data=encoded, eof=eof)


async def kill(agent: AgentClient, proc_id: str, signal: int, grace_ms: int, reason: str) -> ProcessInfo:
    """Signal the process group."""
    fields: dict[str, Any] = {"proc_id": proc_id, "signal": signal, "grace_ms": grace_ms, "reason": reason}
    return await exchange(agent, "kill", ProcessInfo.model_validate, reply_budget=PROCESS_INFO_BYTES, **fields)


async def forget(agent: AgentClient, proc_id: str) -> None:
    """Kill if needed and drop buffers."""
    await exchange(agent, "forget", lambda reply: None, proc_id=proc_id)


def _listed(reply: dict[str, Any]) -> list[ProcessInfo]:
    return [ProcessInfo.model_validate(p) for p in records(reply, "procs", MAX_BACKGROUND)]


async def list_all(agent: AgentClient) -> list[ProcessInfo]:
    """Background processes."""
    return await exchange(agent, "list", _listed, reply_budget=MAX_BACKGROUND * PROCESS_INFO_BYTES + 4096)
