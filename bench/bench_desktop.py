"""Desktop benchmark (numbers printed, not asserted).

Through a real stdio server (raw JSON-RPC client, bubblewrap sandboxes, Xvfb + openbox in each):
- the time from the first desktop call on a fresh session to a ready desktop (that call starts Xvfb
  and the window manager), beside the same call once the desktop runs;
- median and p99 of list_windows, get_active_window, control_window (maximize/restore, each
  verified), take_screenshot (PNG full size, JPEG at 640 px) and input_action (pointer move), with
  an xterm open, beside a no-op tool round trip (get_session) measured in the same run.

Run: .venv/bin/python bench/bench_desktop.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_commands import bench_root, watched_server
from bench_sessions import percentile


def timed(calls: int, action: Callable[[int], Any]) -> list[float]:
    """Milliseconds of each of `calls` calls of action(i)."""
    times = []
    for i in range(calls):
        started = time.perf_counter()
        action(i)
        times.append((time.perf_counter() - started) * 1000)
    return times


def bench(state_dir: Path, rounds: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {
        "first desktop call (starts Xvfb + openbox)": [],
        "same call, desktop running": [],
    }
    with watched_server(state_dir, 300, "the desktop benchmark") as server:
        for _ in range(max(3, rounds // 10)):
            fresh = server.tool("create_session", image_id="linux_latest")["session_id"]
            for times in results.values():  # the first call starts the desktop, the second finds it running
                started = time.perf_counter()
                server.tool("list_windows", session_id=fresh)
                times.append((time.perf_counter() - started) * 1000)
            server.tool("delete_session", session_id=fresh)

        session_id = server.tool("create_session", image_id="linux_latest")["session_id"]
        window = server.tool("start_app", session_id=session_id, start_cmd="xterm -T bench")["window"]
        if window is None:
            raise RuntimeError("xterm did not open a window")
        window_id = window["window_id"]
        results["get_session (no-op round trip)"] = timed(
            rounds, lambda _: server.tool("get_session", session_id=session_id)
        )
        results["list_windows (1 window)"] = timed(rounds, lambda _: server.tool("list_windows", session_id=session_id))
        results["get_active_window"] = timed(rounds, lambda _: server.tool("get_active_window", session_id=session_id))

        def control(i: int) -> None:
            action = "maximize" if i % 2 == 0 else "restore"
            done = server.tool("control_window", session_id=session_id, window_id=window_id, action=action)
            if not done["verified"]:
                raise RuntimeError(f"{action} not verified: {done}")

        results["control_window maximize/restore (verified)"] = timed(max(10, rounds // 4), control)
        results["input_action move"] = timed(
            rounds,
            lambda i: server.tool("input_action", session_id=session_id, action="move", x=i % 1000, y=i % 700),
        )
        results["take_screenshot png 1280x800"] = timed(
            max(10, rounds // 4), lambda _: server.tool("take_screenshot", session_id=session_id)
        )
        results["take_screenshot jpeg max_width=640"] = timed(
            max(10, rounds // 4),
            lambda _: server.tool("take_screenshot", session_id=session_id, format="jpeg", max_width=640),
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=200, help="calls per measured tool (fewer for slow ones)")
    args = parser.parse_args()
    with bench_root() as tmp:
        results = bench(Path(tmp) / "desktop", max(20, args.rounds))
    noop = statistics.median(results["get_session (no-op round trip)"])
    print("desktop tools through a real stdio server (bubblewrap sandbox, Xvfb + openbox, one xterm open):")
    for label, times in results.items():
        median = statistics.median(times)
        print(
            f"  {label:45s} n={len(times):4d}  median {median:7.2f} ms  p99 {percentile(times, 99):7.2f} ms"
            f"  ({median / noop:5.1f}x a no-op call)"
        )


if __name__ == "__main__":
    main()
