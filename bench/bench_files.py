"""File read benchmark (numbers printed, not asserted).

Reads a 1 MB and a 100 MB file in a session through a real stdio server (raw JSON-RPC client, one
session, bubblewrap sandbox) in capped chunks - read_file with offset, 256 KiB per call, the way a
model pages through a file - and, in the same run, reads the same file with plain Python on its host
path in the same 256 KiB chunks (the floor). MB/s of both and their ratio; per-call latency too,
beside a no-op tool round trip (get_session) and the bytes one 256 KiB reply puts on the pipe.
Text files take the UTF-8 path; a 100 MB binary file takes the base64 one.

Run: /tmp/venv/bin/python bench/bench_files.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_commands import bench_root, watched_server
from bench_sessions import percentile
from stdio_client import RawStdioServer

CHUNK = 256 * 1024
MB = 1_000_000
#: Each file: (name in the session, size in bytes, the shell command that makes it there).
FILES = {
    "1 MB text": (
        "one.txt",
        1 * 2**20,
        "yes 'The quick brown fox jumps over the lazy dog 0123456789' | head -c {size}",
    ),
    "100 MB text": (
        "hundred.txt",
        100 * 2**20,
        "yes 'The quick brown fox jumps over the lazy dog 012345' | head -c {size}",
    ),
    "100 MB binary": ("hundred.bin", 100 * 2**20, "head -c {size} /dev/urandom"),
}


def read_via_mcp(server: RawStdioServer, session_id: str, path: str, size: int) -> tuple[float, list[float]]:
    """Seconds to page through the file with read_file (256 KiB per call), and each call's milliseconds."""
    calls: list[float] = []
    offset: int | None = 0
    seen = 0
    started = time.perf_counter()
    while offset is not None:
        before = time.perf_counter()
        result = server.tool("read_file", session_id=session_id, path=path, offset=offset, length=CHUNK)
        calls.append((time.perf_counter() - before) * 1000)
        seen += int(result["length"])
        offset = result["next_offset"]
    took = time.perf_counter() - started
    if seen != size:
        raise RuntimeError(f"read {seen} bytes of {path}, expected {size}")
    return took, calls


def read_raw(host_path: Path, size: int) -> float:
    """Seconds to read the same file on the host in the same 256 KiB chunks."""
    seen = 0
    started = time.perf_counter()
    with host_path.open("rb", buffering=0) as handle:
        while chunk := handle.read(CHUNK):
            seen += len(chunk)
    took = time.perf_counter() - started
    if seen != size:
        raise RuntimeError(f"read {seen} bytes of {host_path}, expected {size}")
    return took


def bench(state_dir: Path, rounds: int) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with watched_server(state_dir, 100, "the file benchmark") as server:
        session_id = server.tool("create_session")["session_id"]
        home = state_dir / "sessions" / session_id / "home"
        for label, (name, size, make) in FILES.items():
            made = server.tool("execute_command", session_id=session_id, command=f"{make.format(size=size)} > {name}")
            if made["exit_code"] != 0 or (home / name).stat().st_size != size:
                raise RuntimeError(f"could not make {name}: {made}")
            read_raw(home / name, size)  # warm the page cache, then warm the server's path
            read_via_mcp(server, session_id, name, size)
            count = rounds if size < 10 * 2**20 else max(2, rounds // 10)
            mcp, raw, calls = [], [], []
            for _ in range(count):  # interleaved, so drift on the machine hits both alike
                took, latencies = read_via_mcp(server, session_id, name, size)
                mcp.append(took)
                calls += latencies
                raw.append(read_raw(home / name, size))
            wire = server.request(
                "tools/call", {"name": "read_file", "arguments": {"session_id": session_id, "path": name}}
            )
            results[label] = {
                "size": size,
                "rounds": count,
                "mcp": mcp,
                "raw": raw,
                "calls": calls,
                "wire": len(json.dumps(wire, separators=(",", ":"))),
            }
        noop = []
        for _ in range(200):
            started = time.perf_counter()
            server.tool("get_session", session_id=session_id)
            noop.append((time.perf_counter() - started) * 1000)
        results["noop"] = {"calls": noop}
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20, help="rounds for the 1 MB file (the 100 MB ones get 1/10)")
    args = parser.parse_args()
    with bench_root() as tmp:
        results = bench(Path(tmp) / "files", max(2, args.rounds))
    noop = results.pop("noop")["calls"]
    print(f"read_file through a real stdio server, {CHUNK // 1024} KiB per call, vs plain Python on the host path:")
    for label, data in results.items():
        size_mb = data["size"] / MB
        mcp = size_mb / statistics.median(data["mcp"])
        raw = size_mb / statistics.median(data["raw"])
        calls = data["calls"]
        print(f"  {label} ({data['size']:,} bytes, {data['rounds']} rounds, medians):")
        print(f"    MCP read_file:        {mcp:8.1f} MB/s   ({len(calls) // data['rounds']} calls per read)")
        print(f"    plain Python read:    {raw:8.1f} MB/s")
        print(f"    ratio plain / MCP:    {raw / mcp:8.1f}x")
        print(
            f"    per read_file call:   median {statistics.median(calls):6.2f} ms   p99 {percentile(calls, 99):6.2f} ms"
        )
        print(f"    one 256 KiB reply:    {data['wire']:,} bytes of JSON-RPC (text once, metadata structured)")
    print(
        f"  for scale, a no-op tool round trip (get_session, 200 calls): median {statistics.median(noop):.2f} ms   "
        f"p99 {percentile(noop, 99):.2f} ms"
    )


if __name__ == "__main__":
    main()
