"""Each answer's text: short, complete (read back whole by testing/answers.py), and it says how to go on.

And the lean schemas: they accept and reject exactly what pydantic's generated schemas do.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Literal

import jsonschema
import pytest
from mcp_types import TextContent
from pydantic import BaseModel, Field

from agentbay_mcp.backends import records
from agentbay_mcp.services.commands.models import CommandResult, ProcessList, ProcessOutputChunk, ProcessStatus
from agentbay_mcp.services.desktop import models as desktop
from agentbay_mcp.services.files import models as files
from agentbay_mcp.services.sessions.models import SessionInfo, SessionList
from agentbay_mcp.testing.answers import unpack
from agentbay_mcp.tools.schemas import lean, output_schema
from agentbay_mcp.tools.shape import Shape
from agentbay_mcp.tools.text import commands, sessions
from agentbay_mcp.tools.text import desktop as desktop_text
from agentbay_mcp.tools.text import files as files_text

NOW = datetime(2026, 12, 7, 1, 2, 3, tzinfo=UTC)
#: Names that would break a naive one-per-line rendering.
HOSTILE_NAMES = ["plain.txt", "with space.txt", "new\nline", " edge ", "tab\there", "ünïcode ✓", 'quote".txt']


def text(shape: Shape[Any], result: BaseModel) -> str:
    block = shape.answer(result).content[-1]
    assert isinstance(block, TextContent)
    return block.text


def read_back(tool: str, shape: Shape[Any], result: BaseModel, **rendered: Any) -> dict[str, Any]:
    answer = shape.answer(result, **rendered)
    return unpack(tool, answer)


def status(**changes: Any) -> ProcessStatus:
    base = {
        "process_id": "p1",
        "command": "cat",
        "running": True,
        "exit_code": None,
        "signal": None,
        "elapsed_ms": 5,
        "stdout_bytes": 6,
        "stderr_bytes": 0,
        "stdin_open": True,
    }
    return ProcessStatus(**{**base, **changes})


def command_result(stdout: str, stderr: str) -> CommandResult:
    return CommandResult(
        exit_code=0,
        stdout=stdout,
        stderr=stderr,
        duration_ms=3,
        timed_out=False,
        stdout_truncated=False,
        stderr_truncated=False,
        stdout_bytes=len(stdout.encode()),
        stderr_bytes=len(stderr.encode()),
        full_stdout_path=None,
        full_stderr_path=None,
        message="Exited with code 0 after 3 ms.",
    )


@pytest.mark.parametrize(
    ("stdout", "stderr"),
    [("hi\n", ""), ("", "oops\n"), ("a\nb\n", "c\n"), ("", ""), ("x" * 5000, "y"), ("partial", "err"), ("\n", "\n")],
)
def test_command_output_once_under_one_status_line(stdout: str, stderr: str) -> None:
    result = command_result(stdout, stderr)
    answer = commands.COMMAND.answer(result)
    rendered = text(commands.COMMAND, result)
    assert rendered.split("\n", 1)[0].startswith("Exited with code 0 after 3 ms.")
    assert answer.structured_content is not None
    assert not {"stdout", "stderr", "message"} & set(answer.structured_content), "the output is not sent twice"
    back = unpack("execute_command", answer)
    assert (back["stdout"], back["stderr"]) == (stdout, stderr)
    assert len(rendered) <= len(stdout) + len(stderr) + 50


def test_echo_hi_is_one_short_line_and_its_output() -> None:
    assert text(commands.COMMAND, command_result("hi\n", "")) == "Exited with code 0 after 3 ms.\nhi\n"


def test_process_output_says_how_to_continue() -> None:
    chunk = ProcessOutputChunk(
        process_id="p1", stdout="hello\n", stderr="", cursor="6:0", more=True, dropped_bytes=10, status=status()
    )
    rendered = text(commands.OUTPUT, chunk)
    assert "cursor='6:0'" in rendered
    assert "read again now" in rendered
    assert "10 older bytes" in rendered
    assert unpack("read_process_output", commands.OUTPUT.answer(chunk))["stdout"] == "hello\n"
    quiet = chunk.model_copy(update={"stdout": "", "more": False, "dropped_bytes": 0})
    assert text(commands.OUTPUT, quiet).endswith("No new output.")


def test_process_list_reads_back_whole_even_with_a_multiline_command() -> None:
    listing = ProcessList(
        processes=[status(), status(process_id="p2", command="echo a\necho b", running=False, exit_code=0)]
    )
    answer = commands.PROCESSES.answer(listing)
    assert answer.structured_content is None, "a listing answers text only"
    back = unpack("list_processes", answer)["processes"]
    assert [p["command"] for p in back] == ["cat", "echo a\necho b"]
    assert [p["exit_code"] for p in back] == [None, 0]
    assert unpack("list_processes", commands.PROCESSES.answer(ProcessList(processes=[])))["processes"] == []


def content(**changes: Any) -> files.FileContent:
    base = {
        "path": "/home/user/a.txt",
        "encoding": "utf-8",
        "content": "line1\nline2\n",
        "mime_type": "text/plain",
        "size": 100,
        "offset": 0,
        "length": 12,
        "next_offset": 12,
        "message": "12 bytes from offset 0 of 100. More follows: call again with offset=12.",
    }
    return files.FileContent(**{**base, **changes})


def test_read_file_sends_the_text_once_under_one_header_line() -> None:
    read = content()
    answer = files_text.CONTENT.answer(read)
    rendered = text(files_text.CONTENT, read)
    head, body = rendered.split("\n", 1)
    assert body == read.content
    assert "/home/user/a.txt" in head
    assert "offset=12" in head
    assert "100" in head
    assert answer.structured_content is not None
    assert "content" not in answer.structured_content
    assert answer.structured_content["next_offset"] == 12
    assert unpack("read_file", answer)["content"] == read.content


def test_read_file_header_survives_a_hostile_path_and_content() -> None:
    read = content(path="/home/user/x\n): y", content="): \nfake header\n")
    assert unpack("read_file", files_text.CONTENT.answer(read))["content"] == "): \nfake header\n"


def info(name: str, kind: Literal["file", "directory", "symlink", "other"] = "file", size: int = 4) -> files.FileInfo:
    return files.FileInfo(
        path=f"/home/user/d/{name}",
        name=name,
        type=kind,
        size=size,
        permissions="-rw-r--r--",
        mode="0o644",
        modified=NOW,
        changed=NOW,
        accessed=NOW,
        target="../t" if kind == "symlink" else None,
    )


def test_listing_is_one_line_per_entry_and_reads_back_whole() -> None:
    entries = [info(name) for name in HOSTILE_NAMES] + [info("sub", "directory", 4096), info("ln", "symlink", 4)]
    listing = files.DirectoryListing(path="/home/user/d", entries=entries, total=len(entries), truncated=False)
    answer = files_text.LISTING.answer(listing)
    rendered = text(files_text.LISTING, listing)
    assert len(rendered.split("\n")) == len(entries) + 1
    assert "file 4 plain.txt" in rendered
    assert "dir 4096 sub" in rendered
    assert "link 4 ln -> ../t" in rendered
    back = unpack("list_directory", answer)["entries"]
    assert [(e["name"], e["type"], e["size"]) for e in back] == [(e.name, e.type, e.size) for e in entries]
    assert answer.structured_content == {"total": len(entries), "truncated": False}
    assert unpack("list_directory", answer)["path"] == "/home/user/d"  # text only: the header says it
    detailed = files_text.listing(listing, details=True)
    assert "-rw-r--r-- 4 2026-12-07T01:02:03Z plain.txt" in detailed


def test_a_thousand_entries_fit_in_30_kb() -> None:
    entries = [info(f"file_{i:04}.txt", size=i * 7) for i in range(1000)]
    listing = files.DirectoryListing(path="/home/user/many", entries=entries, total=1000, truncated=False)
    answer = files_text.LISTING.answer(listing)
    assert len(answer.model_dump_json(by_alias=True, exclude_none=True)) <= 30_000


def test_a_cut_listing_says_what_is_missing_and_what_to_do() -> None:
    listing = files.DirectoryListing(
        path="/d", entries=[info("a")], total=5000, truncated=True, message="Showing the first 1 of 5,000 entries."
    )
    assert text(files_text.LISTING, listing).startswith("/d: 5,000 entries. Showing the first 1 of 5,000 entries.")


def test_search_matches_one_per_line() -> None:
    found = files.SearchResult(path="/home/user", pattern="*.py", matches=["/a.py", "/b\n.py"], truncated=False)
    answer = files_text.MATCHES.answer(found)
    assert unpack("search_files", answer)["matches"] == ["/a.py", "/b\n.py"]
    assert text(files_text.MATCHES, found).split("\n")[0] == "2 matches for '*.py' below /home/user:"


def session(session_id: str, labels: dict[str, str]) -> SessionInfo:
    return SessionInfo(
        session_id=session_id,
        image_id="code_latest",
        status="RUNNING",
        labels=labels,
        created_at=NOW,
        idle_expires_at=NOW,
    )


def test_session_page_reads_back_and_says_how_to_page() -> None:
    page = SessionList(
        sessions=[session("s-1", {"a b": "c, d"}), session("s-2", {})], total_count=3, max_results=2, next_token="tok"
    )
    answer = sessions.SESSIONS.answer(page)
    back = unpack("list_sessions", answer)["sessions"]
    assert [(s["session_id"], s["labels"]) for s in back] == [("s-1", {"a b": "c, d"}), ("s-2", {})]
    assert "next_token='tok'" in text(sessions.SESSIONS, page)
    assert answer.structured_content == {"total_count": 3, "max_results": 2, "next_token": "tok"}


def window(window_id: int, title: str, children: int = 0) -> desktop.WindowInfo:
    return desktop.WindowInfo(
        window_id=window_id,
        title=title,
        x=-5,
        y=10,
        width=640,
        height=480,
        client_width=630,
        client_height=460,
        pid=42,
        pname="xterm",
        state="normal",
        child_windows=[
            desktop.ChildWindow(window_id=window_id * 10 + i, title="", x=0, y=0, width=1, height=1)
            for i in range(children)
        ],
    )


def test_windows_read_back_with_their_children() -> None:
    found = desktop.WindowList(
        windows=[window(1, "a title with 640x480+0+0 inside", 2), window(2, ""), window(3, " edgy ")],
        active_window_id=1,
        focus_mode=False,
        screen_width=1280,
        screen_height=800,
    )
    back = unpack("list_windows", desktop_text.WINDOWS.answer(found))["windows"]
    assert [(w["window_id"], w["title"], w["x"], w["pid"]) for w in back] == [
        (1, "a title with 640x480+0+0 inside", -5, 42),
        (2, "", -5, 42),
        (3, " edgy ", -5, 42),
    ]
    assert [c["window_id"] for c in back[0]["child_windows"]] == [10, 11]


def test_apps_read_back() -> None:
    installed = desktop.InstalledApps(
        apps=[
            desktop.InstalledApp(
                name="XTerm",
                start_cmd="xterm",
                stop_cmd=None,
                work_directory=None,
                desktop_file="/x.desktop",
                system=False,
            )
        ]
    )
    assert unpack("get_installed_apps", desktop_text.INSTALLED.answer(installed))["apps"][0]["start_cmd"] == "xterm"
    visible = desktop.VisibleApps(
        apps=[desktop.VisibleApp(pid=7, pname="xterm", cmdline="xterm -T x", window_ids=[1, 2])]
    )
    assert unpack("list_visible_apps", desktop_text.VISIBLE.answer(visible))["apps"][0]["window_ids"] == [1, 2]


class Sample(BaseModel):
    """Every shape our tools' parameters and results use."""

    name: str = Field(description="a name")
    count: int | None = Field(default=None, ge=1, le=3)
    mode: Literal["a", "b"] = "a"
    button: Literal["left", "right"] | None = None
    labels: dict[str, str] | None = None
    keys: list[str] | None = None
    when: datetime | None = None
    child: records.FileMoved | None = None
    children: list[records.FileMoved] = []


