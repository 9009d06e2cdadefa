"""Hostile frames: reply sizes against their budgets, and a flood's effect on other conversations.

1. The largest legitimate reply of each kind, through the real agent in a real sandbox, beside the
   budget the host gives that call (bytes of frame): a command's output at the cap, a 256 KiB read
   of random bytes, a listing of 1000 long names, a screenshot of the desktop, and an incompressible
   screen compressed as the agent does (zlib level 1, base64).
2. One conversation's `execute_command` latency over HTTP, quiet and then while three other
   sessions' agents send 30 MB frames (tests/security/hostile_agent.py), measured in one run.

Run: .venv/bin/python bench/bench_hostile_frames.py [--rounds N]
"""

from __future__ import annotations

import argparse
import base64
import os
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).parent.parent))
from agentbay_mcp.backends.local import LocalBackend, desktop, files, processes
from agentbay_mcp.backends.local.agent_client import capped, nesting_ok
from agentbay_mcp.backends.local.sandbox import SandboxOptions
from agentbay_mcp.backends.records import ReadSpan, ShellCommand
from tests.security.test_hostile_frames import flooded_latency, hostile_server, p

CAP = 64 * 1024


async def reply_sizes(root: Path) -> None:
    state = root / "state"
    for parent in [root, *root.parents]:  # a root server's sandboxes run as nobody
        os.chmod(parent, os.stat(parent).st_mode | 0o011)
    backend = LocalBackend(state, sandbox=SandboxOptions())
    async with anyio.create_task_group() as group:
        await backend.start(group)
        record = await backend.create_session(image_id="linux_latest", labels={}, owner="bench")
        sid = record.session_id
        flood = ShellCommand(command="head -c 5000000 /dev/urandom | base64 -w0; head -c 5000000 /dev/urandom >&2")
        await backend.processes.run_process(sid, flood, wait_ms=30_000, cap=CAP)
        names = ShellCommand(
            command="head -c 262144 /dev/urandom > r.bin; mkdir d; cd d; for i in $(seq 1000); do "
            "touch $(printf 'n%0250d' $i); done"
        )
        await backend.processes.run_process(sid, names, wait_ms=60_000, cap=CAP)
        await backend.files.read_file(sid, "r.bin", ReadSpan(), 256 * 1024)
        await backend.files.list_directory(sid, "d", 1000)
        shot_ok = True
        try:
            await backend.desktop.screenshot(sid)
        except Exception as exc:
            shot_ok = False
            print(f"(no screenshot: {exc})")
        agent = await backend._agent(sid)
        budgets = {
            "run": processes.summary_budget(CAP),
            "file_read": 256 * 1024 + 4096,  # the bytes raw after the JSON (agent/framing.py)
            "file_list": 1000 * files.ENTRY_BYTES + files.PATH_BYTES + 1024,
            "desktop_screenshot": desktop.screenshot_budget(1280, 800),
        }
        print("largest legitimate replies (bytes of frame) vs the call's budget:")
        for op, budget in budgets.items():
            seen = agent.largest_replies.get(op)
            shown = f"{seen:>10,}" if seen is not None else "         -"
            print(f"  {op:<20} {shown}  budget {capped(budget):>12,}")
        noise = os.urandom(1280 * 800 * 4)
        worst = len(base64.b64encode(zlib.compress(noise, 1))) + 100
        print(f"  {'screenshot (noise)':<20} {worst:>10,}  budget {desktop.screenshot_budget(1280, 800):>12,}")
        if not shot_ok:
            print("  (desktop screenshot not measured)")
        await backend.delete_session(sid)
        await backend.close()
        group.cancel_scope.cancel()


def nesting_check_time() -> None:
    """The bracket check on the worst frame it may see: a screenshot-sized frame of bracket groups."""
    hostile = (b"[" * 31 + b"]" * 31 + b"{[") * 85_000  # 5.4 MB
    started = time.perf_counter()
    nesting_ok(hostile)
    print(
        f"nesting check of a {len(hostile) / 1e6:.1f} MB hostile frame: {(time.perf_counter() - started) * 1000:.0f} ms"
    )


async def main(rounds: int) -> None:
    nesting_check_time()
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        await reply_sizes(Path(tmp))
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        root = Path(tmp)
        async with hostile_server(root / "state", root) as url:
            quiet, loud, rounds_sent = await flooded_latency(url, rounds)
    for name, samples in (("quiet", quiet), ("flooded", loud)):
        print(
            f"{name:<8} execute_command over HTTP: p50 {statistics.median(samples) * 1000:6.2f} ms  "
            f"p99 {p(samples, 0.99) * 1000:6.2f} ms  ({len(samples)} calls)"
        )
    print(
        f"flood: {rounds_sent} rounds of 30 MB frames from 3 sessions; p99 ratio {p(loud, 0.99) / p(quiet, 0.99):.2f}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    anyio.run(main, parser.parse_args().rounds)
