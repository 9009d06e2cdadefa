"""Session lifecycle benchmark (numbers printed, not asserted).

- create_session + delete_session round trip through a real stdio server: median and p99, with the
  default per-session disk quota (a loop-mounted image; as root) and without one (--disk-limit-mb 0),
  beside the same directory work done by plain Python in this process (the floor).
- Time to release 100 sessions when the client closes stdin, and the SIGTERM equivalent.

Run: .venv/bin/python bench/bench_sessions.py [--rounds N]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from stdio_client import RawStdioServer


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def bench_round_trips(state_dir: Path, rounds: int) -> tuple[list[float], list[float]]:
    """Rounds alternating between a server with the default disk quota and one without (same noise)."""
    servers = [RawStdioServer(state_dir / "quota"), RawStdioServer(state_dir / "none", "--disk-limit-mb", "0")]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        root.chmod(0o711)  # root's sandboxes run as nobody, which must reach the state dirs
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
