"""File tools: read, write, edit, list, inspect, search, create directories, move."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, ImageContent, TextContent
from pydantic import BaseModel, Field

from agentbay_mcp.backends.common.session_paths import SESSION_HOME
from agentbay_mcp.services.files import models
from agentbay_mcp.services.files.service import ImageRead
from agentbay_mcp.tools.common import CHANGES, READ_ONLY, REPLACES, SETS, SessionId, tool, tool_call

Path = Annotated[str, Field(description="Path in the session: absolute, or relative to /home/user.")]


class Edit(BaseModel):
    """One replacement for edit_file."""

    old_text: str = Field(description="Exact text to replace; must occur exactly once in the file.")
    new_text: str = Field(description="Replacement text.")


def _as_result(content: models.FileContent | ImageRead) -> CallToolResult:
    if isinstance(content, ImageRead):
        structured = content.content
        blocks: list[TextContent | ImageContent] = [
            ImageContent(type="image", data=base64.b64encode(content.data).decode(), mime_type=content.mime_type),
            TextContent(type="text", text=structured.message),
        ]
    else:
        structured = content
        blocks = [TextContent(type="text", text=structured.model_dump_json())]
    return CallToolResult(content=blocks, structured_content=structured.model_dump(mode="json"))


def register(mcp: MCPServer[Any]) -> None:
    """Add the file tools to `mcp`."""

    @tool(mcp, READ_ONLY)
    async def read_file(
        ctx: Context,
        session_id: SessionId,
        path: Path,
        offset: Annotated[int, Field(ge=0, description="Byte offset to start at.")] = 0,
        length: Annotated[int | None, Field(ge=0, description="Bytes to read at most.")] = None,
        start_line: Annotated[int | None, Field(ge=1, description="Read whole lines from this line (1-based).")] = None,
        line_count: Annotated[int | None, Field(ge=1, description="How many lines (with start_line).")] = None,
    ) -> Annotated[CallToolResult, models.FileContent]:
        async with tool_call(ctx) as call:
            content = await call.files.read_file(
                call.conversation, session_id, path, offset, length, start_line, line_count
            )
        return _as_result(content)

    @tool(mcp, REPLACES)
    async def write_file(
        ctx: Context,
        session_id: SessionId,
        path: Path,
        content: Annotated[str, Field(description="The text to write (UTF-8), up to 8 MiB per call.")],
        mode: Annotated[Literal["overwrite", "append"], Field(description="overwrite or append.")] = "overwrite",
    ) -> models.FileWritten:
        async with tool_call(ctx) as call:
            return await call.files.write_file(call.conversation, session_id, path, content, mode)

    @tool(mcp, CHANGES)
    async def edit_file(
        ctx: Context,
        session_id: SessionId,
        path: Path,
        edits: Annotated[list[Edit], Field(min_length=1, description="Replacements to apply in order.")],
        dry_run: Annotated[bool, Field(description="Only show the diff.")] = False,
    ) -> models.FileEdited:
        async with tool_call(ctx) as call:
            pairs = [edit.model_dump() for edit in edits]
            return await call.files.edit_file(call.conversation, session_id, path, pairs, dry_run)

    @tool(mcp, READ_ONLY)
    async def list_directory(ctx: Context, session_id: SessionId, path: Path = SESSION_HOME) -> models.DirectoryListing:
        async with tool_call(ctx) as call:
            return await call.files.list_directory(call.conversation, session_id, path)

    @tool(mcp, READ_ONLY)
    async def get_file_info(ctx: Context, session_id: SessionId, path: Path) -> models.FileInfo:
        async with tool_call(ctx) as call:
            return await call.files.get_file_info(call.conversation, session_id, path)

    @tool(mcp, READ_ONLY)
    async def search_files(
        ctx: Context,
        session_id: SessionId,
        path: Path,
        pattern: Annotated[str, Field(description="Glob, e.g. '*.log'.")],
        exclude_patterns: Annotated[list[str] | None, Field(description="Globs to leave out.")] = None,
    ) -> models.SearchResult:
        async with tool_call(ctx) as call:
            return await call.files.search_files(call.conversation, session_id, path, pattern, exclude_patterns)

    @tool(mcp, SETS)
    async def create_directory(ctx: Context, session_id: SessionId, path: Path) -> models.DirectoryCreated:
        async with tool_call(ctx) as call:
            return await call.files.create_directory(call.conversation, session_id, path)

    @tool(mcp, CHANGES)
    async def move_file(
        ctx: Context,
        session_id: SessionId,
        source: Annotated[str, Field(description="Existing path.")],
        destination: Annotated[str, Field(description="New path; must not exist yet.")],
    ) -> models.FileMoved:
        async with tool_call(ctx) as call:
            return await call.files.move_file(call.conversation, session_id, source, destination)
