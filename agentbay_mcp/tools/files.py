"""File tools: read, write, edit, list, inspect, search, create directories, move."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp_types import CallToolResult, ImageContent
from pydantic import BaseModel, Field

from agentbay_mcp.auth.scopes import ToolsetServer
from agentbay_mcp.backends.common.session_paths import SESSION_HOME
from agentbay_mcp.services.files import models
from agentbay_mcp.services.files.service import ImageRead
from agentbay_mcp.tools.common import CHANGES, READ_ONLY, REPLACES, SETS, SessionId, tool, tool_call
from agentbay_mcp.tools.text import files as answers

#: Said on read_file and write_file, the first file tools a model reads; every path parameter works so.
Path = Annotated[str, Field(description="Absolute, or relative to /home/user.")]
OtherPath = str


class Edit(BaseModel):
    """One replacement for edit_file."""

    old_text: str
    new_text: str


def _as_result(content: models.FileContent | ImageRead) -> CallToolResult:
    if isinstance(content, ImageRead):
        data = base64.b64encode(content.data).decode()
        return answers.CONTENT.answer(
            content.content, image=ImageContent(type="image", data=data, mime_type=content.mime_type)
        )
    return answers.CONTENT.answer(content)


def register(mcp: ToolsetServer[Any]) -> None:
    """Add the file tools to `mcp`."""

    @tool(mcp, READ_ONLY, answers.CONTENT)
    async def read_file(
        ctx: Context,
        session_id: SessionId,
        path: Path,
        offset: Annotated[int, Field(ge=0)] = 0,
        length: Annotated[int | None, Field(ge=0)] = None,
        start_line: Annotated[int | None, Field(ge=1, description="1-based.")] = None,
        line_count: Annotated[int | None, Field(ge=1)] = None,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            content = await call.files.read_file(
                call.conversation, session_id, path, offset, length, start_line, line_count
            )
        return _as_result(content)

    @tool(mcp, REPLACES, answers.WRITTEN)
    async def write_file(
        ctx: Context,
        session_id: SessionId,
        path: Path,
        content: Annotated[str, Field(description="UTF-8 text, up to 8 MiB.")],
        mode: Literal["overwrite", "append"] = "overwrite",
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.files.write_file(call.conversation, session_id, path, content, mode)
        return answers.WRITTEN.answer(result)

    @tool(mcp, CHANGES, answers.EDITED)
    async def edit_file(
        ctx: Context,
        session_id: SessionId,
        path: OtherPath,
        edits: Annotated[list[Edit], Field(min_length=1)],
        dry_run: bool = False,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            pairs = [edit.model_dump() for edit in edits]
            result = await call.files.edit_file(call.conversation, session_id, path, pairs, dry_run)
        return answers.EDITED.answer(result)

    @tool(mcp, READ_ONLY, answers.LISTING)
    async def list_directory(
        ctx: Context,
        session_id: SessionId,
        path: OtherPath = SESSION_HOME,
        details: bool = False,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.files.list_directory(call.conversation, session_id, path)
        return answers.LISTING.answer(result, text=answers.listing(result, details=details))

    @tool(mcp, READ_ONLY, answers.INFO)
    async def get_file_info(ctx: Context, session_id: SessionId, path: OtherPath) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.files.get_file_info(call.conversation, session_id, path)
        return answers.INFO.answer(result)

    @tool(mcp, READ_ONLY, answers.MATCHES)
    async def search_files(
        ctx: Context,
        session_id: SessionId,
        path: OtherPath,
        pattern: str,
        exclude_patterns: list[str] | None = None,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.files.search_files(call.conversation, session_id, path, pattern, exclude_patterns)
        return answers.MATCHES.answer(result)

    @tool(mcp, SETS, answers.DIRECTORY)
    async def create_directory(ctx: Context, session_id: SessionId, path: OtherPath) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.files.create_directory(call.conversation, session_id, path)
        return answers.DIRECTORY.answer(result)

    @tool(mcp, CHANGES, answers.MOVED)
    async def move_file(
        ctx: Context,
        session_id: SessionId,
        source: str,
        destination: str,
    ) -> CallToolResult:
        async with tool_call(ctx) as call:
            result = await call.files.move_file(call.conversation, session_id, source, destination)
        return answers.MOVED.answer(result)
