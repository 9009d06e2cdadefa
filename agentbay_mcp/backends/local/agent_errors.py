"""Agent errors -> the project's exception tree: the local backend's one translation point.

Every call into a session's agent (processes.py, files.py, desktop.py) runs inside `translated()`.
The agent's error replies carry a name from `agent/error_names.py`, the one vocabulary of both
sides; `ERRORS` maps every one of them to an exception of `agentbay_mcp/errors.py`.
A reply that does not have the shape its operation promises is a protocol violation: the agent lives
in the sandbox and is not trusted, so the sandbox is stopped (restarted on the next call) and the
caller gets one clear error naming the operation, never an AttributeError or KeyError.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import ValidationError

from agentbay_mcp.backends.local.agent import error_names as names
from agentbay_mcp.backends.local.agent_client import AgentClient
from agentbay_mcp.errors import (
    AgentBayMCPError,
    AgentCallError,
    BackendError,
    DesktopUnavailableError,
    FileOperationError,
    InvalidArgumentError,
    ProcessNotFoundError,
    WindowNotFoundError,
)

#: File error names, with what the caller should do about each.
FILE_ADVICE = {
    names.NOT_FOUND: "Check the path with list_directory or search_files.",
    names.PERMISSION_DENIED: "The sandbox user may not access it.",
    names.READ_ONLY: "Only /home/user and /tmp are writable in a session.",
    names.IS_A_DIRECTORY: "It is a directory: use list_directory.",
    names.NOT_A_DIRECTORY: "A part of the path is not a directory.",
    names.NOT_A_REGULAR_FILE: "Only regular files can be read this way.",
    names.EXISTS: "Choose another destination, or delete the existing one first.",
    names.NOT_EMPTY: "The destination is a directory that is not empty: choose another destination.",
    names.NO_SPACE: "The disk is full: an overwrite left the old file intact; an append may have written part.",
    names.TOO_LARGE: "It is over the size limit: use execute_command (e.g. sed, split) for it.",
    names.NAME_TOO_LONG: "Use a shorter path.",
    names.SYMLINK_LOOP: "The path goes through a symlink loop.",
    names.NOT_TEXT: "Use execute_command for binary files.",
    names.CROSS_DEVICE: "",
}
#: `no_space` under home or /tmp of a session with a disk quota: the quota is what is full.
QUOTA_FULL_ADVICE = (
    "The session's disk quota of {mb} MB is full: delete files in /home/user or /tmp (find the big ones with "
    "execute_command 'du -sh /home/user/* /tmp/*') and try again. An overwrite left the old file intact; an "
    "append may have written part."
)
#: `io_error` of a file operation: an errno the agent has no name for (EIO, EBUSY, ...).
IO_ADVICE = "The session's file system refused it: inspect the path with execute_command."


@dataclass(frozen=True)
class _Call:
    """What `translated` knows about the call that failed."""

    op: str
    proc_id: str | None
    disk_quota_mb: int | None


def _file(exc: AgentCallError, call: _Call) -> AgentBayMCPError:
    advice = FILE_ADVICE.get(exc.kind, IO_ADVICE)
    if exc.kind == names.NO_SPACE and call.disk_quota_mb:
        advice = QUOTA_FULL_ADVICE.format(mb=call.disk_quota_mb)
    return FileOperationError(exc.kind, sentences(str(exc), advice))


def sentences(*parts: str) -> str:
    """Parts joined as sentences: each ends with a full stop (unless it has its own), empty ones left out."""
    return " ".join(p if p[-1] in ".!?" else p + "." for p in (part.strip() for part in parts) if p)


def _not_found(exc: AgentCallError, call: _Call) -> AgentBayMCPError:
    return ProcessNotFoundError(call.proc_id) if call.proc_id is not None else _file(exc, call)


def _invalid(exc: AgentCallError, call: _Call) -> AgentBayMCPError:
    return InvalidArgumentError(str(exc))


def _failed(exc: AgentCallError, call: _Call) -> AgentBayMCPError:
    return BackendError(f"the session sandbox reported: {exc}")


def _io_error(exc: AgentCallError, call: _Call) -> AgentBayMCPError:
    return _file(exc, call) if call.op.startswith("file_") else _failed(exc, call)


#: Every error name the agent may report (agent/error_names.py) -> the exception the caller gets.
#: A name missing here is a test failure (tests/unit/test_agent_errors.py), not a generic error.
ERRORS: dict[str, Callable[[AgentCallError, _Call], AgentBayMCPError]] = {
    names.NOT_FOUND: _not_found,
    **{name: _file for name in FILE_ADVICE if name != names.NOT_FOUND},
    names.INVALID: _invalid,
    names.BAD_REQUEST: _invalid,
    names.SPAWN_FAILED: _invalid,
    names.NO_UNIQUE_MATCH: _invalid,
    names.WINDOW_NOT_FOUND: lambda exc, _: WindowNotFoundError(str(exc)),
    names.NO_DESKTOP: lambda exc, _: DesktopUnavailableError(f"The session's desktop is unavailable: {exc}"),
    names.DESKTOP_TIMEOUT: lambda exc, _: BackendError(f"The session's desktop is not answering: {exc}"),
    names.DESKTOP_ERROR: _failed,
    names.IO_ERROR: _io_error,
}


def translate(
    exc: AgentCallError, op: str, proc_id: str | None = None, disk_quota_mb: int | None = None
) -> AgentBayMCPError:
    """The exception of the project's tree for an agent's error reply (an unknown name, which only a
    replaced agent would send, is a BackendError quoting it)."""
    return ERRORS.get(exc.kind, _failed)(exc, _Call(op, proc_id, disk_quota_mb))


T = TypeVar("T")


class ReplyShapeError(ValueError):
    """A reply from the agent lacks a field, or has one of the wrong type; the message says which."""


def field(reply: Mapping[str, Any], name: str, kind: type[T]) -> T:
    """`reply[name]` if it is a `kind` (bool is not an int here), else ReplyShapeError."""
    value = reply.get(name)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ReplyShapeError(f"{name!r} is not {kind.__name__}")
    return value


def records(reply: Mapping[str, Any], name: str, limit: int) -> list[dict[str, Any]]:
    """`reply[name]` as a list of at most `limit` objects, else ReplyShapeError."""
    found = field(reply, name, list)
    if len(found) > limit:
        raise ReplyShapeError(f"{name!r} has {len(found)} entries, more than the {limit} asked for")
    if not all(isinstance(item, dict) for item in found):
        raise ReplyShapeError(f"{name!r} holds something that is not an object")
    return found


def base64_field(value: Any, name: str) -> bytes:
    """The bytes of a base64 field of a reply, else ReplyShapeError."""
    if not isinstance(value, str):
        raise ReplyShapeError(f"{name!r} is not base64 text")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise ReplyShapeError(f"{name!r} is not base64") from None


def _shape_detail(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors(include_input=False, include_url=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "reply"
        return f"{where}: {first['msg']}"[:200]
    if isinstance(exc, ReplyShapeError):
        return str(exc)[:200]
    return exc.__class__.__name__  # never echo what the sandbox sent into a model's context


@asynccontextmanager
async def translated(
    agent: AgentClient, op: str, proc_id: str | None = None, *, disk_quota_mb: int | None = None
) -> AsyncIterator[None]:
    """Map agent errors; with `proc_id`, an unknown id is ProcessNotFoundError; `disk_quota_mb` names a
    full quota. A reply of the wrong shape stops the session's sandbox (`op` names the call in the error)."""
    try:
        yield
    except AgentCallError as exc:
        raise translate(exc, op, proc_id, disk_quota_mb) from exc
    except (ValidationError, ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as exc:
        # Explicit checks come first in each operation; this also catches what they missed (e.g. a
        # timestamp out of range), so a lying sandbox never surfaces as a bare traceback.
        raise agent.violation(op, f"wrong shape: {_shape_detail(exc)}") from None


async def exchange(
    agent: AgentClient, op: str, check: Callable[[dict[str, Any]], T], *, disk_quota_mb: int | None = None, **call: Any
) -> T:
    """One call into the agent: `op` with `call` (its fields, `timeout`, `reply_budget`), its reply
    checked (and turned into what the caller returns) by `check`, all under `translated`. A
    `proc_id` among the fields makes an unknown id a ProcessNotFoundError."""
    async with translated(agent, op, call.get("proc_id"), disk_quota_mb=disk_quota_mb):
        return check(await agent.call(op, **call))
