"""Agent errors -> the project's exception tree: the local backend's one translation point.

Every call into a session's agent (processes.py, files.py, desktop.py) runs inside `translated()`.
A reply that does not have the shape its operation promises is a protocol violation: the agent lives
in the sandbox and is not trusted, so the sandbox is stopped (restarted on the next call) and the
caller gets one clear error naming the operation, never an AttributeError or KeyError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from pydantic import ValidationError

from agentbay_mcp.backends.local.agent_client import AgentCallError, AgentClient
from agentbay_mcp.errors import (
    BackendError,
    DesktopUnavailableError,
    FileOperationError,
    InvalidArgumentError,
    ProcessNotFoundError,
    WindowNotFoundError,
)

#: File error kinds, with what the caller should do about each.
FILE_ADVICE = {
    "not_found": "Check the path with list_directory or search_files.",
    "permission_denied": "The sandbox user may not access it.",
    "read_only": "Only /home/user and /tmp are writable in a session.",
    "is_a_directory": "It is a directory: use list_directory.",
    "not_a_directory": "A part of the path is not a directory.",
    "not_a_regular_file": "Only regular files can be read this way.",
    "exists": "Choose another destination, or delete the existing one first.",
    "no_space": "The disk is full: an overwrite left the old file intact; an append may have written part.",
    "too_large": "It is over the size limit: use execute_command (e.g. sed, split) for it.",
    "name_too_long": "Use a shorter path.",
    "symlink_loop": "The path goes through a symlink loop.",
    "not_text": "Use execute_command for binary files.",
    "cross_device": "",
}
#: `no_space` under home or /tmp of a session with a disk quota: the quota is what is full.
QUOTA_FULL_ADVICE = (
    "The session's disk quota of {mb} MB is full: delete files in /home/user or /tmp (find the big ones with "
    "execute_command 'du -sh /home/user/* /tmp/*') and try again. An overwrite left the old file intact; an "
    "append may have written part."
)
#: Kinds that mean the caller's request was wrong.
INVALID_KINDS = frozenset({"bad_request", "spawn_failed", "invalid", "no_unique_match"})


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
        if exc.kind == "not_found" and proc_id is not None:
            raise ProcessNotFoundError(proc_id) from exc
        if exc.kind == "window_not_found":
            raise WindowNotFoundError(str(exc)) from exc
        if exc.kind == "no_desktop":
            raise DesktopUnavailableError(f"The session's desktop is unavailable: {exc}") from exc
        if exc.kind == "desktop_timeout":
            raise BackendError(f"The session's desktop is not answering: {exc}") from exc
        if exc.kind in INVALID_KINDS:
            raise InvalidArgumentError(str(exc)) from exc
        if exc.kind in FILE_ADVICE:
            advice = FILE_ADVICE[exc.kind]
            if exc.kind == "no_space" and disk_quota_mb:
                advice = QUOTA_FULL_ADVICE.format(mb=disk_quota_mb)
            raise FileOperationError(exc.kind, f"{exc} {advice}".strip()) from exc
        raise BackendError(f"the session sandbox reported: {exc}") from exc
    except (ValidationError, ValueError, TypeError, KeyError, AttributeError, IndexError, OverflowError) as exc:
        # Explicit checks come first in each operation; this also catches what they missed (e.g. a
        # timestamp out of range), so a lying sandbox never surfaces as a bare traceback.
        raise agent.violation(op, f"wrong shape: {_shape_detail(exc)}") from None
