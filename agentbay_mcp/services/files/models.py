"""The files tools' output models (what the model reads, as structured content)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from agentbay_mcp.backends import records
from agentbay_mcp.services.model_base import OutputModel


class FileContent(OutputModel):
    """What read_file returns (for images the picture itself comes as image content)."""

    path: str
    encoding: Literal["utf-8", "base64", "image"] = Field(
        description="utf-8: content is the text; base64: content is the bytes; image: see the image content."
    )
    content: str
    mime_type: str
    size: int = Field(description="The file's total size in bytes.")
    offset: int = Field(description="Byte offset of the first byte returned.")
    length: int = Field(description="Bytes returned.")
    next_offset: int | None = Field(description="Pass as offset to continue; null when the end was reached.")
    start_line: int | None = None
    next_line: int | None = Field(default=None, description="Pass as start_line to continue (line mode).")
    invalid_utf8: bool = Field(default=False, description="True if undecodable bytes were replaced.")
    message: str


class FileWritten(records.FileWritten, OutputModel):
    """The outcome of write_file."""


class FileEdited(records.FileEdited, OutputModel):
    """The outcome of edit_file."""

    applied: bool = Field(description="False for a dry run: nothing was written.")
    diff: str = Field(description="Unified diff of the change.")


class FileInfo(records.FileInfo, OutputModel):
    """Metadata of one path."""

    permissions: str = Field(description="ls-style, e.g. -rw-r--r--")
    changed: datetime = Field(description="Last metadata change (Linux keeps no creation time here).")
    target: str | None = Field(default=None, description="Where a symlink points.")


class DirectoryListing(records.DirectoryListing, OutputModel):
    """Entries of a directory."""

    entries: list[FileInfo]


class SearchResult(records.SearchResult, OutputModel):
    """Paths matching a glob."""


class DirectoryCreated(records.DirectoryCreated, OutputModel):
    """The outcome of create_directory."""

    created: bool = Field(description="False if it already existed.")


class FileMoved(records.FileMoved, OutputModel):
    """The outcome of move_file."""


# ---- desktop ------------------------------------------------------------------------------------
