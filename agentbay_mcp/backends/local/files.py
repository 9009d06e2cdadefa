"""File primitives of the local backend: calls into the session's agent, replies validated.

The host never resolves a session path: the agent does, inside the sandbox. Agent error kinds are
translated here, once, into errors that name the path and say what to do. Each call names the most
its reply may take (from the server's caps: bytes per read, entries per listing) and every reply's
shape is checked before use.
"""

from __future__ import annotations

import base64
import functools
import stat
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter

from agentbay_mcp.backends.local.agent.framing import BLOB, LIST_COLUMNS
from agentbay_mcp.backends.local.agent_client import (
    ESCAPED_PER_BYTE,
    MAX_REPLY_BYTES,
    AgentClient,
)
from agentbay_mcp.backends.local.agent_errors import ReplyShapeError, base64_field, exchange, field
from agentbay_mcp.backends.records import (
    DirectoryCreated,
    DirectoryListing,
    FileChunk,
    FileEdited,
    FileInfo,
    FileMoved,
    FileWritten,
    ReadSpan,
    SearchResult,
)

_CALL_SECONDS = 30.0
#: A path as the agent returns it: at most 4096 bytes, escaped.
PATH_BYTES = ESCAPED_PER_BYTE * 4096 + 16
#: One directory entry: its name (255 bytes), a symlink target (a path), mode and times.
ENTRY_BYTES = ESCAPED_PER_BYTE * 255 + PATH_BYTES + 512
#: A file the agent edits is at most 16 MiB; its diff can hold it twice, escaped. The ceiling
#: (MAX_REPLY_BYTES) applies first: a diff larger than that ends the call with a clear error.
EDIT_BUDGET = MAX_REPLY_BYTES


def _timestamp(value: Any) -> Any:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) else value


def _info(raw: Any, path: str) -> FileInfo:
    if not isinstance(raw, dict):
        raise ReplyShapeError("file information is not an object")
    return FileInfo.model_validate(
        {
            **raw,
            "path": path,
            "modified": _timestamp(raw.get("modified")),
            "changed": _timestamp(raw.get("changed")),
            "accessed": _timestamp(raw.get("accessed")),
        }
    )


async def read(
    agent: AgentClient,
    path: str,
    span: ReadSpan,
    *,
    max_bytes: int,
) -> FileChunk:
    """Bytes of a file."""
    offset, length, start_line, line_count = span.offset, span.length, span.start_line, span.line_count

    def check(reply: dict[str, Any]) -> FileChunk:
        data = reply.pop(BLOB, None)  # the file's bytes came raw, after the reply's JSON
        if not isinstance(data, bytes):
            raise ReplyShapeError("'data' is missing: the reply carried no bytes")
        if len(data) > max_bytes:
            raise ReplyShapeError("more bytes than asked for")
        reply["data"] = data
        reply["head"] = base64_field(reply.get("head"), "head")
        return FileChunk.model_validate(reply)

    return await exchange(
        agent,
        "file_read",
        check,
        path=path,
        offset=offset,
        length=length,
        start_line=start_line,
        line_count=line_count,
        max_bytes=max_bytes,
        timeout=_CALL_SECONDS,
        reply_budget=max_bytes + 4096,
    )


async def write(
    agent: AgentClient, path: str, data: bytes, mode: str, *, disk_quota_mb: int | None = None
) -> FileWritten:
    """Write a file; a full disk is reported with the session's quota when it has one."""
    fields = {"path": path, "data": base64.b64encode(data).decode(), "mode": mode}
    return await exchange(
        agent, "file_write", FileWritten.model_validate, disk_quota_mb=disk_quota_mb, timeout=_CALL_SECONDS, **fields
    )


async def edit(
    agent: AgentClient, path: str, edits: list[dict[str, str]], dry_run: bool, *, disk_quota_mb: int | None = None
) -> FileEdited:
    """Edit a file; a full disk is reported with the session's quota when it has one."""
    fields: dict[str, Any] = {"path": path, "edits": edits, "dry_run": dry_run, "reply_budget": EDIT_BUDGET}
    return await exchange(
        agent, "file_edit", FileEdited.model_validate, disk_quota_mb=disk_quota_mb, timeout=_CALL_SECONDS, **fields
    )


async def info(agent: AgentClient, path: str) -> FileInfo:
    """Metadata of a path."""
    return await exchange(agent, "file_info", lambda reply: _info(reply, path), path=path)


