"""Snapshot helpers: record MCP tool calls with run-to-run noise replaced by stable placeholders.

Only what differs between two runs of the same script is replaced: ids the server makes up
(sessions, processes, cursors, page tokens, windows, pids), clock times and durations, and the
size of screenshot images. The same raw id always becomes the same placeholder (`<session:1>`),
numbered in order of first appearance, so a result that names the wrong session still shows up.
Everything else, byte for byte, is what the client saw.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

from mcp import Client
from mcp_types import CallToolResult

SNAPSHOTS = Path(__file__).parent / "snapshots"

#: key -> placeholder kind: ids the server invents, mapped consistently across calls.
ID_KEYS = {
    "session_id": "session",
    "process_id": "proc",
    "proc_id": "proc",
    "cursor": "cursor",
    "next_token": "token",
    "window_id": "window",
    "active_window_id": "window",
    "window_ids": "window",
    "pid": "pid",
}
#: key -> fixed placeholder: measurements that differ on every run (not ids: nothing to relate).
VARYING_KEYS = {"duration_ms": "<ms>", "elapsed_ms": "<ms>", "bytes": "<bytes>"}

SESSION_RE = re.compile(r"session-[0-9a-f]{24}")
TIME_RE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?")
#: Command summaries that carry the measured duration.
DURATION_RE = re.compile(r"(Exited with code -?\d+|Killed by signal \d+) after \d+ ms")
#: A process line's elapsed time (tools/text/commands.py: "<id> running 12 ms, ...").
ELAPSED_RE = re.compile(r"(running|exited with code -?\d+|killed by signal \d+) \d+ ms,")
#: Ids inside rendered text: window ids (a window line's first number, "window N", "child N",
#: "active: N", "windows [N, M]") and pids ("pid N"), numbered like the same ids in structured content.
TEXT_IDS = (
    ("window", re.compile(r"(?m)^(\d+)(?= .* \d+x\d+\+-?\d+\+-?\d+)")),
    ("window", re.compile(r"\b(?:[Ww]indow|child|active:) (\d+)\b")),
    ("window", re.compile(r"(?<=windows \[)([\d, ]*)(?=\])")),
    ("pid", re.compile(r"(?<=\bpid )(\d+)")),
    ("port", re.compile(r"(?<=127\.0\.0\.1:)(\d+)")),  # a port link's host port
)
JSON_STRING = r'"(?:[^"\\]|\\.)*"'
#: `"key": value` inside JSON text, for the keys above (value: a string, a number, null or a list of ints).
KEY_VALUE_RE = re.compile(
    r'"(?P<key>' + "|".join(map(re.escape, [*ID_KEYS, *VARYING_KEYS])) + r')"(?P<sep>:\s*)'
    r"(?P<value>" + JSON_STRING + r"|-?\d+|null|\[[\d,\s]*\])"
)


class Normaliser:
    """Replaces run-dependent values with placeholders; one instance per recorded script."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], str] = {}
        self._raw_strings: dict[str, str] = {}
        self._counts: Counter[str] = Counter()
        self._window_ids: dict[str, str] = {}

    def placeholder(self, kind: str, raw: object) -> str:
        key = (kind, str(raw))
        if key not in self._seen:
            self._counts[kind] += 1
            self._seen[key] = f"<{kind}:{self._counts[kind]}>"
            if kind == "window":  # X ids are large: found by value anywhere in rendered text
                self._window_ids[str(raw)] = self._seen[key]
            if isinstance(raw, str) and len(raw) >= 4:
                # Ids the server invented also appear inside messages: replace them there too.
                self._raw_strings[raw] = self._seen[key]
        return self._seen[key]

    def text(self, value: str) -> str:
        """A free-form string: JSON text of a result, a message, an error."""
        value = KEY_VALUE_RE.sub(self._key_value, value)
        value = SESSION_RE.sub(lambda m: self.placeholder("session", m.group()), value)
        value = TIME_RE.sub("<time>", value)
        value = DURATION_RE.sub(r"\1 after <ms> ms", value)
        value = ELAPSED_RE.sub(r"\1 <ms> ms,", value)
        for kind, pattern in TEXT_IDS:
            value = pattern.sub(lambda m, kind=kind: self._ids(kind, m), value)
        value = re.sub(r"\b\d{5,}\b", lambda m: self._window_ids.get(m.group(), m.group()), value)
        # Longest first, so an id that contains another is replaced whole.
        for raw in sorted(self._raw_strings, key=len, reverse=True):
            value = value.replace(raw, self._raw_strings[raw])
        return value

    def _ids(self, kind: str, match: re.Match[str]) -> str:
        """The id numbers in `match`'s group 1 as placeholders, the rest of the match kept."""
        numbered = re.sub(r"\d+", lambda n: self.placeholder(kind, int(n.group())), match.group(1))
        start, end = match.span(1)
        whole = match.group()
        return whole[: start - match.start()] + numbered + whole[end - match.start() :]

    def _key_value(self, match: re.Match[str]) -> str:
        key, raw = match.group("key"), json.loads(match.group("value"))
        return f'"{key}"{match.group("sep")}{json.dumps(self.value(raw, key))}'

    def value(self, value: Any, key: str | None = None) -> Any:
        """A structured value (arguments, structuredContent), walked recursively."""
        if isinstance(value, dict):
            return {k: self.value(v, k) for k, v in value.items()}
        if value is None or isinstance(value, bool):
            return value
        if key in VARYING_KEYS and isinstance(value, int | float):
            return VARYING_KEYS[key]
        if key in ID_KEYS:
            items = value if isinstance(value, list) else [value]
            found = [self.placeholder(ID_KEYS[key], item) for item in items]
            return found if isinstance(value, list) else found[0]
        if isinstance(value, list):
            return [self.value(item) for item in value]
        return self.text(value) if isinstance(value, str) else value


