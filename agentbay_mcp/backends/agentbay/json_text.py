"""JSON from the cloud, parsed so that every malformed answer fails the same way."""

from __future__ import annotations

import json
from typing import Any


def loads(text: str | bytes) -> Any:
    """json.loads, except that JSON nested past the decoder's recursion bound (a few kilobytes of '[' do
    it, well inside every size bound) raises json.JSONDecodeError, as any malformed answer does, rather
    than a RecursionError that no caller expects."""
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("JSON nested too deeply", text if isinstance(text, str) else "", 0) from None
