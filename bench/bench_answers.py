"""Answer sizes and end-to-end times of the common work, beside the peers' figures (numbers printed, not asserted).

Issue 14's scenarios, each through a real stdio server on the local backend:
- bytes on the wire, measured exactly on a raw JSON-RPC pipe (the line the server writes), and the
  tokens a model pays for the text (characters of text content / 4);
- the median end-to-end time through the Python MCP SDK client (`mcp.Client` over stdio), which
  also validates structured results against their output schemas, as the issue's figures did.
Scenarios: `tools/list`; list a directory of 1000 files; read a 1 MB text file (all its pages);
`execute_command("echo hi")`. The peers' figures are the issue's, measured on this machine class
with the same client: the reference filesystem server, Desktop Commander, mcp-server-commands.

Run: .venv/bin/python bench/bench_answers.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))
from bench_commands import bench_root, watched_server

from agentbay_mcp.testing.servers import stdio_params

#: (scenario, peer name, peer bytes on the wire, peer ms, agentbay-mcp before issue 14: bytes, ms)
PEERS = {
    "tools/list": ("filesystem server (14 tools)", 13_000, None, 58_000, None),
    "list 1000 files": ("filesystem server", 43_000, 1.6, 642_000, 160.0),
    "read 1 MB": ("filesystem server", 990_000, 12.6, 1_990_000, 41.0),
    "echo hi": ("mcp-server-commands", None, None, None, None),
}
TARGETS = {"tools/list": (24_000, None), "list 1000 files": (30_000, 3.0), "read 1 MB": (1_100_000, 10.0)}
MAKE_FILES = "mkdir -p many && cd many && for i in $(seq -w 1 1000); do printf '%s' $i > file_$i.txt; done"
MAKE_MB = "head -c 750000 /dev/urandom | base64 -w 99 | head -c 1000000 > big.txt"


def text_chars(result: dict[str, Any]) -> int:
    return sum(len(block.get("text", "")) for block in result.get("content", []))


def wire(server: Any, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """(bytes of the reply line, result) for one raw request."""
    server._next_id += 1
    request = {"jsonrpc": "2.0", "id": server._next_id, "method": method, "params": params}
    server.process.stdin.write(json.dumps(request).encode() + b"\n")
    server.process.stdin.flush()
    while True:
        line = server.process.stdout.readline()
        reply = json.loads(line)
        if reply.get("id") == server._next_id:
            return len(line), dict(reply["result"])


def read_all_raw(server: Any, session_id: str) -> tuple[int, int, int]:
    """(bytes, text characters, calls) to read big.txt to its end, following next_offset."""
    offset, total, chars, calls = 0, 0, 0, 0
    while True:
        size, result = wire(
            server,
            "tools/call",
            {"name": "read_file", "arguments": {"session_id": session_id, "path": "big.txt", "offset": offset}},
        )
        total, chars, calls = total + size, chars + text_chars(result), calls + 1
        nxt = result["structuredContent"]["next_offset"]
        if nxt is None:
            return total, chars, calls
        offset = nxt


def sizes(state: Path) -> dict[str, tuple[int, int, int]]:
    """Scenario -> (bytes on the wire, text characters, calls), on a raw pipe."""
    out: dict[str, tuple[int, int, int]] = {}
    with watched_server(state, 300, "sizes") as server:
        size, listed = wire(server, "tools/list", {})
        out["tools/list"] = (size, len(json.dumps(listed["tools"], separators=(",", ":"))), 1)
        session_id = server.tool("create_session", image_id="code_latest")["session_id"]
        server.tool("execute_command", session_id=session_id, command=f"{MAKE_FILES}; cd ..; {MAKE_MB}")
        size, result = wire(
            server, "tools/call", {"name": "list_directory", "arguments": {"session_id": session_id, "path": "many"}}
        )
        out["list 1000 files"] = (size, text_chars(result), 1)
        out["read 1 MB"] = read_all_raw(server, session_id)
        size, result = wire(
            server,
            "tools/call",
            {"name": "execute_command", "arguments": {"session_id": session_id, "command": "echo hi"}},
        )
        out["echo hi"] = (size, text_chars(result), 1)
    return out


async def times(state: Path, rounds: int) -> dict[str, float]:
    """Scenario -> median ms end to end through the Python SDK client."""
    samples: dict[str, list[float]] = {name: [] for name in PEERS}
    with anyio.fail_after(600):
        async with Client(stdio_params(state)) as client:
            created = await client.call_tool("create_session", {"image_id": "code_latest"})
            session_id = (created.structured_content or {})["session_id"]
            await client.call_tool(
                "execute_command", {"session_id": session_id, "command": f"{MAKE_FILES}; cd ..; {MAKE_MB}"}
            )

            async def read_all() -> None:
                offset: int | None = 0
                while offset is not None:
                    page = await client.call_tool(
                        "read_file", {"session_id": session_id, "path": "big.txt", "offset": offset}
                    )
                    offset = (page.structured_content or {})["next_offset"]

            work = {
                "tools/list": client.list_tools,
                "list 1000 files": lambda: client.call_tool(
                    "list_directory", {"session_id": session_id, "path": "many"}
                ),
                "read 1 MB": read_all,
                "echo hi": lambda: client.call_tool(
                    "execute_command", {"session_id": session_id, "command": "echo hi"}
                ),
            }
            for _ in range(rounds):
                for name, job in work.items():
                    started = time.perf_counter()
                    await job()
                    samples[name].append((time.perf_counter() - started) * 1000)
    return {name: statistics.median(values) for name, values in samples.items()}


def ratio(ours: float, theirs: float | None) -> str:
    return "-" if theirs is None else f"{ours / theirs:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    with bench_root() as root:
        measured = sizes(Path(root) / "sizes")
        medians = anyio.run(times, Path(root) / "times", args.rounds)
    print(
        f"{'scenario':<16} {'bytes':>10} {'tokens':>8} {'calls':>5} {'ms (median)':>11}  "
        "vs peer (bytes, ms)      vs before (bytes, ms)   target"
    )
    for name, (peer, peer_bytes, peer_ms, before_bytes, before_ms) in PEERS.items():
        size, chars, calls = measured[name]
        ms = medians[name]
        target_bytes, target_ms = TARGETS.get(name, (None, None))
        target = (
            ""
            if target_bytes is None
            else f"<= {target_bytes / 1000:.0f} KB {'ok' if size <= target_bytes else 'MISSED'}"
        ) + ("" if target_ms is None else f", <= {target_ms} ms {'ok' if ms <= target_ms else 'MISSED'}")
        print(
            f"{name:<16} {size:>10,} {chars // 4:>8,} {calls:>5} {ms:>11.2f}  "
            f"{ratio(size, peer_bytes):>7} {ratio(ms, peer_ms):>7} ({peer})  "
            f"{ratio(size, before_bytes):>7} {ratio(ms, before_ms):>7}   {target}"
        )


if __name__ == "__main__":
    main()
