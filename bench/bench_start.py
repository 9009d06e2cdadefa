"""Cold start to `tools/list` (numbers printed, not asserted).

Spawns, alternately N times each so both see the same machine load:
- `python -m agentbay_mcp` (stdio, the default local backend, a fresh state dir each time);
- a minimal `MCPServer` with one tool, started the same way (the SDK's own import floor),
and times each from the spawn to the `tools/list` answer (raw JSON-RPC over the pipes: initialize,
notifications/initialized, tools/list). Prints medians, p90s, the ratio (target: at most 1.2), and
the ratios to the peers' figures quoted in issue 14. `--importtime` also runs agentbay-mcp once under
`python -X importtime` and prints what its start imports, by package and by module.

Run: .venv/bin/python bench/bench_start.py [--rounds N] [--importtime]
"""

from __future__ import annotations

import argparse
import faulthandler
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_sessions import percentile
from stdio_client import RawStdioServer

CHECKOUT = Path(__file__).resolve().parent.parent
MINIMAL_SERVER = """\
from mcp.server.mcpserver import MCPServer

mcp = MCPServer("minimal")


@mcp.tool()
def echo(text: str) -> str:
    \"\"\"Echo the text back.\"\"\"
    return text


mcp.run()
"""
#: Cold start to tools/list of the peers, from issue 14 (both Node servers, measured there).
PEERS = {"mcp-server-commands": 74.0, "filesystem server": 237.0}
ISSUE_BEFORE = "830-1120 ms, 1.55-1.7x the minimal server"
#: A run that hangs this long is a bug, not a sample: dump the stacks and exit.
HANG_SECONDS = 120


def time_to_tools_list(state_dir: Path, command: list[str] | None) -> float:
    """Milliseconds from the spawn to the tools/list answer; then the conversation is ended."""
    started = time.perf_counter()
    server = RawStdioServer(state_dir, command=command)
    try:
        tools = server.request("tools/list", {})["tools"]
        elapsed = (time.perf_counter() - started) * 1000
        assert tools, "no tools listed"
        server.close_stdin()
        server.process.wait(timeout=30)
        return elapsed
    finally:
        server.stop()


def bench(root: Path, rounds: int) -> dict[str, list[float]]:
    minimal = root / "minimal_server.py"
    minimal.write_text(MINIMAL_SERVER)
    commands: dict[str, list[str] | None] = {
        "agentbay-mcp": None,
        "minimal MCPServer": [sys.executable, str(minimal)],
    }
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for run in range(rounds + 1):  # run 0 warms the page cache and the bytecode caches
        for name, command in commands.items():
            elapsed = time_to_tools_list(root / f"state-{run}-{len(samples[name])}-{name[0]}", command)
            if run:
                samples[name].append(elapsed)
    return samples


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def importtime(root: Path, top: int) -> None:
    """Run one agentbay-mcp start to tools/list under -X importtime and print the largest imports."""
    log = root / "importtime.txt"
    with log.open("wb") as stderr:
        command = [sys.executable, "-X", "importtime", "-m", "agentbay_mcp"]
        server = RawStdioServer(root / "state-importtime", command=command, stderr=stderr)
        try:
            server.request("tools/list", {})
            server.close_stdin()
            server.process.wait(timeout=30)
        finally:
            server.stop()
    entries = []  # (self us, cumulative us, depth, module), children listed before their parent
    for line in log.read_text(errors="replace").splitlines():
        found = IMPORT_LINE.match(line)
        if found:
            entries.append((int(found[1]), int(found[2]), len(found[3]) // 2, found[4]))
    # A package's cost: the cumulative time of each import of it made from outside the package (so
    # what it pulls in counts, its own nested modules are not counted twice).
    by_package: dict[str, int] = defaultdict(int)
    stack: list[tuple[int, str]] = []
    for _, cumulative, depth, module in reversed(entries):  # reversed: each parent before its children
        while stack and stack[-1][0] >= depth:
            stack.pop()
        package = module.split(".")[0]
        if not stack or stack[-1][1].split(".")[0] != package:
            by_package[package] += cumulative
        stack.append((depth, module))
    total = sum(cumulative for _, cumulative, depth, _ in entries if depth == 1)
    print(f"\nagentbay-mcp start under -X importtime: {len(entries)} modules, {total / 1000:.0f} ms of imports")
    print(f"  largest packages (cumulative, with what they import):")
    for package, us in sorted(by_package.items(), key=lambda item: -item[1])[:top]:
        print(f"    {us / 1000:7.1f} ms  {package}")
    print(f"  largest modules (self time):")
    for own, _, _, module in sorted(entries, key=lambda entry: -entry[0])[:top]:
        print(f"    {own / 1000:7.1f} ms  {module}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="starts of each server (default 10)")
    parser.add_argument("--importtime", action="store_true", help="also print agentbay-mcp's largest imports")
    parser.add_argument("--top", type=int, default=15, help="entries in each importtime list")
    args = parser.parse_args()
    faulthandler.dump_traceback_later(HANG_SECONDS * (2 * args.rounds + 3), exit=True)
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        root = Path(tmp)
        root.chmod(0o711)  # the sandbox user (nobody, when run as root) must reach the state dirs
        samples = bench(root, args.rounds)
        print(f"cold start to tools/list, {args.rounds} starts each, alternating (ms):")
        for name, found in samples.items():
            print(
                f"  {name:18} median {statistics.median(found):6.0f}  p90 {percentile(found, 90):6.0f}  "
                f"min {min(found):6.0f}  max {max(found):6.0f}"
            )
        ours, floor = (statistics.median(found) for found in samples.values())
        print(f"  ratio agentbay-mcp / minimal MCPServer (medians): {ours / floor:.2f} (target <= 1.2)")
        print(f"  issue 14 measured before: {ISSUE_BEFORE}")
        for peer, ms in PEERS.items():
            print(f"  vs {peer} (Node, issue 14 figure {ms:.0f} ms): {ours / ms:.1f}x")
        if args.importtime:
            importtime(root, args.top)


if __name__ == "__main__":
    main()
