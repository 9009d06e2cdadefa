"""Session labels: the validation rules and the filter semantics, shared by every backend.

Rules follow AgentBay's (keys and values are non-empty strings, the map is replaced as a whole)
plus limits that keep a label map small enough to store, list and show to a model.
"""

from __future__ import annotations

from collections.abc import Mapping

from agentbay_mcp.backends.common.labels import RESERVED_PREFIX
from agentbay_mcp.errors import InvalidLabelsError

MAX_LABELS = 32
MAX_KEY_LENGTH = 128
MAX_VALUE_LENGTH = 256


def _check_text(kind: str, text: object, limit: int) -> str:
    if not isinstance(text, str):
        raise InvalidLabelsError(f"label {kind}s must be strings, got {type(text).__name__}")
    if not text.strip():
        raise InvalidLabelsError(f"label {kind}s must be non-empty and not only whitespace")
    if len(text) > limit:
        raise InvalidLabelsError(f"label {kind} {text[:40]!r}... is {len(text)} characters; the limit is {limit}")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise InvalidLabelsError(f"label {kind} {text[:40]!r} contains control characters")
    return text


def validate_labels(labels: Mapping[str, str] | None, *, allow_reserved: bool = False) -> dict[str, str]:
    """Return a clean copy of `labels` or raise `InvalidLabelsError` saying what to fix."""
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise InvalidLabelsError("labels must be an object mapping string keys to string values")
    if len(labels) > MAX_LABELS:
        raise InvalidLabelsError(f"{len(labels)} labels given; a session can carry at most {MAX_LABELS}")
    clean: dict[str, str] = {}
    for key, value in labels.items():
        _check_text("key", key, MAX_KEY_LENGTH)
        _check_text("value", value, MAX_VALUE_LENGTH)
        if key.startswith(RESERVED_PREFIX) and not allow_reserved:
            raise InvalidLabelsError(f"label keys starting with {RESERVED_PREFIX!r} are reserved for the server")
        clean[key] = value
    return clean


def matches(labels: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    """True when `labels` carries every (key, value) pair of `wanted` (an empty filter matches all)."""
    return all(labels.get(key) == value for key, value in wanted.items())
