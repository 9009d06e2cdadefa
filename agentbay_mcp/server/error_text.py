"""A failed call's text for a model: one sentence of what went wrong, one of what to do.

The SDK prefixes every tool error with "Error executing tool <name>: " (the model knows which tool
it called) and reports bad arguments as pydantic's multi-line dump, with a documentation URL per
error. Both are rewritten here, once for every tool, before the answer leaves the server.
"""

from __future__ import annotations

import re
from typing import Any

_VALIDATION_HEAD = re.compile(r"^\d+ validation errors? for \w+\n")
#: One pydantic error: its location line, then "  message [type=..., input_value=..., input_type=...]".
_VALIDATION_ITEM = re.compile(
    r"^(?P<loc>\S.*)\n  (?P<msg>.+?)"
    r"(?: \[type=(?P<type>[^,\]]+)(?:, input_value=(?P<value>.*?))?(?:, input_type=\w+)?\])?$",
    re.M,
)
_MAX_VALUE = 40


def compact(tool: str, text: str) -> str:
    """`text` without the SDK's prefix; a validation dump as one line per wrong argument."""
    text = text.removeprefix(f"Error executing tool {tool}: ")
    if not _VALIDATION_HEAD.match(text):
        return text
    body = "\n".join(line for line in text.split("\n")[1:] if not line.strip().startswith("For further information"))
    problems = []
    for match in _VALIDATION_ITEM.finditer(body):
        value = None if match["type"] == "missing" else match["value"]
        got = "" if value is None else f" (got {value if len(value) <= _MAX_VALUE else value[:_MAX_VALUE] + '...'})"
        problems.append(f"{match['loc']}: {match['msg']}{got}")
    if not problems:
        return text
    return f"Invalid arguments: {'; '.join(problems)}. Call {tool} again with arguments its input schema allows."


def compacted(tool: str, result: Any) -> Any:
    """A failed result (the wire dict the SDK hands middleware) with its text blocks compacted."""
    if not isinstance(result, dict) or not isinstance(result.get("content"), list):
        return result
    blocks = [
        {**block, "text": compact(tool, block["text"])}
        if isinstance(block, dict) and isinstance(block.get("text"), str)
        else block
        for block in result["content"]
    ]
    return {**result, "content": blocks}
