"""Turning process output bytes into text for a model: caps, markers, UTF-8 boundaries, cursors."""

from __future__ import annotations

import re

from agentbay_mcp.backends.base import StreamSummary
from agentbay_mcp.backends.common.utf8 import complete_utf8_prefix, skip_utf8_continuation
from agentbay_mcp.errors import InvalidArgumentError

_CURSOR = re.compile(r"^(\d{1,15}):(\d{1,15})$")


def decode(data: bytes) -> str:
    """UTF-8 with undecodable bytes replaced (output is shown, never executed)."""
    return data.decode("utf-8", errors="replace")


def capped_text(name: str, summary: StreamSummary) -> tuple[str, bool, str | None]:
    """(text, truncated, full_path): all of it, or head + a marker saying what was cut + tail.

    The head is cut back and the tail cut forward to whole UTF-8 characters, and the marker counts
    every byte not shown, those few included.
    """
    if summary.total <= len(summary.head) + len(summary.tail):
        return decode(summary.head + summary.tail), False, None
    head = summary.head[: complete_utf8_prefix(summary.head)]
    tail = skip_utf8_continuation(summary.tail)
    cut = summary.total - len(head) - len(tail)
    if summary.full_path and summary.full_complete:
        where = f"The complete {name} ({summary.total:,} bytes) is in {summary.full_path}: read it with read_file."
    elif summary.full_path:
        where = (
            f"The first {summary.full_bytes:,} bytes of {name} are kept in {summary.full_path} "
            f"(the rest was not kept: {summary.note or 'size limit'})."
        )
    else:
        where = f"The full {name} was not kept ({summary.note or 'not requested'})."
    marker = f"\n\n[... {cut:,} bytes of {name} cut here ({summary.total:,} in all). {where} ...]\n\n"
    return decode(head) + marker + decode(tail), True, summary.full_path


def parse_cursor(cursor: str | None) -> dict[str, int]:
    """A process output cursor ("<stdout offset>:<stderr offset>") as offsets."""
    if cursor is None or cursor == "":
        return {"stdout": 0, "stderr": 0}
    match = _CURSOR.match(cursor) if isinstance(cursor, str) else None
    if match is None:
        raise InvalidArgumentError(
            f"cursor {str(cursor)[:40]!r} is not valid: pass the cursor a previous read_process_output "
            "returned, or omit it to read from the start."
        )
    return {"stdout": int(match.group(1)), "stderr": int(match.group(2))}


def format_cursor(offsets: dict[str, int]) -> str:
    """The cursor string for stream offsets."""
    return f"{offsets.get('stdout', 0)}:{offsets.get('stderr', 0)}"