class Recorder:
    """Calls tools through a real MCP client and keeps each normalised call for the snapshot."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.normaliser = Normaliser()
        self.calls: list[dict[str, Any]] = []
        #: (tool, result) of every call as received, for checks the placeholders would spoil.
        self.raw: list[tuple[str, CallToolResult]] = []

    async def __call__(self, tool: str, **arguments: Any) -> dict[str, Any]:
        """Call `tool`, record it, and return its raw structured content ({} for none)."""
        result = await self.client.call_tool(tool, arguments, read_timeout_seconds=60)
        self.calls.append(self.record(tool, arguments, result))
        self.raw.append((tool, result))
        return dict(result.structured_content or {})

    def request(self, method: str, params: dict[str, Any], result: Any) -> None:
        """Record a non-tool request (resources, prompts): its normalised params and result.

        The result's own `_meta` is left out, as for tool calls: the protocol layer fills it (the
        2026 era names the server there), the same for every request.
        """
        norm = self.normaliser
        entry = {"request": method, "params": norm.value(params)}
        dumped = result.model_dump(mode="json", by_alias=True, exclude={"meta"})
        self.calls.append(entry | {"result": norm.value(dumped)})

    def record(self, tool: str, arguments: dict[str, Any], result: CallToolResult) -> dict[str, Any]:
        norm = self.normaliser
        # Arguments first: ids the script passes are numbered where the reader meets them.
        entry: dict[str, Any] = {"tool": tool, "arguments": norm.value(arguments)}
        # The structured content before the text, so ids get their numbers from named fields.
        structured = norm.value(result.structured_content)
        entry["isError"] = result.is_error
        entry["content"] = [self.block(block.model_dump(mode="json", by_alias=True)) for block in result.content]
        entry["structuredContent"] = structured
        return entry

    def block(self, block: dict[str, Any]) -> dict[str, Any]:
        """A content block: text normalised; an image's bytes (different every time) left out."""
        kept = {k: v for k, v in block.items() if v is not None}
        if "text" in kept:
            kept["text"] = self.normaliser.text(kept["text"])
        if "data" in kept:
            kept["data"] = f"<base64 {kept.get('mimeType', 'data')}>"
        return kept


def check_snapshot(name: str, actual: Any) -> None:
    """Compare `actual` with tests/e2e/snapshots/`name`, or rewrite the file when UPDATE_SNAPSHOTS=1."""
    path = SNAPSHOTS / name
    text = json.dumps(actual, indent=2, ensure_ascii=False) + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    assert path.exists(), f"{path} is missing: run the test with UPDATE_SNAPSHOTS=1 to create it"
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = difflib.unified_diff(
            expected.splitlines(keepends=True), text.splitlines(keepends=True), f"{name} (snapshot)", f"{name} (now)"
        )
        raise AssertionError(
            f"{name} differs from the snapshot (UPDATE_SNAPSHOTS=1 rewrites it if the change is intended):\n"
            + "".join(diff)
        )
