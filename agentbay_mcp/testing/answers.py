"""Read a tool's answer back whole: its structured metadata plus the bulk that travels only as text.

Results put their bulk (file text, command output, listings) only in the text block (README, "What a
tool answers"). Tests that check that bulk read it back here, from the text alone, with the grammar
the README documents: so every test that reads `stdout` or `entries` also proves the text carries it
completely and unambiguously. tests/unit/test_answers.py checks these readers against the renderers.
"""

from __future__ import annotations

import ast
import json
import posixpath
import re
from typing import Any

from mcp_types import CallToolResult

STDERR_MARK = "--- stderr ---"

_NAME = r'(?:"(?:[^"\\]|\\.)*"|.+?)'
_PROCESS = re.compile(
    r"^(?P<process_id>\S+) (?P<state>running|exited with code (?P<code>-?\d+|None)|killed by signal (?P<sig>\d+)) "
    r"(?P<elapsed_ms>\d+) ms, (?P<stdout_bytes>\d+) B out, (?P<stderr_bytes>\d+) B err, "
    r"stdin (?P<stdin>open|closed): (?P<command>.*)$"
)
_SESSION = re.compile(
    r"^(?P<session_id>\S+) (?P<image_id>\S+) (?P<status>[A-Z_]+)(?: network=(?P<network>\S+))? "
    r"labels=(?P<labels>\{.*?\}) idle-expires=(?P<idle>\S+)"
    r"(?: contexts=(?P<contexts>\[.*?\])(?= workspaces=| NOTICE: |$))?(?: workspaces=(?P<workspaces>\[.*?\]))?"
    r"(?: NOTICE: (?P<notice>.*))?$"
)
_ENTRY = re.compile(rf"^(?P<kind>file|dir|link|other) (?P<size>\d+) (?P<name>{_NAME})(?: -> (?P<target>.*))?$")
_WINDOW = re.compile(
    rf"^(?P<window_id>\d+) (?P<title>{_NAME}) (?P<width>\d+)x(?P<height>\d+)\+(?P<x>-?\d+)\+(?P<y>-?\d+)"
    r"(?: (?P<state>normal|minimized|maximized|fullscreen|unknown)(?: pid (?P<pid>\d+) \((?P<pname>.*)\))?)?$"
)
_INSTALLED = re.compile(
    r"^(?P<name>.*?): (?P<start_cmd>.*?)(?:; stop: (?P<stop_cmd>.*?))?(?:; in: (?P<work_directory>.*?))?"
    r"(?P<system> \[system\])? \((?P<desktop_file>[^()]*)\)$"
)
_VISIBLE = re.compile(r"^pid (?P<pid>\d+) (?P<pname>\S+) windows (?P<ids>\[[\d, ]*\]): (?P<cmdline>.*)$")
_KINDS = {"file": "file", "dir": "directory", "link": "symlink", "other": "other"}


def unpack(tool: str, result: CallToolResult | dict[str, Any]) -> dict[str, Any]:
    """The structured content of a successful call, with the text-only fields of `tool` recovered."""
    if isinstance(result, CallToolResult):
        assert not result.is_error, text_of(result)
        structured = dict(result.structured_content or {})
        text = text_of(result)
    else:
        assert not result.get("isError"), result
        structured = dict(result.get("structuredContent") or {})
        text = "\n".join(block["text"] for block in result["content"] if block.get("type") == "text")
    reader = _READERS.get(tool)
    if reader is None:
        return structured
    return {**{k: v for k, v in reader(text, structured).items() if k not in structured}, **structured}


def text_of(result: CallToolResult) -> str:
    """The text blocks of a result, joined."""
    return "\n".join(getattr(block, "text", "") for block in result.content if getattr(block, "type", "") == "text")


def unquote(name: str) -> str:
    """A name as rendered (JSON-quoted when it held control characters or edge spaces), as it is."""
    return str(json.loads(name)) if name.startswith('"') and name.endswith('"') and len(name) > 1 else name


def split_output(body: str) -> tuple[str, str]:
    """(stdout, stderr) of a rendered output body: stdout, then a newline, the marker line and stderr."""
    stdout, mark, stderr = body.partition(f"\n{STDERR_MARK}\n")
    return (stdout, stderr) if mark else (body, "")


