"""What the file-safety tests share: tool calls that may fail but must answer, clear errors, and a
before/after picture of the host (canary files, host files, every path outside the session)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from mcp import Client
from mcp_types import CallToolResult

from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.answers import unpack
from agentbay_mcp.testing.calls import call, unwrapped

AS_ROOT = os.geteuid() == 0
#: The uid root's sandboxes run as on the host (agentbay_mcp.backends.local.sandbox.UNPRIVILEGED_UID).
NOBODY = 65534
MIB = 1024 * 1024
GIB = 1024 * MIB
#: No single file tool call may take longer than this (the agent's own call timeout is 30 s).
CALL_SECONDS = 20.0
#: What no error message may look like: an unexplained crash or a hang that ran into a timeout.
UNCLEAR = ("Traceback", "did not answer", "does not validate", "sandbox is gone")


# Helpers ----------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(state_dir: Path, **overrides: Any) -> AsyncIterator[Client]:
    """An in-memory client of a server with custom settings on `state_dir`."""
    with unwrapped():
        async with Client(build_server(Settings(state_dir=state_dir, **overrides)), mode="legacy") as client:
            yield client


async def new_session(client: Client) -> str:
    return str((await call(client, "create_session", image_id="code_latest"))["session_id"])


async def run(client: Client, session_id: str, command: str, timeout_ms: int = 60_000) -> dict[str, Any]:
    """execute_command that must exit 0."""
    result = await call(client, "execute_command", session_id=session_id, command=command, timeout_ms=timeout_ms)
    assert result["exit_code"] == 0, result
    return result


def home_of(state_dir: Path, session_id: str) -> Path:
    return state_dir / "sessions" / session_id / "home"


def result_text(result: CallToolResult) -> str:
    """Everything a tool result shows the model: its text blocks and its structured content."""
    parts = [getattr(block, "text", "") for block in result.content]
    if result.structured_content is not None:
        parts.append(json.dumps(result.structured_content))
    return "\n".join(parts)


@dataclasses.dataclass
class Outcome:
    """One tool call: did it succeed, what did it say, how long did it take."""

    tool: str
    arguments: dict[str, Any]
    ok: bool
    text: str
    structured: dict[str, Any] | None
    seconds: float

    def __str__(self) -> str:
        shown = {k: (v[:80] + "...") if isinstance(v, str) and len(v) > 80 else v for k, v in self.arguments.items()}
        return f"{self.tool}({shown}) -> {'ok' if self.ok else 'error'}: {self.text[:300]!r}"


async def attempt(client: Client, tool: str, **arguments: Any) -> Outcome:
    """Call a tool that may succeed or fail, but must answer (within CALL_SECONDS)."""
    started = time.monotonic()
    with anyio.fail_after(CALL_SECONDS + 5):
        result = await client.call_tool(tool, arguments)
    seconds = time.monotonic() - started
    # With the fields sent only as text read back (testing/answers.py): entries, matches, content.
    structured = unpack(tool, result) if not result.is_error else None
    return Outcome(tool, arguments, not result.is_error, result_text(result), structured, seconds)


def assert_clear_error(outcome: Outcome) -> None:
    """A refusal must say what went wrong: no crash, no timeout, not empty, not a wall of text."""
    assert not outcome.ok
    message = outcome.text
    assert len(message.strip()) > 10, f"empty error: {outcome}"
    assert len(message) < 6000, f"error too long: {outcome}"
    assert not any(marker in message for marker in UNCLEAR), f"unclear error: {outcome}"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, str]:
    """Every path under `root` (not below `skip`) with its type and content hash or link target."""
    found: dict[str, str] = {}
    skipped = {str(p) for p in skip}
    for directory, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if os.path.join(directory, d) not in skipped]
        for name in dirs + files:
            path = os.path.join(directory, name)
            if path in skipped:
                continue
            st = os.lstat(path)
            if os.path.islink(path):
                found[path] = "link:" + os.readlink(path)
            elif os.path.isdir(path):
                found[path] = f"dir:{oct(st.st_mode)}"
            elif os.path.isfile(path):
                found[path] = f"file:{oct(st.st_mode)}:" + digest(Path(path))
            else:
                found[path] = f"other:{oct(st.st_mode)}"
    return found


def host_files_named(token: str, allowed: tuple[Path, ...]) -> list[str]:
    """Host paths whose name contains `token`, outside the `allowed` dirs (the session's home and tmp)."""
    roots = [r for r in ("/", "/dev/shm", "/run", "/var/tmp") if os.path.isdir(r)]
    found = subprocess.run(
        ["find", *roots, "-xdev", "-name", f"*{token}*", "-print"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    hits = [line for line in found.stdout.splitlines() if line]
    return sorted(h for h in hits if not any(h == str(a) or h.startswith(f"{a}/") for a in allowed))


def on_host(path: str) -> bool:
    return os.path.lexists(path)


def readable_as_sandbox_uid(path: Path) -> bool:
    """Whether the host uid the sandboxes run as could read `path` if it were visible to it."""
    if not AS_ROOT:
        return os.access(path, os.R_OK)
    done = subprocess.run(
        ["cat", str(path)], user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True, timeout=10, check=False
    )
    return done.returncode == 0


@dataclasses.dataclass
class Canaries:
    """Host files the sandboxes must never read or change."""

    directory: Path  # outside the state dir, 0755
    secret_file: Path  # 0644, readable by the sandbox uid if it could see it
    secret: str
    inner_file: Path
    inner_secret: str
    state_secret: str  # in a file at the state dir's root (outside every session)
    state_file: Path

    def secrets(self) -> list[str]:
        return [self.secret, self.inner_secret, self.state_secret]

    def files(self) -> list[Path]:
        return [self.secret_file, self.inner_file, self.state_file]


#: Host files whose content the sandboxes must never change.
HOST_FILES = [Path(p) for p in ("/etc/passwd", "/etc/shadow", "/etc/hostname", "/etc/hosts") if os.path.exists(p)]


class HostWatch:
    """Before/after picture of everything the sessions must not touch on the host."""

    def __init__(self, root: Path, canaries: Canaries, allowed: tuple[Path, ...], token: str) -> None:
        # With a disk quota, home and tmp are symlinks into the session's own file system (disk/,
        # mounted from disk.img, whose bytes change with every write inside).
        quota = [p for p in allowed if p.is_symlink()]
        allowed = (*allowed, *(p.resolve() for p in quota), *(p.parent / "disk.img" for p in quota))
        self.root, self.canaries, self.allowed, self.token = root, canaries, allowed, token
        self.before = tree_snapshot(root, allowed)
        self.host_files = {p: digest(p) for p in HOST_FILES}
        self.canary_digests = {p: digest(p) for p in canaries.files()}

    def check(self) -> None:
        for path, before in self.canary_digests.items():
            assert digest(path) == before, f"host canary {path} changed"
        for path, before in self.host_files.items():
            assert digest(path) == before, f"host file {path} changed"
        after = tree_snapshot(self.root, self.allowed)
        added = sorted(set(after) - set(self.before))
        removed = sorted(set(self.before) - set(after))
        changed = sorted(p for p in set(after) & set(self.before) if after[p] != self.before[p])
        assert not added, f"new files on the host outside the session's home and tmp: {added[:20]}"
        assert not removed, f"files removed on the host outside the session's home and tmp: {removed[:20]}"
        assert not changed, f"files changed on the host outside the session's home and tmp: {changed[:20]}"
        stray = host_files_named(self.token, self.allowed)
        assert not stray, f"files written outside the session's home and tmp: {stray}"
