"""In-session tools of AgentBay images: names, servers, and the shapes of their replies.

The one module that knows what the tools inside a cloud session are called and what they answer
(shared/agentbay-wire.md, checked against wuying-agentbay-sdk), desktop tools (windows, apps,
screenshots, input) included.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

from agentbay_mcp.backends.agentbay.json_text import loads
from agentbay_mcp.backends.common.utf8 import complete_utf8_prefix
from agentbay_mcp.backends.records_desktop import WindowAction


@dataclass(frozen=True)
class Tool:
    """An in-session tool: its name, the MCP server inside the session that has it, and whether a retry is safe."""

    name: str
    server: str
    idempotent: bool


SHELL = Tool("shell", "wuying_shell", idempotent=False)
READ_FILE = Tool("read_file", "wuying_filesystem", idempotent=True)
WRITE_FILE = Tool("write_file", "wuying_filesystem", idempotent=False)
EDIT_FILE = Tool("edit_file", "wuying_filesystem", idempotent=False)
GET_FILE_INFO = Tool("get_file_info", "wuying_filesystem", idempotent=True)
LIST_DIRECTORY = Tool("list_directory", "wuying_filesystem", idempotent=True)
SEARCH_FILES = Tool("search_files", "wuying_filesystem", idempotent=True)
CREATE_DIRECTORY = Tool("create_directory", "wuying_filesystem", idempotent=True)
MOVE_FILE = Tool("move_file", "wuying_filesystem", idempotent=False)

# Desktop (images with one): apps, windows, input, screenshots.
GET_INSTALLED_APPS = Tool("get_installed_apps", "wuying_app", idempotent=True)
START_APP = Tool("start_app", "wuying_app", idempotent=False)
LIST_VISIBLE_APPS = Tool("list_visible_apps", "wuying_app", idempotent=True)
STOP_APP_BY_PID = Tool("stop_app_by_pid", "wuying_app", idempotent=True)
STOP_APP_BY_PNAME = Tool("stop_app_by_pname", "wuying_app", idempotent=True)
STOP_APP_BY_CMD = Tool("stop_app_by_cmd", "wuying_app", idempotent=False)
LIST_ROOT_WINDOWS = Tool("list_root_windows", "wuying_ui", idempotent=True)
GET_ACTIVE_WINDOW = Tool("get_active_window", "wuying_ui", idempotent=True)
WINDOW_ACTIONS = {
    action: Tool(f"{action}_window", "wuying_ui", idempotent=action != "close") for action in get_args(WindowAction)
}
FOCUS_MODE = Tool("focus_mode", "wuying_ui", idempotent=True)
CLICK_MOUSE = Tool("click_mouse", "wuying_ui", idempotent=False)
MOVE_MOUSE = Tool("move_mouse", "wuying_ui", idempotent=True)
DRAG_MOUSE = Tool("drag_mouse", "wuying_ui", idempotent=False)
SCROLL = Tool("scroll", "wuying_ui", idempotent=False)
INPUT_TEXT = Tool("input_text", "wuying_ui", idempotent=False)
PRESS_KEYS = Tool("press_keys", "wuying_ui", idempotent=False)
GET_SCREEN_SIZE = Tool("get_screen_size", "wuying_ui", idempotent=True)
GET_CURSOR_POSITION = Tool("get_cursor_position", "wuying_ui", idempotent=True)
#: The image comes back inline (LinkUrl sessions) or as a URL to download (others).
SCREENSHOT = Tool("screenshot", "wuying_capture", idempotent=True)
SYSTEM_SCREENSHOT = Tool("system_screenshot", "wuying_capture", idempotent=True)
#: Without LinkUrl a message is limited to about 63 KB: read and write in pieces below that. Reads
#: come back base64 (4/3 larger), so a 45 KiB piece is a 60 KiB message.
READ_CHUNK_BYTES = 45 * 1024
#: Writes are measured as JSON-escaped text (a newline costs two bytes, a control character six).
WRITE_CHUNK_BYTES = 48 * 1024
#: Marker an image's shell tool puts in its text when the command ran out of time.
TIMEOUT_MARKER = "[timeout]"


def tool_servers(tool_list: Any) -> dict[str, str]:
    """tool name -> server name from a session's `ToolList` (a JSON string or a list)."""
    items = tool_list
    if isinstance(tool_list, str):
        try:
            items = loads(tool_list)
        except json.JSONDecodeError:
            return {}
    if not isinstance(items, list):
        return {}
    found: dict[str, str] = {}
    for item in items:
        if isinstance(item, dict):
            name, server = item.get("name") or item.get("tool"), item.get("server")
            if isinstance(name, str) and isinstance(server, str) and server:
                found[name] = server
    return found


