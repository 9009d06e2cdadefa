"""Small pieces every rendering uses: names, label maps, times, counts."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

#: Characters that would break a one-entry-per-line rendering, or hide what a name really is.
_UNSAFE = {chr(c) for c in range(32)} | {"\x7f"}


def name(text: str) -> str:
    """`text` as is, or JSON-quoted when it holds a control character or edge spaces (so one line stays one)."""
    if text and text.strip() == text and not (_UNSAFE & set(text)):
        return text
    return json.dumps(text, ensure_ascii=False)


def labels(mapping: Mapping[str, str]) -> str:
    """A label map as compact JSON ({} when empty): unambiguous whatever the keys and values hold."""
    return json.dumps(dict(mapping), ensure_ascii=False, separators=(",", ":"))


def when(moment: datetime) -> str:
    """A time as UTC ISO 8601 to the second."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """'1 file', '2 files', '1,000 files' ('1 entry', '2 entries' with `nouns`)."""
    return f"{count:,} {noun if count == 1 else nouns or noun + 's'}"


def join_body(head: str, body: str) -> str:
    """A header line, then the body (nothing more when the body is empty)."""
    return f"{head}\n{body}" if body else head


def lines(head: str, body: Iterable[str]) -> str:
    """A header line, then one line per item."""
    return "\n".join((head, *body))
