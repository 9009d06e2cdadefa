"""The in-session tools of the emulator (shell, read_file, write_file, ...), over a local backend.

Each answers with an MCP CallToolResult in the shape an AgentBay image's tool servers use
(shared/agentbay-wire.md): text content, `isError` for failures, `[DIR]`/`[FILE]` listings,
`key: value` file info, a fenced diff from edit_file, and the shell's wrapped JSON
`{exit_code, stdout, stderr}` with `[timeout]` in the text when a command ran out of time.
"""

from __future__ import annotations

import base64
import json
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.records import ReadSpan, ShellCommand
from agentbay_mcp.emulator import desktop_tools
from agentbay_mcp.emulator.desktop_tools import DesktopState, DesktopToolError
from agentbay_mcp.errors import AgentBayMCPError, WindowNotFoundError
from agentbay_mcp.services.commands.output_text import capped_text

#: The shell tool returns at most this much of each stream (the rest is cut in the middle, marked).
SHELL_OUTPUT_CAP = 1024 * 1024
#: read_file without a length returns at most this much.
MAX_READ_BYTES = 16 * 1024 * 1024
DEFAULT_SHELL_TIMEOUT_MS = 50_000

ToolHandler = Callable[[LocalBackend, str, dict[str, Any]], Awaitable[str]]

#: tool name -> the server inside the session that offers it (the ToolList of every session).
SERVERS = {
    "shell": "wuying_shell",
    "read_file": "wuying_filesystem",
    "write_file": "wuying_filesystem",
    "edit_file": "wuying_filesystem",
    "get_file_info": "wuying_filesystem",
    "list_directory": "wuying_filesystem",
    "search_files": "wuying_filesystem",
    "create_directory": "wuying_filesystem",
    "move_file": "wuying_filesystem",
}


class ToolFailedError(Exception):
    """A tool failed: its text goes back with isError true."""


def tool_list() -> list[dict[str, Any]]:
    """The ToolList offered with every session."""
    return [
        {"name": name, "description": f"{name} (emulated)", "inputSchema": {"type": "object"}, "server": server}
        for name, server in {**SERVERS, **desktop_tools.SERVERS}.items()
    ]


def result(text: str, is_error: bool = False) -> dict[str, Any]:
    """An MCP CallToolResult with one text block."""
    return {"content": [{"type": "text", "text": text}], "isError": is_error}


def _str(args: dict[str, Any], name: str, default: str | None = None) -> str:
    value = args.get(name, default)
    if not isinstance(value, str):
        raise ToolFailedError(f"argument {name!r} must be a string")
    return value


def _int(args: dict[str, Any], name: str, default: int) -> int:
    value = args.get(name, default)
    if value is None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ToolFailedError(f"argument {name!r} must be a non-negative integer")
    return value


async def shell(backend: LocalBackend, session_id: str, args: dict[str, Any]) -> str:
    """Run a command to completion (or its timeout); wrapped JSON; non-zero exit is a tool error."""
    command = _str(args, "command")
    timeout_ms = _int(args, "timeout_ms", DEFAULT_SHELL_TIMEOUT_MS) or DEFAULT_SHELL_TIMEOUT_MS
    cwd = args.get("cwd") if isinstance(args.get("cwd"), str) else None
    envs = args.get("envs") or {}
    if not isinstance(envs, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in envs.items()):
        raise ToolFailedError("argument 'envs' must map strings to strings")
    shell_command = ShellCommand(command=command, cwd=cwd, env=envs)
    outcome = await backend.processes.run_process(session_id, shell_command, wait_ms=timeout_ms, cap=SHELL_OUTPUT_CAP)
    timed_out = outcome.summary is None
    info, streams = outcome.info, outcome.summary
    if streams is None:
        proc_id = outcome.info.proc_id
        with anyio.CancelScope(shield=True):
            await backend.processes.kill_process(session_id, proc_id, signal.SIGKILL, 0, "timeout")
            await backend.processes.wait_process(session_id, proc_id, 3000)
            summary = await backend.processes.process_output_summary(session_id, proc_id, SHELL_OUTPUT_CAP)
            await backend.processes.forget_process(session_id, proc_id)
        info, streams = summary.info, summary.streams
    stdout = capped_text("stdout", streams["stdout"])[0]
    stderr = capped_text("stderr", streams["stderr"])[0]
    code = info.exit_code if info.exit_code is not None else 128 + (info.signal or signal.SIGKILL)
    if timed_out:
        stderr += f"\n[timeout] the command ran longer than {timeout_ms} ms and was killed"
    text = json.dumps({"exit_code": code, "stdout": stdout, "stderr": stderr})
    if timed_out or code != 0:
        raise ToolFailedError(text)
    return text


