"""File primitives of the AgentBay backend, over the session's filesystem tools.

Reads and writes go in pieces below the ~63 KB message limit unless the session has a direct
LinkUrl channel; reads ask for base64 (`format: binary`) so offsets are exact bytes and a piece
boundary can never split a character.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from collections.abc import Awaitable, Callable
from typing import Any

from agentbay_mcp.backends.agentbay import tools
from agentbay_mcp.backends.agentbay.tools import Tool
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
    StreamSummary,
)
from agentbay_mcp.errors import BackendError, FileOperationError

#: call(tool, args) -> (text, is_error): one in-session tool call on the session at hand.
ToolCall = Callable[[Tool, dict[str, Any]], Awaitable[tuple[str, bool]]]
#: Line mode reads the file from the start; beyond this, ask for byte ranges instead.
MAX_LINE_SCAN_BYTES = 16 * 1024 * 1024
_KINDS = (
    ("no such file", "not_found"),
    ("not found", "not_found"),
    ("does not exist", "not_found"),
    ("permission denied", "permission_denied"),
    ("read-only", "read_only"),
    ("is a directory", "is_a_directory"),
    ("not a directory", "not_a_directory"),
    ("exists", "exists"),
)


def _failure(tool: Tool, path: str, text: str) -> FileOperationError:
    lowered = text.lower()
    kind = next((k for marker, k in _KINDS if marker in lowered), "failed")
    return FileOperationError(kind, f"{tool.name} failed for {path!r} in the session: {text.strip()[:1000]}")


async def _ok(call: ToolCall, tool: Tool, args: dict[str, Any], path: str) -> str:
    text, is_error = await call(tool, args)
    if is_error:
        raise _failure(tool, path, text)
    return text


async def info(call: ToolCall, path: str) -> FileInfo:
    """Metadata of a path from get_file_info's `key: value` lines."""
    fields = tools.parse_key_values(await _ok(call, tools.GET_FILE_INFO, {"path": path}, path))
    is_dir = fields.get("isDirectory", "").lower() == "true"
    is_link = fields.get("isSymlink", "").lower() == "true"
    is_file = fields.get("isFile", "true").lower() == "true"
    kind = "symlink" if is_link else "directory" if is_dir else "file" if is_file else "other"
    text, mode = tools.permissions(fields.get("permissions", ""), is_dir, is_link)
    try:
        size = int(fields.get("size", "0"))
    except ValueError as exc:
        raise BackendError(f"get_file_info sent a size that is not a number for {path!r}") from exc
    modified = tools.parse_time(fields.get("modified"))
    return FileInfo(
        path=path,
        name=fields.get("name") or posixpath.basename(path.rstrip("/")) or "/",
        type=kind,
        size=size,
        permissions=text,
        mode=mode,
        modified=modified,
        changed=tools.parse_time(fields.get("changed") or fields.get("modified")),
        accessed=tools.parse_time(fields.get("accessed") or fields.get("modified")),
        target=fields.get("target") or None,
    )


async def _read_range(call: ToolCall, path: str, offset: int, length: int, piece: int) -> bytes:
    out = bytearray()
    while len(out) < length:
        want = min(piece, length - len(out))
        args = {"path": path, "offset": offset + len(out), "length": want, "format": "binary"}
        text = await _ok(call, tools.READ_FILE, args, path)
        try:
            data = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise BackendError(f"read_file sent data that is not base64 for {path!r}") from exc
        if len(data) > want:
            raise BackendError(f"read_file sent more bytes than asked for {path!r}")
        out += data
        if len(data) < want:  # the file shrank under us: return what there is
            break
    return bytes(out)


async def read(
    call: ToolCall,
    path: str,
    span: ReadSpan,
    *,
    max_bytes: int,
    piece: int,
) -> FileChunk:
    """A byte range, or whole lines from `span.start_line`, of at most `max_bytes`."""
    offset, length, start_line, line_count = span.offset, span.length, span.start_line, span.line_count
    meta = await info(call, path)
    if meta.type == "directory":
        raise FileOperationError("is_a_directory", f"{path!r} is a directory: use list_directory.")
    size = meta.size
    if start_line is not None:
        return await _read_lines(call, path, size, start_line, line_count, max_bytes, piece)
    start = min(offset, size)
    want = max(0, min(size - start, max_bytes, length if length is not None else size))
    data = await _read_range(call, path, start, want, piece) if want else b""
    head = data[:16] if start == 0 else await _read_range(call, path, 0, min(16, size), piece)
    return FileChunk(data=data, offset=start, size=size, next_offset=start + len(data), head=head)


