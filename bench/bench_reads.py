"""Paged reads and listings through the real Python MCP client over stdio (numbers printed, not asserted).

Issue 14 measured these through `mcp.client.stdio.stdio_client` + `ClientSession` (the client
validates every structured result against the tool's output schema, which is part of what a user
waits for), so this benchmark does the same, against a real server (`python -m agentbay_mcp`, the
local backend, a bubblewrap sandbox):

- read a 1 MB text file: with the default per-call size (no `length`), and with the largest `length`
  the server allows (one call when the budget allows it);
- read a 20 MB text file, paging with the largest `length`;
- list a directory of 1000 files.

For each: median milliseconds end to end, calls per read, the JSON size of one result (what the
client receives, text block and structured content; about the bytes on the wire), tokens (characters
of text content / 4), a raw baseline in the same run (plain Python read of the host path;
os.listdir + lstat of each entry), and ratios against the peer figures and, with --baseline, against
a checkout of main before this work served beside it in the same run (rounds interleaved).
The 20 MB file is also read in 256 KiB, 1 MiB and 2 MiB pages: what a page size costs.

Run: .venv/bin/python bench/bench_reads.py [--rounds N] [--baseline /path/to/main-checkout]
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

#: The largest `length` any server lets a client ask for: the server caps it to its own maximum.
ASK_ALL = 64 * 1024 * 1024
MB = 1_000_000
#: The page sizes the 20 MB read is timed with: the per-call cost against the Python client's cost of one
#: long line (it joins a line's pieces by string concatenation, quadratic in the line's length).
TWENTY_MB_PAGES = (("256 KiB", 256 * 1024), ("1 MiB", 2**20), ("2 MiB", 2 * 2**20), ("largest", ASK_ALL))
#: Issue 14's best peers, measured through the same client: (milliseconds, calls).
PEERS = {"read 1 MB": 12.6, "read 20 MB": 332.0, "list 1000 files": 1.6}
#: Issue 14's targets: milliseconds end to end at the median (20 MB: at least 2x faster than today).
TARGETS = {"read 1 MB": 10.0, "list 1000 files": 3.0}


#: Settings for the server under test (not the baseline), e.g. AGENTBAY_MCP_READ_MAX_BYTES (--set).
EXTRA_ENV: dict[str, str] = {}


def server_parameters(state_dir: Path, root: str, extra: dict[str, str] | None = None) -> StdioServerParameters:
    """The server of the checkout at `root` (this one by default: --root compares another, e.g. main)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBAY_MCP_")}
    env.update(AGENTBAY_MCP_STATE_DIR=str(state_dir), AGENTBAY_MCP_LOG_LEVEL="WARNING", **(extra or {}))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return StdioServerParameters(command=sys.executable, args=["-m", "agentbay_mcp"], env=env, cwd=root)


async def call(session: ClientSession, name: str, **arguments: Any) -> Any:
    result = await session.call_tool(name, arguments, read_timeout_seconds=60)
    if getattr(result, "is_error", False):
        raise RuntimeError(f"{name} failed: {result.content}")
    return result


def text_chars(result: Any) -> int:
    return sum(len(block.text) for block in result.content if getattr(block, "text", None) is not None)


async def read_all(session: ClientSession, session_id: str, path: str, size: int, length: int | None) -> list[Any]:
    """Page through the file with read_file (offset, and `length` when given); the results."""
    results = []
    offset: int | None = 0
    seen = 0
    while offset is not None:
        arguments: dict[str, Any] = {"session_id": session_id, "path": path, "offset": offset}
        if length is not None:
            arguments["length"] = length
        result = await call(session, "read_file", **arguments)
        results.append(result)
        seen += int(result.structured_content["length"])
        offset = result.structured_content["next_offset"]
    if seen != size:
        raise RuntimeError(f"read {seen} bytes of {path}, expected {size}")
    return results


def raw_read(path: Path) -> int:
    with path.open("rb", buffering=0) as handle:
        return len(handle.read())


def raw_list(path: Path) -> int:
    names = sorted(os.listdir(path))
    for name in names:
        os.lstat(path / name)
    return len(names)


class Served:
    """One server under test (this checkout, or the baseline) with its session and files."""

    def __init__(self, name: str, session: ClientSession, session_id: str, home: Path) -> None:
        self.name, self.session, self.session_id, self.home = name, session, session_id, home

    def work(self, scenario: str) -> Any:
        """The scenario's client work on this server: a coroutine function returning the results."""
        if scenario == "list 1000 files":

            async def listing() -> list[Any]:
                return [await call(self.session, "list_directory", session_id=self.session_id, path="many")]

            return listing
        name, size = ("one.txt", 2**20) if scenario.startswith("read 1 MB") else ("twenty.txt", 20 * 2**20)
        length = dict(TWENTY_MB_PAGES).get(scenario.rsplit("length ", 1)[-1])
        if scenario.endswith("largest length"):
            length = ASK_ALL
        return functools.partial(read_all, self.session, self.session_id, name, size, length)


