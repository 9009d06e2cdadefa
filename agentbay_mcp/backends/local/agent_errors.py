"""Agent errors -> the project's exception tree: the local backend's one translation point.

Every call into a session's agent (processes.py, files.py) runs inside `translated()`. Replies that
do not validate are reported as such: the agent lives in the sandbox and is not trusted.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pydantic import ValidationError

from agentbay_mcp.backends.local.agent_client import AgentCallError
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


@asynccontextmanager
async def translated(proc_id: str | None = None, *, disk_quota_mb: int | None = None) -> AsyncIterator[None]:
    """Map agent errors; with `proc_id`, an unknown id is ProcessNotFoundError; `disk_quota_mb` names a full quota."""
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
    except (ValidationError, ValueError, TypeError) as exc:
        raise BackendError("the session sandbox sent a reply that does not validate") from exc
