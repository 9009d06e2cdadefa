"""The files tools' output models (what the model reads, as structured content)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

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


class FileWritten(OutputModel):
    """The outcome of write_file."""

    path: str
    bytes_written: int
    size: int


class FileEdited(OutputModel):
    """The outcome of edit_file."""

    path: str
    applied: bool = Field(description="False for a dry run: nothing was written.")
    edits: int
    diff: str = Field(description="Unified diff of the change.")


class FileInfo(OutputModel):
    """Metadata of one path."""

    path: str
    name: str
    type: Literal["file", "directory", "symlink", "other"]
    size: int
    permissions: str = Field(description="ls-style, e.g. -rw-r--r--")
    mode: str
    modified: datetime
    changed: datetime = Field(description="Last metadata change (Linux keeps no creation time here).")
    accessed: datetime
    target: str | None = Field(default=None, description="Where a symlink points.")


class DirectoryListing(OutputModel):
    """Entries of a directory."""

    path: str
    entries: list[FileInfo]
    total: int
    truncated: bool
    message: str = ""


class SearchResult(OutputModel):
    """Paths matching a glob."""

    path: str
    pattern: str
    matches: list[str]
    truncated: bool
    message: str = ""


class DirectoryCreated(OutputModel):
    """The outcome of create_directory."""

    path: str
    created: bool = Field(description="False if it already existed.")


class FileMoved(OutputModel):
    """The outcome of move_file."""

    source: str
    destination: str


# ---- desktop ------------------------------------------------------------------------------------