async def serve(stack: AsyncExitStack, name: str, state_dir: Path, root: str) -> Served:
    extra = EXTRA_ENV if name == "now" else None
    read, write = await stack.enter_async_context(stdio_client(server_parameters(state_dir, root, extra)))
    session = await stack.enter_async_context(ClientSession(read, write))
    await session.initialize()
    session_id = (await call(session, "create_session")).structured_content["session_id"]
    home = state_dir / "sessions" / session_id / "home"
    make = "yes 'The quick brown fox jumps over the lazy dog 0123456789' | head -c {size} > {name}"
    for file, size in (("one.txt", 2**20), ("twenty.txt", 20 * 2**20)):
        await call(session, "execute_command", session_id=session_id, command=make.format(size=size, name=file))
        if (home / file).stat().st_size != size:
            raise RuntimeError(f"could not make {file}")
    command = "mkdir -p many && cd many && seq -f 'f%04g.txt' 1000 | xargs touch"
    await call(session, "execute_command", session_id=session_id, command=command)
    return Served(name, session, session_id, home)


SCENARIOS = (
    "read 1 MB, default length",
    "read 1 MB, largest length",
    *[f"read 20 MB, length {label}" for label, _ in TWENTY_MB_PAGES],
    "list 1000 files",
)


async def bench(state_dir: Path, rounds: int, root: str, baseline: str | None) -> dict[str, dict[str, Any]]:
    """Every scenario on this checkout's server (and the baseline's, rounds interleaved: drift on the
    machine hits both alike), beside the raw baseline."""
    out: dict[str, dict[str, Any]] = {}
    async with AsyncExitStack() as stack:
        servers = [await serve(stack, "now", state_dir / "now", root)]
        if baseline is not None:
            servers.append(await serve(stack, "today", state_dir / "today", baseline))
        for scenario in SCENARIOS:
            count = max(3, rounds // 5) if "20 MB" in scenario else rounds
            home = servers[0].home
            listing = scenario.startswith("list")
            target = home / ("many" if listing else "one.txt" if "1 MB" in scenario else "twenty.txt")
            took: dict[str, list[float]] = {server.name: [] for server in servers}
            took["raw"] = []
            results: dict[str, list[Any]] = {}
            for server in servers:
                results[server.name] = await server.work(scenario)()  # warm-up
            for _ in range(count):
                for server in servers:
                    started = time.perf_counter()
                    results[server.name] = await server.work(scenario)()
                    took[server.name].append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                raw_list(target) if listing else raw_read(target)
                took["raw"].append((time.perf_counter() - started) * 1000)
            now = results["now"]
            out[scenario] = {
                "ms": statistics.median(took["now"]),
                "raw_ms": statistics.median(took["raw"]),
                "today_ms": statistics.median(took["today"]) if "today" in took else None,
                "today_calls": len(results["today"]) if "today" in results else None,
                "calls": len(now),
                "rounds": count,
                "json": sum(len(r.model_dump_json(by_alias=True, exclude_none=True)) for r in now),
                "first_json": len(now[0].model_dump_json(by_alias=True, exclude_none=True)),
                "tokens": sum(text_chars(r) for r in now) // 4,
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20, help="rounds per scenario (20 MB: a fifth)")
    parser.add_argument("--root", default=str(Path(__file__).resolve().parent.parent), help="checkout to serve")
    parser.add_argument("--baseline", help="a checkout of main before this work, served beside it (today/now)")
    parser.add_argument("--set", action="append", default=[], help="NAME=VALUE for the server under test")
    args = parser.parse_args()
    EXTRA_ENV.update(item.split("=", 1) for item in args.set)
    tmp = tempfile.TemporaryDirectory(prefix="agentbay-bench-")
    if os.geteuid() == 0:
        Path(tmp.name).chmod(0o711)  # root's sandboxes run as nobody, who must traverse it
    with tmp:
        results = anyio.run(bench, Path(tmp.name), max(3, args.rounds), args.root, args.baseline)
    print("read_file and list_directory through mcp.client.stdio + ClientSession (median ms end to end):")
    for label, data in results.items():
        peer_key = next((key for key in PEERS if label.startswith(key)), label)
        print(f"  {label} ({data['rounds']} rounds):")
        print(f"    MCP:        {data['ms']:8.2f} ms in {data['calls']} call(s)")
        ratio = data["ms"] / data["raw_ms"]
        print(f"    raw:        {data['raw_ms']:8.2f} ms  (plain Python on the host path)   MCP/raw {ratio:6.1f}x")
        print(f"    peer:       {PEERS[peer_key]:8.2f} ms   MCP/peer {data['ms'] / PEERS[peer_key]:5.2f}x", end="")
        target = TARGETS.get(peer_key)
        print(f"   target <= {target} ms" if target else "   target: 2x faster than today")
        if data["today_ms"] is not None:
            today = data["today_ms"]
            print(
                f"    today:      {today:8.2f} ms in {data['today_calls']} call(s) (--baseline, same run)   "
                f"today/now {today / data['ms']:5.2f}x"
            )
        print(
            f"    JSON:       {data['json']:,} bytes in all ({data['first_json']:,} the first result)   "
            f"tokens (text / 4): {data['tokens']:,}"
        )


if __name__ == "__main__":
    main()