async def _read_lines(
    call: ToolCall, path: str, size: int, start_line: int, line_count: int | None, max_bytes: int, piece: int
) -> FileChunk:
    if size > MAX_LINE_SCAN_BYTES:
        raise FileOperationError(
            "too_large",
            f"{path!r} is {size:,} bytes: on the agentbay backend line ranges are read from files up to "
            f"{MAX_LINE_SCAN_BYTES:,} bytes. Use offset and length instead.",
        )
    data = await _read_range(call, path, 0, size, piece)
    lines = data.splitlines(keepends=True)
    begin = sum(len(line) for line in lines[: start_line - 1])
    out = bytearray()
    taken = 0
    for line in lines[start_line - 1 :]:
        if (line_count is not None and taken >= line_count) or (out and len(out) + len(line) > max_bytes):
            break
        out += line[: max_bytes - len(out)]
        taken += 1
        if len(out) >= max_bytes:
            break
    more = start_line - 1 + taken < len(lines)
    return FileChunk(
        data=bytes(out),
        offset=min(begin, size),
        size=size,
        next_offset=min(begin, size) + len(out),
        head=data[:16],
        start_line=start_line,
        lines=taken,
        next_line=start_line + taken if more else None,
    )


async def write(call: ToolCall, path: str, data: bytes, mode: str, piece: int) -> FileWritten:
    """Write text in UTF-8-safe pieces: the first with `mode`, the rest appended."""
    try:
        pieces = list(tools.utf8_chunks(data, piece)) or [""]
    except UnicodeDecodeError as exc:
        raise FileOperationError("not_text", "AgentBay's write_file takes text: the content is not UTF-8.") from exc
    for number, text in enumerate(pieces):
        args = {"path": path, "content": text, "mode": mode if number == 0 else "append"}
        await _ok(call, tools.WRITE_FILE, args, path)
    size = (await info(call, path)).size
    return FileWritten(path=path, bytes_written=len(data), size=size)


async def edit(call: ToolCall, path: str, edits: list[dict[str, str]], dry_run: bool) -> FileEdited:
    """Exact replacements; edit_file answers with a unified diff."""
    wire = [{"oldText": e["old_text"], "newText": e["new_text"]} for e in edits]
    text = await _ok(call, tools.EDIT_FILE, {"path": path, "edits": wire, "dryRun": dry_run}, path)
    return FileEdited(path=path, applied=not dry_run, edits=len(edits), diff=tools.strip_diff_fence(text))


async def listing(call: ToolCall, path: str, max_entries: int) -> DirectoryListing:
    """Names and types only: the listing tool gives nothing more, and a call per entry would be slow."""
    entries = tools.parse_listing(await _ok(call, tools.LIST_DIRECTORY, {"path": path}, path))
    entries.sort()
    shown = []
    epoch = tools.parse_time(None)
    for name, is_dir in entries[:max_entries]:
        text, mode = tools.permissions("", is_dir)
        shown.append(
            FileInfo(
                path=posixpath.join(path, name),
                name=name,
                type="directory" if is_dir else "file",
                size=0,
                permissions=text,
                mode=mode,
                modified=epoch,
                changed=epoch,
                accessed=epoch,
            )
        )
    return DirectoryListing(
        path=path,
        entries=shown,
        total=len(entries),
        truncated=len(entries) > max_entries,
        message="On the agentbay backend listings carry names and types only (size 0, times unknown): "
        "call get_file_info for the details of an entry.",
    )


async def search(
    call: ToolCall, path: str, pattern: str, exclude_patterns: list[str], max_results: int
) -> SearchResult:
    """Glob search; 'No matches found' is an empty result."""
    args: dict[str, Any] = {"path": path, "pattern": pattern}
    if exclude_patterns:
        args["excludePatterns"] = ",".join(exclude_patterns)
    text = await _ok(call, tools.SEARCH_FILES, args, path)
    found = [line.strip() for line in text.splitlines() if line.strip() and line.strip() != "No matches found"]
    return SearchResult(path=path, pattern=pattern, matches=found[:max_results], truncated=len(found) > max_results)


async def mkdir(call: ToolCall, path: str) -> DirectoryCreated:
    """mkdir -p; asks first whether it exists, since create_directory does not say."""
    try:
        existing = await info(call, path)
    except FileOperationError as exc:
        if exc.kind != "not_found":
            raise
    else:
        if existing.type != "directory":
            raise FileOperationError("exists", f"{path!r} exists and is not a directory.")
        return DirectoryCreated(path=path, created=False)
    await _ok(call, tools.CREATE_DIRECTORY, {"path": path}, path)
    return DirectoryCreated(path=path, created=True)


async def move(call: ToolCall, source: str, destination: str) -> FileMoved:
    """Rename or move."""
    await _ok(call, tools.MOVE_FILE, {"source": source, "destination": destination}, source)
    return FileMoved(source=source, destination=destination)


async def saved_stream(call: ToolCall, path: str, cap: int, piece: int, size: int | None = None) -> StreamSummary:
    """A command's stream saved at `path` in the session: all of it, or its head and tail within `cap`."""
    if size is None:
        try:
            size = (await info(call, path)).size
        except FileOperationError:
            size = -1  # the command never ran (e.g. the redirect failed): nothing was saved
    if size <= 0:
        return StreamSummary(head=b"", tail=b"", total=0, full_bytes=0, full_complete=False)
    if size <= cap:
        head, tail = await _read_range(call, path, 0, size, piece), b""
    else:
        half = cap // 2
        head = await _read_range(call, path, 0, half, piece)
        tail = await _read_range(call, path, size - (cap - half), cap - half, piece)
    return StreamSummary(head=head, tail=tail, total=size, full_path=path, full_bytes=size, full_complete=True)