def _command(text: str, _: dict[str, Any]) -> dict[str, Any]:
    message, _newline, body = text.partition("\n")
    if not _newline:
        message = message.removesuffix(" No output.")
    stdout, stderr = split_output(body)
    return {"message": message, "stdout": stdout, "stderr": stderr}


def process(line: str) -> dict[str, Any]:
    """A process line as the fields of a process status."""
    match = _PROCESS.match(line)
    assert match, line
    code = match["code"]
    return {
        "process_id": match["process_id"],
        "running": match["state"] == "running",
        "exit_code": None if code in (None, "None") else int(code),
        "signal": int(match["sig"]) if match["sig"] else None,
        "elapsed_ms": int(match["elapsed_ms"]),
        "stdout_bytes": int(match["stdout_bytes"]),
        "stderr_bytes": int(match["stderr_bytes"]),
        "stdin_open": match["stdin"] == "open",
        "command": unquote(match["command"]),
    }


def _output(text: str, _: dict[str, Any]) -> dict[str, Any]:
    head, second, rest = [*text.split("\n", 2), "", ""][:3]
    if second.endswith(" No new output."):
        rest = ""
    stdout, stderr = split_output(rest)
    return {"stdout": stdout, "stderr": stderr, "status_line": head, "process_id": head.split(" ", 1)[0]}


def _status(text: str, _: dict[str, Any]) -> dict[str, Any]:
    return process(text.split("\n", 1)[0])


def _written(text: str, _: dict[str, Any]) -> dict[str, Any]:
    match = re.match(r"^Wrote \d+ bytes to (?P<process_id>\S+); stdin (open|closed)\.$", text)
    assert match, text
    return {"process_id": match["process_id"]}


def _processes(text: str, _: dict[str, Any]) -> dict[str, Any]:
    if text == "No background processes.":
        return {"processes": []}
    return {"processes": [process(line) for line in text.split("\n")]}


def _content(text: str, structured: dict[str, Any]) -> dict[str, Any]:
    head, _newline, content = text.partition("\n")
    message = head.split("): ", 1)[1] if "): " in head else head
    return {"content": content, "message": message, "invalid_utf8": "Undecodable bytes were replaced" in message}


def _entries(text: str, structured: dict[str, Any]) -> dict[str, Any]:
    head, *lines = text.split("\n")
    entries = []
    for line in lines:
        match = _ENTRY.match(line)
        if match is None:  # details=true: permissions size modified name
            permissions, size, modified, rest = line.split(" ", 3)
            name, _arrow, target = rest.partition(" -> ")
            entries.append(
                {"name": unquote(name), "size": int(size), "permissions": permissions, "modified": modified}
                | ({"target": unquote(target)} if _arrow else {})
            )
            continue
        entries.append(
            {
                "name": unquote(match["name"]),
                "type": _KINDS[match["kind"]],
                "size": int(match["size"]),
                "target": unquote(match["target"]) if match["target"] is not None else None,
            }
        )
    message = head.split(". ", 1)[1].rsplit(" (", 1)[0] if ". " in head else ""
    path = re.match(r"^(?P<path>.*?): [\d,]+ entr(?:y|ies)", head)
    assert path, head
    return {"entries": entries, "message": message, "path": path["path"]}


def _matches(text: str, _: dict[str, Any]) -> dict[str, Any]:
    head, *lines = text.split("\n")
    message = head.split("(stopped early: ", 1)[1].rsplit(")", 1)[0] if "(stopped early: " in head else ""
    found = re.match(
        r"^[\d,]+ match(?:es)? for (?P<pattern>'.*'|\".*\") below (?P<path>.*?)(?: \(stopped early: |[:.]$)", head
    )
    assert found, head
    return {
        "matches": [unquote(line) for line in lines],
        "message": message,
        "pattern": ast.literal_eval(found["pattern"]),
        "path": found["path"],
    }


def _diff(text: str, _: dict[str, Any]) -> dict[str, Any]:
    head, _newline, diff = text.partition("\n")
    path = re.match(r"^(?:Edited|Dry run on) (?P<path>.*?): [\d,]+ edits?[.,]", text, re.S)
    assert path, head
    return {"diff": diff, "path": path["path"]}