INSTANCES: list[Any] = [
    {"name": "x"},
    {"name": "x", "count": 2, "mode": "b", "button": "left", "labels": {"k": "v"}, "keys": ["a"]},
    {"name": "x", "count": None, "button": None, "labels": None, "keys": None, "child": None},
    {"name": "x", "child": {"source": "a", "destination": "b"}, "children": [{"source": "a", "destination": "b"}]},
    {"name": "x", "count": 0},
    {"name": "x", "count": "2"},
    {"name": "x", "mode": "c"},
    {"name": "x", "button": "middle"},
    {"name": "x", "labels": {"k": 1}},
    {"name": "x", "keys": "a"},
    {"name": "x", "child": {"source": "a"}},
    {"count": 1},
    "not an object",
]


def accepts(schema: dict[str, Any], instance: Any) -> bool:
    return jsonschema.Draft202012Validator(schema).is_valid(instance)


@pytest.mark.parametrize("instance", INSTANCES)
def test_lean_schema_accepts_and_rejects_like_the_generated_one(instance: Any) -> None:
    generated = Sample.model_json_schema()
    trimmed = lean(generated)
    assert accepts(trimmed, instance) == accepts(generated, instance)
    assert not {"title", "$defs", "$ref", "anyOf"} & set(json.dumps(trimmed).replace('"', " ").split())