async def read_file(backend: LocalBackend, session_id: str, args: dict[str, Any]) -> str:
    """Bytes from offset (length 0 or absent: to the end); base64 with format=binary, else text."""
    path = _str(args, "path")
    offset, length = _int(args, "offset", 0), _int(args, "length", 0)
    span = ReadSpan(offset=offset, length=length or None)
    chunk = await backend.files.read_file(
        session_id, path, span, min(length, MAX_READ_BYTES) if length else MAX_READ_BYTES
    )
    if args.get("format") == "binary":
        return base64.b64encode(chunk.data).decode()
    return chunk.data.decode("utf-8", errors="replace")


async def write_file(backend: LocalBackend, session_id: str, args: dict[str, Any]) -> str:
    """Write text, overwrite or append."""
    path, mode = _str(args, "path"), _str(args, "mode", "overwrite")
    if mode not in ("overwrite", "append"):
        raise ToolFailedError("mode must be 'overwrite' or 'append'")
    await backend.files.write_file(session_id, path, _str(args, "content").encode(), mode)
    return f"Successfully wrote to {path}"


async def edit_file(backend: LocalBackend, session_id: str, args: dict[str, Any]) -> str:
    """Exact replacements; answers with a fenced unified diff."""
    edits = args.get("edits")
    if not isinstance(edits, list) or not all(isinstance(e, dict) for e in edits):
        raise ToolFailedError("edits must be a list of {oldText, newText}")
    pairs = [{"old_text": str(e.get("oldText", "")), "new_text": str(e.get("newText", ""))} for e in edits]
    edited = await backend.files.edit_file(session_id, _str(args, "path"), pairs, bool(args.get("dryRun", False)))
    return f"```diff\n{edited.diff}\n```"


async def get_file_info(backend: LocalBackend, session_id: str, args: dict[str, Any]) -> str:
    """`key: value` lines."""
    info = await backend.files.file_info(session_id, _str(args, "path"))
    lines = {
        "name": info.name,
        "size": str(info.size),
        "isDirectory": str(info.type == "directory").lower(),
        "isFile": str(info.type == "file").lower(),
        "isSymlink": str(info.type == "symlink").lower(),
        "permissions": info.mode[-3:] if info.mode else "",
        "modified": info.modified.isoformat(),
        "changed": info.changed.isoformat(),
        "accessed": info.accessed.isoformat(),
    }
    if info.target:
        lines["target"] = info.target
    return "\n".join(f"{key}: {value}" for key, value in lines.items())


async def list_directory(backend: LocalBackend, session_id: str, args: dict[str, Any]) -> str:
    """`[DIR] name` / `[FILE] name` lines."""
    listing = await backend.files.list_directory(session_id, _str(args, "path"), 100_000)
    return "\n".join(f"[{'DIR' if e.type == 'directory' else 'FILE'}] {e.name}" for e in listing.entries)


async def search_files(backend: LocalBackend, session_id: str, args: dict[str, Any]) -> str:
    """Matching paths, one a line, or 'No matches found'."""
    excludes = [p.strip() for p in str(args.get("excludePatterns") or "").split(",") if p.strip()]
    found = await backend.files.search_files(session_id, _str(args, "path"), _str(args, "pattern"), excludes, 10_000)
    return "\n".join(found.matches) if found.matches else "No matches found"


async def create_directory(backend: LocalBackend, session_id: str, args: dict[str, Any]) -> str:
    """mkdir -p."""
    path = _str(args, "path")
    await backend.files.create_directory(session_id, path)
    return f"Successfully created directory {path}"


async def move_file(backend: LocalBackend, session_id: str, args: dict[str, Any]) -> str:
    """Rename without replacing."""
    source, destination = _str(args, "source"), _str(args, "destination")
    await backend.files.move_file(session_id, source, destination)
    return f"Successfully moved {source} to {destination}"


HANDLERS: dict[str, ToolHandler] = {
    "shell": shell,
    "read_file": read_file,
    "write_file": write_file,
    "edit_file": edit_file,
    "get_file_info": get_file_info,
    "list_directory": list_directory,
    "search_files": search_files,
    "create_directory": create_directory,
    "move_file": move_file,
}


async def call_tool(
    backend: LocalBackend, session_id: str, name: str, args: dict[str, Any], desk: DesktopState
) -> dict[str, Any]:
    """Run one in-session tool; failures come back as isError results, as an MCP server's would."""
    try:
        if name in desktop_tools.HANDLERS:
            return result(await desktop_tools.HANDLERS[name](backend, session_id, args, desk))
        handler = HANDLERS.get(name)
        if handler is None:
            return result(f"Tool {name!r} is not available in this (emulated) session image.", is_error=True)
        return result(await handler(backend, session_id, args))
    except (ToolFailedError, DesktopToolError) as exc:
        return result(str(exc), is_error=True)
    except WindowNotFoundError as exc:
        return result(f"Error: window not found: {exc}", is_error=True)
    except AgentBayMCPError as exc:
        return result(f"Error: {exc}", is_error=True)