def result_text(data: Any) -> tuple[str, bool]:
    """(text, is_error) of a CallToolResult given as an object or a JSON string (LinkUrl nests it in `result`)."""
    if isinstance(data, str):
        data = loads(data)
    if not isinstance(data, dict):
        raise ValueError("a tool result must be a JSON object")
    if isinstance(data.get("result"), dict):
        data = data["result"]
    content = data.get("content")
    if not isinstance(content, list):
        raise ValueError("a tool result needs a content list")
    texts = []
    for block in content:
        if isinstance(block, dict) and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif isinstance(block, str):
            texts.append(block)
    return "".join(texts), bool(data.get("isError", False))


@dataclass(frozen=True)
class ShellResult:
    """What the shell tool reported."""

    stdout: str
    stderr: str
    exit_code: int
    timed_out: bool


def parse_shell(text: str, is_error: bool) -> ShellResult:
    """The shell tool's reply: wrapped JSON {exit_code, stdout, stderr} or raw stdout (images differ)."""
    try:
        data = loads(text) if text else None
    except json.JSONDecodeError:
        data = None
    wrapped = isinstance(data, dict) and (
        (isinstance(data.get("exit_code"), int) and ("stdout" in data or "stderr" in data))
        or (isinstance(data.get("stdout"), str) and isinstance(data.get("stderr"), str))
    )
    if isinstance(data, dict) and wrapped:
        stdout, stderr = str(data.get("stdout") or ""), str(data.get("stderr") or "")
        code = data.get("exit_code")
        exit_code = code if isinstance(code, int) and not isinstance(code, bool) else (1 if is_error else 0)
    elif is_error:
        stdout, stderr, exit_code = "", text, 1
    else:
        stdout, stderr, exit_code = text, "", 0
    if is_error and exit_code == 0:
        exit_code = 1  # a tool error always means the command failed
    timed_out = is_error and TIMEOUT_MARKER in (stderr + stdout if wrapped else text)
    return ShellResult(stdout, stderr, exit_code, timed_out)


def parse_key_values(text: str) -> dict[str, str]:
    """`key: value` lines (get_file_info) as a dict."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip():
            found[key.strip()] = value.strip()
    return found


def parse_listing(text: str) -> list[tuple[str, bool]]:
    """`[DIR] name` / `[FILE] name` lines as (name, is_directory)."""
    entries = []
    for raw in text.splitlines():
        line = raw.strip()
        for tag, is_dir in (("[DIR]", True), ("[FILE]", False)):
            if line.startswith(tag) and line[len(tag) :].strip():
                entries.append((line[len(tag) :].strip(), is_dir))
    return entries


def parse_time(value: str | None) -> datetime:
    """An ISO timestamp (or epoch seconds) from a file-info reply; the epoch when unreadable."""
    if value:
        try:
            return datetime.fromtimestamp(float(value), UTC)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        except ValueError:
            pass
    return datetime.fromtimestamp(0, UTC)


def permissions(value: str, is_dir: bool, is_link: bool = False) -> tuple[str, str]:
    """(ls-style string, octal mode) from an octal permissions field such as `644`."""
    try:
        bits = int(value, 8) & 0o7777
    except ValueError:
        return "?", ""
    kind = stat.S_IFLNK if is_link else stat.S_IFDIR if is_dir else stat.S_IFREG
    return stat.filemode(kind | bits), oct(bits)[2:].zfill(4)


def utf8_chunks(data: bytes, size: int) -> Iterator[str]:
    """`data` (UTF-8) in pieces whose JSON-escaped form is at most `size` bytes, never splitting a character."""
    start = 0
    while start < len(data):
        step = size
        while True:
            end = min(len(data), start + step)
            if end < len(data):
                end = start + (complete_utf8_prefix(data[start:end]) or step)
            text = data[start:end].decode("utf-8")
            if step <= 64 or len(json.dumps(text, ensure_ascii=False).encode()) <= size:
                break
            step //= 2  # escapes made it too big: a smaller piece
        yield text
        start = end


def strip_diff_fence(text: str) -> str:
    """The diff inside a ```diff ... ``` fence (how edit_file answers), or the text itself."""
    body = text.strip()
    if body.startswith("```"):
        body = body.split("\n", 1)[1] if "\n" in body else ""
        if body.rstrip().endswith("```"):
            body = body.rstrip()[:-3]
    return body