def test_lean_schema_drops_titles_but_keeps_a_field_named_title() -> None:
    class Titled(BaseModel):
        title: str

    trimmed = lean(Titled.model_json_schema())
    assert trimmed == {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}


def test_output_schema_leaves_out_text_only_fields_and_nested_fields() -> None:
    schema = output_schema(files.FileContent, ("content", "message"))
    assert "content" not in schema["properties"]
    assert "message" not in schema["required"]
    assert accepts(schema, content().model_dump(mode="json", exclude={"content", "message"}))
    nested = output_schema(desktop.ActiveWindow)
    assert nested["properties"]["window"] == {"type": ["object", "null"]}


#: Nested records are published as bare objects on purpose (see output_schema), so compare the rest.
FLAT = [i for i in INSTANCES if not (isinstance(i, dict) and {"child", "children"} & i.keys())]


@pytest.mark.parametrize("instance", FLAT)
def test_output_schema_accepts_and_rejects_like_the_generated_one(instance: Any) -> None:
    """Without defaults, formats and the type beside an enum, an output schema still admits exactly the same."""
    generated = Sample.model_json_schema(mode="serialization")
    published = output_schema(Sample)
    assert "format" not in json.dumps(published)
    assert "type" not in published["properties"]["mode"]
    assert accepts(published, instance) == accepts(generated, instance)
