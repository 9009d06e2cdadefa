"""One error vocabulary across the sandbox boundary: what the agent may report, the host maps.

The agent (backends/local/agent/, run inside the sandbox) names its errors with the constants of
error_names.py; the host (backends/local/agent_errors.py) maps each name to an exception of
agentbay_mcp/errors.py. These tests read the agent's sources (no sandbox is started) so that a
name spelled out by hand on either side, or one the host does not map, fails here. The agent's one
dispatch table is checked the same way: it has every operation the host sends, and its one
dispatch path answers every failure with a name from error_names.py.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentbay_mcp.backends.local.agent import AGENT_DIR, error_names
from agentbay_mcp.backends.local.agent_errors import ERRORS, translate
from agentbay_mcp.errors import (
    AgentBayMCPError,
    AgentCallError,
    BackendError,
    FileOperationError,
    InvalidArgumentError,
    ProcessNotFoundError,
)

AGENT_SOURCES = sorted(p for p in AGENT_DIR.glob("*.py") if p.name not in ("__init__.py", "error_names.py"))
#: Calls whose argument at this position is an error name: the agent's exception and its error reply.
NAME_ARGUMENTS = {"AgentError": 0, "fail": 1, "error": 1}


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            if name in NAME_ARGUMENTS:
                found.append((name, node))
    return found


def test_the_names_module_is_what_the_agent_can_emit() -> None:
    assert error_names.ALL, "no names found"
    assert all(name == name.lower() and " " not in name for name in error_names.ALL)
    constants = {v for k, v in vars(error_names).items() if k.isupper() and isinstance(v, str)}
    assert constants == error_names.ALL


@pytest.mark.parametrize("source", AGENT_SOURCES, ids=lambda p: p.name)
def test_the_agent_spells_no_error_name_itself(source: Path) -> None:
    tree = ast.parse(source.read_text())
    for node in ast.walk(tree):
        # A name written as a string (e.g. in a dict of errnos) would bypass error_names.py.
        if isinstance(node, ast.Constant):
            assert node.value not in error_names.ALL, (
                f"{source.name}:{node.lineno}: use error_names, not {node.value!r}"
            )
        # Every error_names.X the agent uses exists.
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "error_names":
            assert getattr(error_names, node.attr, None) in error_names.ALL, f"{source.name}:{node.lineno}: {node.attr}"
    for name, call in _calls(tree):
        position = NAME_ARGUMENTS[name]
        if len(call.args) > position:
            argument = call.args[position]
            # A literal (or f-string) here is a new name nobody maps; variables carry names from error_names.
            assert not isinstance(argument, ast.Constant | ast.JoinedStr), f"{source.name}:{call.lineno}: {name}()"


def test_the_agent_reports_errors_through_one_exception_class() -> None:
    """No module declares its own error-reply class again (FileOpError, DesktopError, SpawnError did)."""
    for source in AGENT_SOURCES:
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.FunctionDef) and node.name == "__init__":
                arguments = [a.arg for a in node.args.args]
                assert arguments[:3] != ["self", "kind", "message"], f"{source.name}:{node.lineno}"


@pytest.mark.parametrize("name", sorted(error_names.ALL))
def test_the_host_maps_every_name(name: str) -> None:
    assert name in ERRORS
    for op, proc_id in (("file_read", None), ("wait", "p1"), ("desktop_windows", None)):
        mapped = translate(AgentCallError(name, "what happened"), op, proc_id)
        assert isinstance(mapped, AgentBayMCPError)
        assert type(mapped) is not AgentCallError


def test_names_that_used_to_fall_through_are_file_errors() -> None:
    not_empty = translate(AgentCallError(error_names.NOT_EMPTY, "/home/user/d: Directory not empty"), "file_move")
    assert isinstance(not_empty, FileOperationError)
    assert not_empty.kind == "not_empty"
    assert "choose another destination" in str(not_empty)
    io_error = translate(AgentCallError(error_names.IO_ERROR, "/home/user/f: Input/output error"), "file_read")
    assert isinstance(io_error, FileOperationError)
    assert io_error.kind == "io_error"
    # Outside a file operation an io_error is the backend failing, as before.
    assert type(translate(AgentCallError(error_names.IO_ERROR, "write: Broken pipe"), "write", "p1")) is BackendError


def test_the_mapping_keeps_its_messages() -> None:
    assert isinstance(translate(AgentCallError("not_found", "no process 'p9'"), "wait", "p9"), ProcessNotFoundError)
    missing = translate(AgentCallError("not_found", "/x: No such file or directory"), "file_read")
    assert str(missing) == "/x: No such file or directory. Check the path with list_directory or search_files."
    full = translate(AgentCallError("no_space", "/home/user/f: No space left"), "file_write", disk_quota_mb=64)
    assert "disk quota of 64 MB is full" in str(full)
    assert isinstance(translate(AgentCallError("spawn_failed", "no such cwd"), "spawn"), InvalidArgumentError)
    unknown = translate(AgentCallError("made_up", "from a replaced agent"), "file_read")
    assert type(unknown) is BackendError
    assert str(unknown) == "the session sandbox reported: from a replaced agent"


# ---- one dispatch table ---------------------------------------------------------------------------

HOST_SOURCES = [AGENT_DIR.parent / name for name in ("files.py", "processes.py", "desktop.py", "agent_client.py")]
#: Run inside a fresh interpreter, as the sandbox runs the agent (stdlib only, the agent dir on the path):
#: the dispatch table's names, then the replies to a few requests through the one dispatch path.
AGENT_PROBE = """
import json, socket, sys
sys.path.insert(0, sys.argv[1])
import agent_loop, framing
ours, theirs = socket.socketpair()
agent = agent_loop.Agent(ours, {"env": {}, "home": "/nonexistent"})
for request in json.loads(sys.argv[2]):
    agent.dispatch(request)
