"""Session lifecycle benchmark (numbers printed, not asserted).

- create_session + delete_session round trip through a real stdio server: median and p99, with the
  default per-session disk quota (a loop-mounted image; as root) and without one (--disk-limit-mb 0),
  beside the same directory work done by plain Python in this process (the floor).
- Time to release 100 sessions when the client closes stdin, and the SIGTERM equivalent.

Run: .venv/bin/python bench/bench_sessions.py [--rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))  # the checkout: agentbay_mcp.testing (load, leaks)
import anyio
from stdio_client import RawStdioServer

from agentbay_mcp.testing.leaks import find_leaks
from agentbay_mcp.testing.load import PipelinedStdio, loaded_http_client
from agentbay_mcp.testing.servers import HttpServer


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def bench_round_trips(state_dir: Path, rounds: int) -> tuple[list[float], list[float]]:
    """Rounds alternating between a server with the default disk quota and one without (same noise)."""
    # Without a session pool: these rounds time the sandbox's start and stop (bench_create.py times the pool).
    servers = [
        RawStdioServer(state_dir / "quota", "--pool-size", "0"),
        RawStdioServer(state_dir / "none", "--disk-limit-mb", "0", "--pool-size", "0"),
    ]
    try:
        samples: tuple[list[float], list[float]] = ([], [])
        for server in servers:
            for _ in range(20):  # warm up imports and caches
                server.tool("delete_session", session_id=server.tool("create_session")["session_id"])
        for _ in range(rounds):
            for server, found in zip(servers, samples, strict=True):
                started = time.perf_counter()
                session_id = server.tool("create_session", labels={"bench": "1"})["session_id"]
                server.tool("delete_session", session_id=session_id)
                found.append((time.perf_counter() - started) * 1000)
        return samples
    finally:
        for server in servers:
            server.stop()


def bench_floor(root: Path, rounds: int) -> list[float]:
    samples = []
    for i in range(rounds):
        started = time.perf_counter()
        session = root / f"s{i}"
        (session / "home").mkdir(parents=True)
        (session / "tmp").mkdir()
        (session / "meta.json").write_text('{"session_id": "x"}')
        shutil.rmtree(session)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def bench_release(state_dir: Path, count: int, how: str) -> tuple[float, float]:
    server = RawStdioServer(state_dir, "--max-sessions", str(count))
    for _ in range(count):
        server.tool("create_session")
    sessions = state_dir / "sessions"
    started = time.perf_counter()
    if how == "eof":
        server.close_stdin()
    else:
        server.process.send_signal(signal.SIGTERM)
    server.process.wait(timeout=30)
    exited = (time.perf_counter() - started) * 1000
    left = [p for p in sessions.iterdir() if p.name.startswith("session-")]
    assert not left, f"{len(left)} sessions left behind"
    return exited, exited


def bench_loaded_sigterm_stdio(state_dir: Path, count: int, image_id: str) -> str:
    """SIGTERM a stdio server whose conversation holds `count` loaded sessions; time to exit, and leaks."""
    with PipelinedStdio(state_dir, "--max-sessions", str(count)) as server:
        server.load(count, image_id)
        time.sleep(0.5)  # the in-flight commands reach their sandboxes
        started = time.perf_counter()
        server.process.send_signal(signal.SIGTERM)
        code = server.wait_exit(timeout=30)
        exited = (time.perf_counter() - started) * 1000
    return f"exit {code} after {exited:.0f} ms; left: {find_leaks(state_dir).summary()}"


def bench_loaded_sigterm_http(state_dir: Path, count: int, image_id: str) -> str:
    """The same over streamable HTTP (one handshake-era client holding every session)."""
    server = HttpServer(state_dir, "--max-sessions", str(count))
    timing: dict[str, float] = {}

    async def drive() -> None:
        with contextlib.suppress(Exception):
            async with loaded_http_client(server, count, image_id):
                started = time.perf_counter()
                server.process.send_signal(signal.SIGTERM)
                await anyio.to_thread.run_sync(server.process.wait, 30)
                timing["exited"] = (time.perf_counter() - started) * 1000

    try:
        anyio.run(drive)
    finally:
        code = server.stop()
    return f"exit {code} after {timing.get('exited', -1):.0f} ms; left: {find_leaks(state_dir).summary()}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--loaded-only", action="store_true", help="only the SIGTERM-under-load numbers")
    parser.add_argument("--sessions", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        root.chmod(0o711)  # root's sandboxes run as nobody, which must reach the state dirs
        print(f"SIGTERM with {args.sessions} sessions, each with a background process and a command in flight:")
        for image_id in ("code_latest", "linux_latest"):
            extra = " and a desktop with an xterm" if image_id == "linux_latest" else ""
            for transport, bench in (("stdio", bench_loaded_sigterm_stdio), ("http", bench_loaded_sigterm_http)):
                outcome = bench(root / f"loaded-{transport}-{image_id}", args.sessions, image_id)
                print(f"  {transport:5} {image_id}{extra}: {outcome}")
        if args.loaded_only:
            return
        mcp, no_quota = bench_round_trips(root / "rt", args.rounds)
        floor = bench_floor(root / "floor", args.rounds)
        print(f"create_session + delete_session through stdio MCP ({args.rounds} rounds):")
        print(f"  median {statistics.median(mcp):.2f} ms   p99 {percentile(mcp, 99):.2f} ms   (default disk quota)")
        print(
            f"  median {statistics.median(no_quota):.2f} ms   p99 {percentile(no_quota, 99):.2f} ms"
            "   (--disk-limit-mb 0: no quota file system)"
        )
        print("  (each session starts and stops a bubblewrap sandbox with its agent: see bench_commands.py)")
        print(f"  the directory work alone in plain Python: median {statistics.median(floor):.3f} ms")
        for how in ("eof", "sigterm"):
            exited, _ = bench_release(root / f"release-{how}", 100, how)
            print(f"release 100 sessions on {how}: process exited with every session gone in {exited:.0f} ms")


if __name__ == "__main__":
    main()
