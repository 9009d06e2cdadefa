"""What the command-output tests share: the cap's marker parsed, host paths of in-session files, and
tool calls that must succeed."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import anyio
from mcp import Client

from agentbay_mcp.testing.calls import call

FIVE_MB = 5_000_000
FIVE_HUNDRED_MB = 500_000_000
#: Upper bound for one tool call in these tests (every wait has a timeout).
CALL_TIMEOUT = 60.0
#: Where the agent keeps full outputs, inside the session (sandbox.SANDBOX_OUTPUT_DIR).
OUTPUT_DIR = PurePosixPath("/tmp/.agentbay")
MARKER = re.compile(
    r"\n\n\[\.\.\. (?P<cut>[\d,]+) bytes of (?P<stream>stdout|stderr) cut here \((?P<total>[\d,]+) in all\)\. "
    r"(?P<where>[^\n]*) \.\.\.\]\n\n"
)
REPLACEMENT = "\ufffd"


# Helpers ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Capped:
    """A capped stream split at its marker."""

    head: str
    tail: str
    cut: int
    total: int
    stream: str
    where: str
    marker: str


def split_capped(text: str) -> Capped:
    """Split returned text at its one truncation marker (fails the test if there is not exactly one)."""
    found = list(MARKER.finditer(text))
    assert len(found) == 1, f"expected exactly one truncation marker, found {len(found)}"
    match = found[0]
    return Capped(
        head=text[: match.start()],
        tail=text[match.end() :],
        cut=int(match["cut"].replace(",", "")),
        total=int(match["total"].replace(",", "")),
        stream=match["stream"],
        where=match["where"],
        marker=match.group(0),
    )


def host_path(state_dir: Path, session_id: str, sandbox_path: str) -> Path:
    """Where a file under the sandbox's /tmp lives on the host."""
    path = PurePosixPath(sandbox_path)
    assert path.is_relative_to(OUTPUT_DIR), f"{sandbox_path} is not under {OUTPUT_DIR}"
    return state_dir / "sessions" / session_id / "tmp" / path.relative_to("/tmp")


async def new_session(client: Client) -> str:
    with anyio.fail_after(CALL_TIMEOUT):
        return str((await call(client, "create_session"))["session_id"])


async def execute(client: Client, session_id: str, command: str, **arguments: Any) -> dict[str, Any]:
    with anyio.fail_after(CALL_TIMEOUT):
        return await call(client, "execute_command", session_id=session_id, command=command, **arguments)


async def tool(client: Client, name: str, **arguments: Any) -> dict[str, Any]:
    with anyio.fail_after(CALL_TIMEOUT):
        return await call(client, name, **arguments)


async def file_size_in_session(client: Client, session_id: str, path: str) -> int:
    result = await execute(client, session_id, f"wc -c < '{path}'")
    assert result["exit_code"] == 0, result
    return int(result["stdout"].strip())


def numbered_lines(count: int) -> bytes:
    """What `seq 1 count` prints."""
    return "".join(f"{i}\n" for i in range(1, count + 1)).encode()
