"""FileService: the file tools' rules over any backend.

Paths are validated (no NUL, sane length) and made absolute (relative to /home/user) here, but
never resolved: the backend resolves them where the session lives (the local backend inside the
sandbox), so `..` and symlinks can never reach past what the session itself can reach. Caps,
text/image/binary detection and UTF-8 handling live here too. Never imports mcp.
"""

from __future__ import annotations

import base64
import mimetypes
from collections.abc import Sequence
from dataclasses import dataclass

from agentbay_mcp.backends.common.session_paths import SESSION_HOME
from agentbay_mcp.backends.common.utf8 import complete_utf8_prefix
from agentbay_mcp.backends.protocols import Files
from agentbay_mcp.backends.records import FileChunk, ReadSpan
from agentbay_mcp.errors import InvalidArgumentError
from agentbay_mcp.services.files.models import (
    DirectoryCreated,
    DirectoryListing,
    FileContent,
    FileEdited,
    FileInfo,
    FileMoved,
    FileWritten,
    SearchResult,
)
from agentbay_mcp.services.model_base import from_records
from agentbay_mcp.services.session_paths import session_path
from agentbay_mcp.services.sessions.service import SessionService

MAX_WRITE_BYTES = 8 * 1024 * 1024
MAX_IMAGE_BYTES = 4 * 1024 * 1024
MAX_LIST_ENTRIES = 1000
MAX_SEARCH_RESULTS = 1000
MAX_EDITS = 100
_IMAGE_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
)


def image_type(head: bytes) -> str | None:
    """The image MIME type of a file from its first bytes (png, jpeg, gif, webp), or None."""
    for magic, mime in _IMAGE_MAGIC:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


@dataclass(frozen=True)
class ImageRead:
    """An image file, to be shown as MCP image content."""

    data: bytes
    mime_type: str
    content: FileContent