def _file_written(text: str, _: dict[str, Any]) -> dict[str, Any]:
    match = re.match(r"^Wrote \d+ bytes to (?P<path>.*); size \d+\.$", text, re.S)  # a path may hold newlines
    assert match, text
    return {"path": match["path"]}


def _info(text: str, structured: dict[str, Any]) -> dict[str, Any]:
    match = re.search(
        r": \w+, \d+ bytes, (?P<permissions>\S+) \(\w+\), modified \S+, changed (?P<changed>\S+), "
        r"accessed (?P<accessed>\S+)$",
        text,
    )
    assert match, text
    path = str(structured.get("path", ""))
    name = posixpath.basename(path.rstrip("/")) or path
    return {"name": name, **match.groupdict()}


def _directory(text: str, _: dict[str, Any]) -> dict[str, Any]:
    if text.endswith(" already exists."):
        return {"path": text.removesuffix(" already exists."), "created": False}
    return {"path": text.removeprefix("Created ").removesuffix("."), "created": True}


def _moved(text: str, _: dict[str, Any]) -> dict[str, Any]:
    match = re.match(r"^Moved (?P<source>.*) to (?P<destination>/.*)\.$", text, re.S)
    assert match, text
    return match.groupdict()


def _session(match: re.Match[str]) -> dict[str, Any]:
    return {
        "session_id": match["session_id"],
        "image_id": match["image_id"],
        "status": match["status"],
        "network": match["network"] or "off",
        "labels": json.loads(match["labels"]),
        "idle_expires_at": match["idle"],
        "notice": match["notice"],
        "contexts": json.loads(match["contexts"] or "[]"),
        "workspaces": json.loads(match["workspaces"] or "[]"),
    }


def _sessions(text: str, _: dict[str, Any]) -> dict[str, Any]:
    sessions = []
    for line in text.split("\n")[1:]:
        match = _SESSION.match(line)
        if match is not None:  # not the header or the "More:" line
            sessions.append(_session(match))
    return {"sessions": sessions}


def _one_session(text: str, _: dict[str, Any]) -> dict[str, Any]:
    match = _SESSION.match(text.split("\n", maxsplit=1)[0].removeprefix("Created session ").removeprefix("Session "))
    assert match, text
    return _session(match)


def _labels(text: str, _: dict[str, Any]) -> dict[str, Any]:
    match = re.match(r"^Labels of (?P<session_id>\S+): (?P<labels>\{.*\})$", text)
    assert match, text
    return {"session_id": match["session_id"], "labels": json.loads(match["labels"])}


def _deleted(text: str, _: dict[str, Any]) -> dict[str, Any]:
    match = re.match(r"^Session (?P<session_id>\S+) deleted: ", text)
    assert match, text
    return {"session_id": match["session_id"], "status": "DELETED"}


def _contexts(text: str, _: dict[str, Any]) -> dict[str, Any]:
    names = [line.split(": ", 1)[0] for line in text.split("\n")[1:]]
    return {"contexts": [{"name": json.loads(n) if n.startswith('"') else n} for n in names]}


def _context(text: str, _: dict[str, Any]) -> dict[str, Any]:
    match = re.search(
        r", created (?P<created_at>\S+), used (?P<used>\S+?)(?:, in use by .*?)?(?:\. NOTICE: (?P<notice>.*))?$",
        text.split("\n", 1)[0],
    )
    assert match, text
    used = match["used"]
    return {
        "created_at": match["created_at"],
        "last_used_at": None if used == "never" else used,
        "notice": match["notice"],
    }


def _context_deleted(text: str, _: dict[str, Any]) -> dict[str, Any]:
    return {"name": unquote(text.removeprefix("Context ").removesuffix(" deleted with its content."))}


def _synced(text: str, _: dict[str, Any]) -> dict[str, Any]:
    return {"session_id": text.split("\n", 1)[0].removeprefix("Synced from ").removesuffix(":")}


def window(line: str) -> dict[str, Any]:
    """A window line (without its child lines) as the fields of a window."""
    match = _WINDOW.match(line)
    assert match, line
    title = match["title"]
    return {
        "window_id": int(match["window_id"]),
        "title": "" if title == "(untitled)" else unquote(title),
        "x": int(match["x"]),
        "y": int(match["y"]),
        "width": int(match["width"]),
        "height": int(match["height"]),
        "state": match["state"],
        "pid": int(match["pid"]) if match["pid"] else None,
        "pname": match["pname"],
        "child_windows": [],
    }


