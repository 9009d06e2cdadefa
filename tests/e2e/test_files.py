"""File tools through the MCP protocol: every tool, its results and its errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from agentbay_mcp.testing.calls import call, call_error
from agentbay_mcp.testing.servers import stdio_params

pytestmark = pytest.mark.anyio


async def new_session(client: Client) -> str:
    return str((await call(client, "create_session", image_id="code_latest"))["session_id"])


async def test_write_then_read_text(client: Client, state_dir: Path) -> None:
    session_id = await new_session(client)
    written = await call(client, "write_file", session_id=session_id, path="notes/today.md", content="# Hi\nthere\n")
    assert written == {"path": "/home/user/notes/today.md", "bytes_written": 11, "size": 11}
    assert (state_dir / "sessions" / session_id / "home" / "notes" / "today.md").read_text() == "# Hi\nthere\n"
    read = await call(client, "read_file", session_id=session_id, path="/home/user/notes/today.md")
    assert read["content"] == "# Hi\nthere\n"
    assert read["encoding"] == "utf-8"
    assert read["size"] == 11
    assert read["next_offset"] is None
    assert read["invalid_utf8"] is False


async def test_append_and_ranges(client: Client) -> None:
    session_id = await new_session(client)
    await call(client, "write_file", session_id=session_id, path="log.txt", content="abc")
    await call(client, "write_file", session_id=session_id, path="log.txt", content="def", mode="append")
    part = await call(client, "read_file", session_id=session_id, path="log.txt", offset=2, length=3)
    assert part["content"] == "cde"
    assert part["offset"] == 2
    assert part["next_offset"] == 5
    assert "offset=5" in part["message"]
    tail = await call(client, "read_file", session_id=session_id, path="log.txt", offset=5)
    assert tail["content"] == "f"
    assert tail["next_offset"] is None
    beyond = await call(client, "read_file", session_id=session_id, path="log.txt", offset=100)
    assert beyond["content"] == ""


async def test_read_by_lines(client: Client) -> None:
    session_id = await new_session(client)
    text = "".join(f"line {i}\n" for i in range(1, 11))
    await call(client, "write_file", session_id=session_id, path="ten.txt", content=text)
    page = await call(client, "read_file", session_id=session_id, path="ten.txt", start_line=3, line_count=2)
    assert page["content"] == "line 3\nline 4\n"
    assert page["next_line"] == 5
    rest = await call(client, "read_file", session_id=session_id, path="ten.txt", start_line=9)
    assert rest["content"] == "line 9\nline 10\n"
    assert rest["next_line"] is None


async def test_overwrite_is_atomic_and_keeps_the_mode(client: Client, state_dir: Path) -> None:
    session_id = await new_session(client)
    await call(client, "execute_command", session_id=session_id, command="printf old > run.sh; chmod 755 run.sh")
    await call(client, "write_file", session_id=session_id, path="run.sh", content="#!/bin/sh\necho new\n")
    result = await call(client, "execute_command", session_id=session_id, command="./run.sh; ls -a")
    assert result["stdout"].splitlines()[0] == "new"
    assert not [name for name in result["stdout"].split() if name.endswith(".tmp")]
    info = await call(client, "get_file_info", session_id=session_id, path="run.sh")
    assert info["permissions"] == "-rwxr-xr-x"


async def test_edit_file(client: Client) -> None:
    session_id = await new_session(client)
    await call(client, "write_file", session_id=session_id, path="app.py", content="a = 1\nb = 2\nc = 1\n")
    preview = await call(
        client, "edit_file", session_id=session_id, path="app.py",
        edits=[{"old_text": "b = 2", "new_text": "b = 3"}], dry_run=True,
    )  # fmt: skip
    assert preview["applied"] is False
    assert "-b = 2\n+b = 3" in preview["diff"]
    assert (await call(client, "read_file", session_id=session_id, path="app.py"))["content"] == "a = 1\nb = 2\nc = 1\n"
    done = await call(
        client, "edit_file", session_id=session_id, path="app.py",
        edits=[{"old_text": "b = 2", "new_text": "b = 3"}, {"old_text": "c = 1", "new_text": "c = 4"}],
    )  # fmt: skip
    assert done["applied"] is True
    assert (await call(client, "read_file", session_id=session_id, path="app.py"))["content"] == "a = 1\nb = 3\nc = 4\n"
    message = await call_error(
        client, "edit_file", session_id=session_id, path="app.py", edits=[{"old_text": "= ", "new_text": "=="}]
    )
    assert "occurs 3 times" in message
    message = await call_error(
        client, "edit_file", session_id=session_id, path="app.py", edits=[{"old_text": "zzz", "new_text": ""}]
    )
    assert "does not occur" in message


async def test_list_info_search_mkdir_move(client: Client) -> None:
    session_id = await new_session(client)
    created = await call(client, "create_directory", session_id=session_id, path="src/pkg")
    assert created == {"path": "/home/user/src/pkg", "created": True}
    assert (await call(client, "create_directory", session_id=session_id, path="src/pkg"))["created"] is False
    for name in ("src/pkg/a.py", "src/pkg/b.txt", "src/main.py", "node_modules/x.py"):
        await call(client, "write_file", session_id=session_id, path=name, content="x")
    listing = await call(client, "list_directory", session_id=session_id, path="src")
    assert [(e["name"], e["type"]) for e in listing["entries"]] == [("main.py", "file"), ("pkg", "directory")]
    assert listing["truncated"] is False
    found = await call(
        client, "search_files", session_id=session_id, path="/home/user", pattern="*.py",
        exclude_patterns=["node_modules"],
    )  # fmt: skip
    assert found["matches"] == ["/home/user/src/main.py", "/home/user/src/pkg/a.py"]
    info = await call(client, "get_file_info", session_id=session_id, path="src/pkg/a.py")
    assert (info["type"], info["size"]) == ("file", 1)
    await call(client, "execute_command", session_id=session_id, command="ln -s src/main.py link")
    link = await call(client, "get_file_info", session_id=session_id, path="link")
    assert (link["type"], link["target"]) == ("symlink", "src/main.py")
    moved = await call(client, "move_file", session_id=session_id, source="src/pkg/b.txt", destination="/tmp/b.txt")
    assert moved["destination"] == "/tmp/b.txt"
    assert (await call(client, "read_file", session_id=session_id, path="/tmp/b.txt"))["content"] == "x"
    message = await call_error(client, "move_file", session_id=session_id, source="src/main.py", destination="link")
    assert "already exists" in message


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [
        ("read_file", {"path": "missing.txt"}, "No such file"),
        ("read_file", {"path": "/home/user"}, "is a directory"),
        ("read_file", {"path": "a\x00b"}, "NUL"),
        ("read_file", {"path": "x" * 5000}, "limit is 4096"),
        ("read_file", {"path": ""}, "non-empty"),
        ("write_file", {"path": "/usr/evil", "content": "x"}, "Only /home/user and /tmp are writable"),
        ("write_file", {"path": "/home/user", "content": "x"}, "is a directory"),
        ("list_directory", {"path": "/nope"}, "No such file"),
        ("get_file_info", {"path": "/nope"}, "No such file"),
        ("search_files", {"path": "/home/user", "pattern": ""}, "pattern must be a glob"),
        ("move_file", {"source": "nope", "destination": "x"}, "No such file"),
        ("create_directory", {"path": "/etc/new"}, "writable"),
        ("read_file", {"path": "/etc/shadow"}, "Permission denied"),
    ],
)
async def test_errors_name_the_path_and_the_fix(
    client: Client, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    session_id = await new_session(client)
    message = await call_error(client, tool, session_id=session_id, **arguments)
    assert expected in message


async def test_other_sessions_and_unknown_ids(client: Client) -> None:
    message = await call_error(client, "read_file", session_id="session-" + "0" * 24, path="x")
    assert "not found" in message


async def test_file_tools_through_a_real_stdio_server(state_dir: Path) -> None:
    async with Client(stdio_params(state_dir)) as client:
        session_id = await new_session(client)
        await call(client, "write_file", session_id=session_id, path="s.txt", content="over stdio")
        assert (await call(client, "read_file", session_id=session_id, path="s.txt"))["content"] == "over stdio"