class FileService:
    """Files in sessions."""

    def __init__(
        self,
        sessions: SessionService,
        files: Files,
        *,
        read_cap_bytes: int = 256 * 1024,
        read_max_bytes: int = 1024 * 1024,
    ) -> None:
        self.sessions = sessions
        self.files = files
        #: Per call without `length` (and in line mode): a page a model can afford (256 KiB, ~64k tokens).
        self.read_cap_bytes = read_cap_bytes
        #: Per call at most when the client names a `length`: fewer calls for clients that want whole
        #: files (1 MiB in one call). Larger pages are slower, not faster, through the Python client,
        #: which joins a long message's pieces quadratically (bench/bench_reads.py).
        self.read_max_bytes = max(read_max_bytes, read_cap_bytes)

    async def read_file(
        self,
        conversation: str,
        session_id: str,
        path: str,
        offset: int = 0,
        length: int | None = None,
        start_line: int | None = None,
        line_count: int | None = None,
    ) -> FileContent | ImageRead:
        """Text (UTF-8), an image, or base64 for other binary; ranged and capped."""
        path = session_path(path)
        if not isinstance(offset, int) or offset < 0:
            raise InvalidArgumentError("offset must be a byte offset >= 0")
        if length is not None and (not isinstance(length, int) or length < 0):
            raise InvalidArgumentError("length must be a number of bytes >= 0")
        if start_line is not None and (not isinstance(start_line, int) or start_line < 1):
            raise InvalidArgumentError("start_line counts from 1")
        if line_count is not None and (not isinstance(line_count, int) or line_count < 1):
            raise InvalidArgumentError("line_count must be at least 1")
        async with self.sessions.in_use(conversation, session_id):
            span = ReadSpan(offset=offset, length=length, start_line=start_line, line_count=line_count)
            # Only bytes asked for by number lift the page: a line count says nothing of their size.
            cap = self.read_max_bytes if length is not None and start_line is None else self.read_cap_bytes
            chunk = await self.files.read_file(session_id, path, span, cap)
            image = image_type(chunk.head) if offset == 0 and start_line is None else None
            if image is not None and chunk.size <= MAX_IMAGE_BYTES:
                if chunk.size > len(chunk.data):
                    chunk = await self.files.read_file(session_id, path, ReadSpan(), chunk.size)
                content = FileContent(
                    path=path,
                    encoding="image",
                    content="",
                    mime_type=image,
                    size=chunk.size,
                    offset=0,
                    length=len(chunk.data),
                    next_offset=None,
                    message=f"{image} image of {chunk.size:,} bytes, shown as image content.",
                )
                return ImageRead(chunk.data, image, content)
        return self._content(path, chunk, start_line, image)

    def _content(
        self,
        path: str,
        chunk: FileChunk,
        start_line: int | None,
        image: str | None,
    ) -> FileContent:
        data = chunk.data
        at_end = chunk.next_offset >= chunk.size
        binary = image is not None or b"\x00" in data[:8192] or b"\x00" in chunk.head
        if binary:
            mime = image or mimetypes.guess_type(path)[0] or "application/octet-stream"
            _encoding, text, invalid = "base64", base64.b64encode(data).decode(), False
        else:
            if not at_end and start_line is None:
                whole = complete_utf8_prefix(data)
                if 0 < whole < len(data):
                    data = data[:whole]  # never split a character across reads
            mime = mimetypes.guess_type(path)[0] or "text/plain"
            try:  # one pass when the text is valid, as it nearly always is
                text, invalid = data.decode("utf-8"), False
            except UnicodeDecodeError:
                text, invalid = data.decode("utf-8", errors="replace"), True
        next_offset = chunk.offset + len(data)
        done = next_offset >= chunk.size
        if start_line is not None:
            done = chunk.next_line is None
        parts = [f"{len(data):,} bytes from offset {chunk.offset:,} of {chunk.size:,}."]
        if image is not None:
            parts.append(f"This {image} image is over {MAX_IMAGE_BYTES:,} bytes: returned as base64 ranges.")
        if invalid:
            parts.append("Undecodable bytes were replaced with U+FFFD.")
        if not done:
            parts.append(
                f"More follows: call again with start_line={chunk.next_line}."
                if start_line is not None
                else f"More follows: call again with offset={next_offset}."
            )
        return FileContent(
            path=path,
            encoding="base64" if binary else "utf-8",
            content=text,
            mime_type=mime,
            size=chunk.size,
            offset=chunk.offset,
            length=len(data),
            next_offset=None if done else next_offset,
            start_line=start_line,
            next_line=chunk.next_line if start_line is not None else None,
            invalid_utf8=invalid,
            message=" ".join(parts),
        )

    async def write_file(
        self, conversation: str, session_id: str, path: str, content: str, mode: str = "overwrite"
    ) -> FileWritten:
        """Write text; overwrite is atomic, append appends; parents are created."""
        path = session_path(path)
        if mode not in ("overwrite", "append"):
            raise InvalidArgumentError("mode must be 'overwrite' or 'append'")
        if not isinstance(content, str):
            raise InvalidArgumentError("content must be a string")
        data = content.encode("utf-8")
        if len(data) > MAX_WRITE_BYTES:
            raise InvalidArgumentError(
                f"content is {len(data):,} bytes; write at most {MAX_WRITE_BYTES:,} per call (use mode='append' "
                "for the rest)"
            )
        async with self.sessions.in_use(conversation, session_id):
            return from_records(FileWritten, await self.files.write_file(session_id, path, data, mode))

    async def edit_file(
        self, conversation: str, session_id: str, path: str, edits: Sequence[dict[str, str]], dry_run: bool = False
    ) -> FileEdited:
        """Exact-once replacements, applied in order; a unified diff either way."""
        path = session_path(path)
        if not edits or len(edits) > MAX_EDITS:
            raise InvalidArgumentError(f"edits must list 1 to {MAX_EDITS} {{old_text, new_text}} pairs")
        clean = []
        for number, item in enumerate(edits, 1):
            old, new = item.get("old_text"), item.get("new_text")
            if not isinstance(old, str) or not old or not isinstance(new, str):
                raise InvalidArgumentError(f"edit {number} needs a non-empty old_text and a new_text string")
            clean.append({"old_text": old, "new_text": new})
        async with self.sessions.in_use(conversation, session_id):
            return from_records(FileEdited, await self.files.edit_file(session_id, path, clean, dry_run))

    async def list_directory(self, conversation: str, session_id: str, path: str = SESSION_HOME) -> DirectoryListing:
        """Names, types and sizes, capped."""
        path = session_path(path)
        async with self.sessions.in_use(conversation, session_id):
            listing = from_records(
                DirectoryListing, await self.files.list_directory(session_id, path, MAX_LIST_ENTRIES)
            )
        if listing.truncated:
            shown = len(listing.entries)
            listing = listing.model_copy(
                update={
                    "message": f"Showing the first {shown:,} of {listing.total:,} entries (sorted by name); "
                    "use search_files with a pattern to find others."
                }
            )
        return listing

    async def get_file_info(self, conversation: str, session_id: str, path: str) -> FileInfo:
        """Type, size, permissions, times."""
        path = session_path(path)
        async with self.sessions.in_use(conversation, session_id):
            return from_records(FileInfo, await self.files.file_info(session_id, path))

    async def search_files(
        self,
        conversation: str,
        session_id: str,
        path: str,
        pattern: str,
        exclude_patterns: Sequence[str] | None = None,
    ) -> SearchResult:
        """Recursive glob search, capped."""
        path = session_path(path)
        if not isinstance(pattern, str) or not pattern.strip() or len(pattern) > 1000:
            raise InvalidArgumentError("pattern must be a glob such as '*.py' or 'src/**/*.ts'")
        excludes = [str(p) for p in (exclude_patterns or [])][:100]
        async with self.sessions.in_use(conversation, session_id):
            found = await self.files.search_files(session_id, path, pattern, excludes, MAX_SEARCH_RESULTS)
        result = from_records(SearchResult, found)
        if result.truncated:
            result = result.model_copy(
                update={"message": "Stopped early (result or time limit): narrow the pattern or the path."}
            )
        return result

    async def create_directory(self, conversation: str, session_id: str, path: str) -> DirectoryCreated:
        """mkdir -p."""
        path = session_path(path)
        async with self.sessions.in_use(conversation, session_id):
            return from_records(DirectoryCreated, await self.files.create_directory(session_id, path))

    async def move_file(self, conversation: str, session_id: str, source: str, destination: str) -> FileMoved:
        """Rename or move; never replaces an existing destination."""
        source, destination = session_path(source, "source"), session_path(destination, "destination")
        async with self.sessions.in_use(conversation, session_id):
            return from_records(FileMoved, await self.files.move_file(session_id, source, destination))
