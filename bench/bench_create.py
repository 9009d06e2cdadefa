"""Fast create benchmark (numbers printed, not asserted): create_session + the first `echo`.

Through a real stdio server, as an assistant sees it, round-robin over:
- a server with a warm session pool (--pool-size 1, the default): the session's sandbox already runs;
- a server without one (--pool-size 0): the sandbox starts inside create_session, as before the pool;
- optionally today's server, from another checkout (--today DIR, e.g. the main branch), same calls.
Between rounds the benchmark waits --pause seconds (an assistant's turn takes longer), so the pool
has refilled; the pool's own start-up cost is the pool-0 figure, paid in the background.

Beside them, in the same run: a raw bubblewrap spawn of `echo` (the sandbox floor, no agent, no MCP)
and a raw unsandboxed spawn, and the peer figure: Daytona's published create-to-first-command
median, 110 ms.

Then what a refill costs the calls running beside it: for half a second after a hand-out (the
refill starts a sandbox on this host) `echo`s on another session are timed, against the same on the
pool-0 server, where nothing runs in the background after create_session.

Run: .venv/bin/python bench/bench_create.py [--rounds N] [--today /path/to/main-checkout]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from stdio_client import RawStdioServer

DAYTONA_CREATE_TO_FIRST_COMMAND_MS = 110.0
#: How long after create_session the neighbour's `echo`s are timed: the refill's delay and sandbox start.
NEIGHBOUR_WINDOW_SECONDS = 0.5


def percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def create_and_echo(server: RawStdioServer) -> tuple[float, str]:
    """ms from create_session sent to the first `echo hi` answered, and the session id."""
    started = time.perf_counter()
    session_id = server.tool("create_session")["session_id"]
    server.tool("execute_command", session_id=session_id, command="echo hi")
    return (time.perf_counter() - started) * 1000, session_id


def shut(server: RawStdioServer) -> None:
    """End the conversation and let the server release everything (its pool too), as a client does."""
    server.close_stdin()
    try:
        server.process.wait(timeout=10)
    finally:
        server.stop()


def raw_spawn(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, timeout=10)
    return (time.perf_counter() - started) * 1000


def bwrap_echo_argv() -> list[str] | None:
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return None
    binds = ["--ro-bind", "/usr", "/usr", "--symlink", "usr/bin", "/bin", "--symlink", "usr/lib", "/lib"]
    if Path("/lib64").exists():
        binds += ["--symlink", "usr/lib64", "/lib64"]
    return [bwrap, "--unshare-all", "--die-with-parent", *binds, "--proc", "/proc", "--dev", "/dev", "echo", "hi"]


def round_robin(
    servers: dict[str, RawStdioServer], rounds: int, pause: float, one_round: Callable[[RawStdioServer], list[float]]
) -> dict[str, list[float]]:
    """`one_round` on each server in turn, `pause` seconds apart; every server is shut down after."""
    samples: dict[str, list[float]] = {name: [] for name in servers}
    try:
        time.sleep(1.0)  # the pools fill
        for server in servers.values():  # warm imports and caches
            for _ in range(3):
                one_round(server)
                time.sleep(pause)
        for _ in range(rounds):
            for name, server in servers.items():
                samples[name] += one_round(server)
                time.sleep(pause)
    finally:
        for server in servers.values():
            shut(server)
    return samples


def bench_create(root: Path, rounds: int, pause: float, today: Path | None) -> dict[str, list[float]]:
    servers: dict[str, RawStdioServer] = {
        "pool warm (--pool-size 1)": RawStdioServer(root / "pool", "--pool-size", "1"),
        "no pool (--pool-size 0)": RawStdioServer(root / "nopool", "--pool-size", "0"),
    }
    if today is not None:
        servers[f"today ({today})"] = RawStdioServer(root / "today", checkout=today)

    def one_round(server: RawStdioServer) -> list[float]:
        elapsed, session_id = create_and_echo(server)
        server.tool("delete_session", session_id=session_id)
        return [elapsed]

    return round_robin(servers, rounds, pause, one_round)


def bench_refill_neighbours(root: Path, rounds: int, pause: float) -> dict[str, list[float]]:
    """`echo` on a long-lived session for NEIGHBOUR_WINDOW_SECONDS after create_session: beside the
    refill that a hand-out starts, and on a server without a pool, where nothing runs after it."""
    servers = {
        "after a hand-out (a refill runs)": RawStdioServer(root / "n-pool", "--pool-size", "1"),
        "after a create without a pool": RawStdioServer(root / "n-nopool", "--pool-size", "0"),
    }
    neighbours = {id(server): server.tool("create_session")["session_id"] for server in servers.values()}

    def one_round(server: RawStdioServer) -> list[float]:
        created = server.tool("create_session")["session_id"]
        found = []
        window_ends = time.perf_counter() + NEIGHBOUR_WINDOW_SECONDS
        while time.perf_counter() < window_ends:
            started = time.perf_counter()
            server.tool("execute_command", session_id=neighbours[id(server)], command="echo hi")
            found.append((time.perf_counter() - started) * 1000)
        server.tool("delete_session", session_id=created)
        return found

    return round_robin(servers, rounds, pause, one_round)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--pause", type=float, default=0.3, help="seconds between rounds (an assistant's turn)")
    parser.add_argument("--today", type=Path, help="a checkout of today's code (e.g. main) to compare in the same run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        root.chmod(0o711)  # root's sandboxes run as nobody, which must reach the state dirs
        samples = bench_create(root, args.rounds, args.pause, args.today)
        argv = bwrap_echo_argv()
        raw_bwrap = [raw_spawn(argv) for _ in range(args.rounds)] if argv else []
        raw_plain = [raw_spawn(["/bin/echo", "hi"]) for _ in range(args.rounds)]
        neighbours = bench_refill_neighbours(root, args.rounds, args.pause)

    floor = statistics.median(raw_bwrap) if raw_bwrap else float("nan")
    print(f"create_session + first `echo hi` through stdio MCP ({args.rounds} rounds, {args.pause} s apart):")
    for name, found in samples.items():
        median = statistics.median(found)
        print(
            f"  {name:34} median {median:6.2f} ms   p90 {percentile(found, 90):6.2f} ms   "
            f"= {median / floor:.2f}x raw bwrap echo, {median / DAYTONA_CREATE_TO_FIRST_COMMAND_MS:.2f}x Daytona"
        )
    names = list(samples)
    warm, cold = statistics.median(samples[names[0]]), statistics.median(samples[names[1]])
    print(f"  pool warm / no pool: {warm / cold:.2f}x")
    if len(names) > 2:
        print(f"  no pool / today: {cold / statistics.median(samples[names[2]]):.2f}x")
    print(f"  raw bwrap spawn of echo (no agent, no MCP): median {floor:.2f} ms")
    print(f"  raw unsandboxed spawn of /bin/echo:          median {statistics.median(raw_plain):.2f} ms")
    print(f"  peer: Daytona's published create-to-first-command median: {DAYTONA_CREATE_TO_FIRST_COMMAND_MS:.0f} ms")
    print(f"`echo hi` on another session of the same server, for {NEIGHBOUR_WINDOW_SECONDS} s after create_session:")
    for name, found in neighbours.items():
        median, p90 = statistics.median(found), percentile(found, 90)
        print(f"  {name:34} median {median:6.2f} ms   p90 {p90:6.2f} ms   ({len(found)} calls)")


if __name__ == "__main__":
    main()