def _windows(text: str, _: dict[str, Any]) -> dict[str, Any]:
    windows: list[dict[str, Any]] = []
    for line in text.split("\n")[1:]:
        if line.startswith("  child "):
            windows[-1]["child_windows"].append(window(line.removeprefix("  child ")))
        else:
            windows.append(window(line))
    return {"windows": windows, "truncated": "(only the newest 200 are listed)" in text.split("\n", 1)[0]}


def _controlled(text: str, structured: dict[str, Any]) -> dict[str, Any]:
    return {"action": "close" if structured.get("closed") else text.split(" ", 1)[0]}


def _screenshot(text: str, _: dict[str, Any]) -> dict[str, Any]:
    return {"format": text.split(" ")[1], "scaled": ", scaled)" in text}


def _installed(text: str, _: dict[str, Any]) -> dict[str, Any]:
    if text == "No applications found.":
        return {"apps": []}
    apps = []
    for line in text.split("\n")[1:]:
        match = _INSTALLED.match(line)
        assert match, line
        apps.append({**match.groupdict(), "system": bool(match["system"])})
    return {"apps": apps}


def _visible(text: str, _: dict[str, Any]) -> dict[str, Any]:
    if text == "No application has a visible window.":
        return {"apps": []}
    apps = []
    for line in text.split("\n")[1:]:
        match = _VISIBLE.match(line)
        assert match, line
        apps.append(
            {
                "pid": int(match["pid"]),
                "pname": match["pname"],
                "window_ids": json.loads(match["ids"]),
                "cmdline": match["cmdline"],
            }
        )
    return {"apps": apps}


def _network(text: str, _: dict[str, Any]) -> dict[str, Any]:
    match = re.match(r"^Network of (?P<session_id>\S+): (?P<network>\S+)$", text)
    assert match, text
    return {"session_id": match["session_id"], "network": match["network"]}


def _link(text: str, _: dict[str, Any]) -> dict[str, Any]:
    match = re.search(r"^Reaches (?P<protocol>\S+) port (?P<port>\d+) of (?P<session_id>\S+) until", text, re.M)
    assert match, text
    return {"protocol": match["protocol"], "session_id": match["session_id"], "port": int(match["port"])}


def _workspace_diff(text: str, structured: dict[str, Any]) -> dict[str, Any]:
    match = re.match(r"^Workspace \S+ of (?P<session_id>[^\s:]+)", text)
    assert match, text
    # The header and one line per change, then the diff (none for ro and rw, which have one line).
    body = text.split("\n", len(structured.get("changes", [])) + 1)
    return {"session_id": match["session_id"], "diff": body[-1] if len(body) > len(structured["changes"]) + 1 else ""}


def _workspace_applied(text: str, _: dict[str, Any]) -> dict[str, Any]:
    match = re.match(r"^Applied .* of (?P<session_id>\S+) to workspace", text)
    assert match, text
    return {"session_id": match["session_id"]}


_READERS = {
    "create_session": _one_session,
    "get_session": _one_session,
    "set_session_labels": _labels,
    "get_session_labels": _labels,
    "delete_session": _deleted,
    "create_context": _context,
    "list_contexts": _contexts,
    "workspace_diff": _workspace_diff,
    "workspace_apply": _workspace_applied,
    "delete_context": _context_deleted,
    "sync_context": _synced,
    "set_session_network": _network,
    "get_link": _link,
    "execute_command": _command,
    "start_process": _status,
    "read_process_output": _output,
    "write_process_input": _written,
    "wait_process": _status,
    "kill_process": _status,
    "list_processes": _processes,
    "read_file": _content,
    "write_file": _file_written,
    "list_directory": _entries,
    "get_file_info": _info,
    "search_files": _matches,
    "edit_file": _diff,
    "create_directory": _directory,
    "move_file": _moved,
    "list_sessions": _sessions,
    "list_windows": _windows,
    "control_window": _controlled,
    "set_focus_mode": lambda text, _: {"on": not text.startswith("Focus mode off")},
    "take_screenshot": _screenshot,
    "input_action": lambda text, _: {"action": text.split(" ", 1)[0]},
    "get_installed_apps": _installed,
    "list_visible_apps": _visible,
}