theirs.setblocking(False)
inbox, replies = framing.Inbox(), []
try:
    while True:
        replies += [json.loads(frame) for frame in inbox.frames(theirs.recv(1 << 20))]
except BlockingIOError:
    pass
print(json.dumps({"ops": sorted(agent.ops), "replies": replies}))
"""


def _host_ops() -> set[str]:
    """Every operation name the host sends: exchange/translated/call with a literal op, and desktop's _call."""
    found = {"cancel"}  # agent_client.py sends it in a raw frame
    for source in HOST_SOURCES:
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
            literals = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if name in ("exchange", "translated") and literals:
                found.add(literals[0])
            elif name == "_call" and literals:
                found.add(f"desktop_{literals[0]}")
    return found


def _probe(requests: list[dict[str, object]]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", AGENT_PROBE, str(AGENT_DIR), json.dumps(requests)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_every_operation_the_host_sends_is_in_the_agents_one_table() -> None:
    host = _host_ops()
    assert {"file_read", "run", "wait", "desktop_screenshot"} <= host  # the scan finds what it should
    table = set(_probe([])["ops"])
    assert host <= table, f"the agent has no handler for {sorted(host - table)}"
    assert "ping" in table


def test_one_dispatch_path_names_every_failure() -> None:
    replies = _probe(
        [
            {"id": 1, "op": "no_such_op"},
            {"id": 2, "op": "file_read", "path": ""},
            {"id": 3, "op": "wait", "proc_id": "p-none"},
            {"id": 4, "op": "file_read", "path": "/nonexistent/file"},
            {"id": 5, "op": "spawn", "command": 42},
            {"id": 6, "op": "ping"},
        ]
    )["replies"]
    by_id = {reply["id"]: reply for reply in replies}
    assert [by_id[i]["error"]["kind"] for i in range(1, 6)] == [
        "bad_request",
        "invalid",
        "not_found",
        "not_found",
        "bad_request",
    ]
    assert by_id[6]["ok"] is True
    assert all(reply["error"]["kind"] in error_names.ALL for reply in replies if not reply["ok"])