@functools.lru_cache(maxsize=1024)
def _mode_fields(mode: int) -> tuple[str, str, str]:
    """The type, ls-style permissions and octal mode of an st_mode (a listing has few distinct ones)."""
    kind = (
        "directory"
        if stat.S_ISDIR(mode)
        else "file"
        if stat.S_ISREG(mode)
        else "symlink"
        if stat.S_ISLNK(mode)
        else "other"
    )
    return kind, stat.filemode(mode), oct(stat.S_IMODE(mode))


class _Rows:
    """Listing rows (agent/framing.py LIST_COLUMNS) -> FileInfo's fields. The type, permissions and mode
    are derived here from st_mode, so the sandbox cannot make them disagree; a time seen before (files
    made together share them) is converted once."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.times: dict[float, datetime] = {}

    def time(self, value: Any) -> datetime:
        if type(value) is not float and type(value) is not int:
            raise ReplyShapeError("a listing row's time is not a number")
        known = self.times.get(value)
        if known is None:
            try:
                known = self.times[value] = datetime.fromtimestamp(value, UTC)
            except (OverflowError, ValueError, OSError):
                raise ReplyShapeError("a listing row's time is out of range") from None
        return known

    def entry(self, row: Any) -> dict[str, Any]:
        if not isinstance(row, list) or len(row) != len(LIST_COLUMNS):
            raise ReplyShapeError(f"a listing row is not a list of {len(LIST_COLUMNS)} values")
        name, mode, size, modified, changed, accessed, target = row
        if not isinstance(name, str) or type(mode) is not int or not 0 <= mode < 1 << 32:
            raise ReplyShapeError("a listing row's name or mode is not a string and a 32-bit number")
        kind, permissions, octal = _mode_fields(mode)
        return {
            "path": f"{self.directory}/{name}",
            "name": name,
            "type": kind,
            "size": size,
            "permissions": permissions,
            "mode": octal,
            "modified": self.time(modified),
            "changed": self.time(changed),
            "accessed": self.time(accessed),
            "target": target,
        }


#: Every entry of a listing validated in one call (the fields of each are checked as FileInfo's).
_ENTRIES: TypeAdapter[list[FileInfo]] = TypeAdapter(list[FileInfo])


async def listing(agent: AgentClient, path: str, max_entries: int) -> DirectoryListing:
    """A directory's entries: compact rows from the agent, checked and made records in one pass."""

    def check(reply: dict[str, Any]) -> DirectoryListing:
        rows = field(reply, "rows", list)
        if len(rows) > max_entries:
            raise ReplyShapeError(f"'rows' has {len(rows)} entries, more than the {max_entries} asked for")
        made = _Rows(path.rstrip("/"))
        entries = _ENTRIES.validate_python([made.entry(row) for row in rows])
        total, truncated = field(reply, "total", int), field(reply, "truncated", bool)
        return DirectoryListing(path=path, entries=entries, total=total, truncated=truncated)

    budget = max_entries * ENTRY_BYTES + PATH_BYTES + 1024
    return await exchange(
        agent, "file_list", check, path=path, max_entries=max_entries, timeout=_CALL_SECONDS, reply_budget=budget
    )


async def search(
    agent: AgentClient, path: str, pattern: str, exclude_patterns: list[str], max_results: int
) -> SearchResult:
    """Glob search."""

    def check(reply: dict[str, Any]) -> SearchResult:
        matches = field(reply, "matches", list)
        if len(matches) > max_results or not all(isinstance(m, str) for m in matches):
            raise ReplyShapeError("'matches' is not a list of at most max_results paths")
        return SearchResult.model_validate({**reply, "path": path, "pattern": pattern, "matches": matches})

    return await exchange(
        agent,
        "file_search",
        check,
        path=path,
        pattern=pattern,
        exclude_patterns=exclude_patterns,
        max_results=max_results,
        timeout=_CALL_SECONDS,
        reply_budget=(max_results + 1) * PATH_BYTES + 1024,
    )


async def mkdir(agent: AgentClient, path: str) -> DirectoryCreated:
    """mkdir -p."""
    return await exchange(agent, "file_mkdir", DirectoryCreated.model_validate, path=path)


async def move(agent: AgentClient, source: str, destination: str) -> FileMoved:
    """Rename without replacing."""
    return await exchange(
        agent, "file_move", FileMoved.model_validate, source=source, destination=destination, timeout=_CALL_SECONDS
    )
