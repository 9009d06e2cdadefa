"""File primitives of the local backend: calls into the session's agent, replies validated.

The host never resolves a session path: the agent does, inside the sandbox. Agent error kinds are
translated here, once, into errors that name the path and say what to do.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

from agentbay_mcp.backends.base import FileChunk
from agentbay_mcp.backends.local.agent_client import AgentClient
from agentbay_mcp.backends.local.agent_errors import translated
from agentbay_mcp.models import (
    DirectoryCreated,
    DirectoryListing,
    FileEdited,
    FileInfo,
    FileMoved,
    FileWritten,
    SearchResult,
)

_CALL_SECONDS = 30.0


def _timestamp(value: Any) -> Any:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int | float) else value


def _info(raw: dict[str, Any], path: str) -> FileInfo:
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
    *,
    offset: int,
    length: int | None,
    start_line: int | None,
    line_count: int | None,
    max_bytes: int,
) -> FileChunk:
    """Bytes of a file."""
    async with translated():
        reply = await agent.call(
            "file_read",
            path=path,
            offset=offset,
            length=length,
            start_line=start_line,
            line_count=line_count,
            max_bytes=max_bytes,
            timeout=_CALL_SECONDS,
        )
        reply["data"] = base64.b64decode(reply.get("data", ""))
        reply["head"] = base64.b64decode(reply.get("head", ""))
        chunk = FileChunk.model_validate(reply)
        if len(chunk.data) > max_bytes:
            raise ValueError("more bytes than asked for")
        return chunk


async def write(
    agent: AgentClient, path: str, data: bytes, mode: str, *, disk_quota_mb: int | None = None
) -> FileWritten:
    """Write a file; a full disk is reported with the session's quota when it has one."""
    async with translated(disk_quota_mb=disk_quota_mb):
        reply = await agent.call(
            "file_write", path=path, data=base64.b64encode(data).decode(), mode=mode, timeout=_CALL_SECONDS
        )
        return FileWritten.model_validate(reply)


async def edit(
    agent: AgentClient, path: str, edits: list[dict[str, str]], dry_run: bool, *, disk_quota_mb: int | None = None
) -> FileEdited:
    """Edit a file; a full disk is reported with the session's quota when it has one."""
    async with translated(disk_quota_mb=disk_quota_mb):
        reply = await agent.call("file_edit", path=path, edits=edits, dry_run=dry_run, timeout=_CALL_SECONDS)
        return FileEdited.model_validate(reply)


async def info(agent: AgentClient, path: str) -> FileInfo:
    """Metadata of a path."""
    async with translated():
        return _info(await agent.call("file_info", path=path), path)


async def listing(agent: AgentClient, path: str, max_entries: int) -> DirectoryListing:
    """A directory's entries."""
    async with translated():
        reply = await agent.call("file_list", path=path, max_entries=max_entries, timeout=_CALL_SECONDS)
        entries = [
            _info(e, f"{path.rstrip('/')}/{e.get('name')}") for e in list(reply.get("entries", []))[:max_entries]
        ]
        return DirectoryListing.model_validate({**reply, "path": path, "entries": entries})


async def search(
    agent: AgentClient, path: str, pattern: str, exclude_patterns: list[str], max_results: int
) -> SearchResult:
    """Glob search."""
    async with translated():
        reply = await agent.call(
            "file_search",
            path=path,
            pattern=pattern,
            exclude_patterns=exclude_patterns,
            max_results=max_results,
            timeout=_CALL_SECONDS,
        )
        matches = [str(m) for m in list(reply.get("matches", []))[:max_results]]
        return SearchResult.model_validate({**reply, "path": path, "pattern": pattern, "matches": matches})


async def mkdir(agent: AgentClient, path: str) -> DirectoryCreated:
    """mkdir -p."""
    async with translated():
        return DirectoryCreated.model_validate(await agent.call("file_mkdir", path=path))


async def move(agent: AgentClient, source: str, destination: str) -> FileMoved:
    """Rename without replacing."""
    async with translated():
        return FileMoved.model_validate(
            await agent.call("file_move", source=source, destination=destination, timeout=_CALL_SECONDS)
        )
