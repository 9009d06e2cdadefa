"""Cold start to `tools/list` (numbers printed, not asserted).

Spawns, alternately N times each so all see the same machine load:
- `python -m agentbay_mcp` (stdio, the default local backend, a fresh state dir each time);
- a minimal `MCPServer` with one tool, started the same way (the SDK's own import floor);
- with `--compare DIR`, also `python -m agentbay_mcp` from another checkout (e.g. main: before/after),
and times each from the spawn to the `tools/list` answer (raw JSON-RPC over the pipes: initialize,
notifications/initialized, tools/list). Prints medians, p90s, the ratio to the minimal server
(target: at most 1.2), the ratios to the peers' figures quoted in issue 14, and each process's CPU
time from spawn to exit (steadier than wall time when other work loads the machine).

Two bytecode setups, each its own table:
- `cached`: every module's bytecode cached (a private PYTHONPYCACHEPREFIX, filled by a warm-up run),
  as a pip-installed server runs;
- `as-is`: this environment unchanged. With PYTHONDONTWRITEBYTECODE=1 and an editable checkout, no
  .pyc is ever written for agentbay_mcp, so every start compiles its modules from source, while the
  SDK's come precompiled from site-packages.

`--importtime` also runs agentbay-mcp once under `python -X importtime` (bytecode cached) and prints
what its start imports, by package and by module.

Run: .venv/bin/python bench/bench_start.py [--rounds N] [--compare DIR] [--importtime]
"""

from __future__ import annotations

import argparse
import faulthandler
import os
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
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
TARGET_RATIO = 1.2
#: A start that hangs this long is a bug, not a sample: dump the stacks and exit.
HANG_SECONDS = 60
EXIT_SECONDS = 30


@dataclass
class Server:
    """One kind of server process to start, and what its starts measured."""

    name: str
    command: list[str]
    env: dict[str, str]
    wall_ms: list[float] = field(default_factory=list)
    cpu_ms: list[float] = field(default_factory=list)


#: -P: the checkout comes from PYTHONPATH only, not from the bench's working directory.
AGENTBAY_MCP = [sys.executable, "-P", "-m", "agentbay_mcp"]


def wait_with_usage(server: RawStdioServer) -> float:
    """Wait for the process to exit; its CPU time (user + system, ms) from spawn to exit."""
    deadline = time.monotonic() + EXIT_SECONDS
    pid = server.process.pid
    while time.monotonic() < deadline:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            server.process.returncode = os.waitstatus_to_exitcode(status)
            return (usage.ru_utime + usage.ru_stime) * 1000
        time.sleep(0.005)
    raise TimeoutError(f"{server.process.args} did not exit within {EXIT_SECONDS} s of stdin EOF")


def start_once(server: Server, state_dir: Path) -> tuple[float, float]:
    """Milliseconds from the spawn to the tools/list answer, and the process's CPU time to its exit."""
    started = time.perf_counter()
    process = RawStdioServer(state_dir, command=server.command, env=server.env)
    try:
        tools = process.request("tools/list", {})["tools"]
        elapsed = (time.perf_counter() - started) * 1000
        assert tools, "no tools listed"
        process.close_stdin()
        return elapsed, wait_with_usage(process)
    finally:
        process.stop()


def measure(servers: list[Server], root: Path, rounds: int) -> None:
    for run in range(rounds + 1):  # run 0 warms the page cache (and, when cached, the bytecode)
        for index, server in enumerate(servers):
            wall, cpu = start_once(server, root / f"state-{run}-{index}")
            if run:
                server.wall_ms.append(wall)
                server.cpu_ms.append(cpu)


def report(title: str, servers: list[Server]) -> None:
    print(f"\n{title}")
    print(f"  {'':32} {'median':>7} {'p90':>7} {'min':>7} {'max':>7}   cpu median (spawn to exit)")
    for server in servers:
        wall = server.wall_ms
        print(
            f"  {server.name:32} {statistics.median(wall):7.0f} {percentile(wall, 90):7.0f} {min(wall):7.0f} "
            f"{max(wall):7.0f}   {statistics.median(server.cpu_ms):7.0f}"
        )
    floor = servers[1]
    for server in servers[:1] + servers[2:]:
        ratio = statistics.median(server.wall_ms) / statistics.median(floor.wall_ms)
        cpu_ratio = statistics.median(server.cpu_ms) / statistics.median(floor.cpu_ms)
        verdict = "meets" if ratio <= TARGET_RATIO else "misses"
        print(
            f"  {server.name} / minimal: {ratio:.2f} wall ({verdict} the {TARGET_RATIO} target), {cpu_ratio:.2f} CPU;"
            f" best starts {min(server.wall_ms) / min(floor.wall_ms):.2f}"
        )
    ours = statistics.median(servers[0].wall_ms)
    print(
        "  vs peers (Node, issue 14 figures): "
        + ", ".join(f"{p} {ms:.0f} ms: {ours / ms:.1f}x" for p, ms in PEERS.items())
    )


IMPORT_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def importtime(root: Path, env: dict[str, str], top: int) -> None:
    """Run one agentbay-mcp start to tools/list under -X importtime and print the largest imports."""
    log = root / "importtime.txt"
    with log.open("wb") as stderr:
        command = [sys.executable, "-X", "importtime", "-P", "-m", "agentbay_mcp"]
        process = RawStdioServer(root / "state-importtime", command=command, env=env, stderr=stderr)
        try:
            process.request("tools/list", {})
            process.close_stdin()
            process.process.wait(timeout=EXIT_SECONDS)
        finally:
            process.stop()
    entries = []  # (self us, cumulative us, depth, module), children listed before their parent
    for line in log.read_text(errors="replace").splitlines():
        found = IMPORT_LINE.match(line)
        if found:
            entries.append((int(found[1]), int(found[2]), len(found[3]) // 2, found[4]))
    # A package's cost: the cumulative time of each import of it made from outside the package (so
    # what it pulls in counts, and its own nested modules are not counted twice).
    by_package: dict[str, int] = defaultdict(int)
    stack: list[tuple[int, str]] = []
    for _, cumulative, depth, module in reversed(entries):  # reversed: each parent before its children
        while stack and stack[-1][0] >= depth:
            stack.pop()
        package = module.split(".")[0]
        if not stack or stack[-1][1].split(".")[0] != package:
            by_package[package] += cumulative
        stack.append((depth, module))
    ours = [entry for entry in entries if entry[3].startswith("agentbay_mcp")]
    total = sum(cumulative for _, cumulative, depth, _ in entries if depth == 1)
    print(
        f"\nagentbay-mcp start to tools/list under -X importtime (bytecode cached): {len(entries)} modules "
        f"({len(ours)} of agentbay_mcp), {total / 1000:.0f} ms of imports (importtime inflates it)"
    )
    print("  largest packages (cumulative, with what they import first):")
    for package, us in sorted(by_package.items(), key=lambda item: -item[1])[:top]:
        print(f"    {us / 1000:7.1f} ms  {package}")
    print("  largest modules (self time):")
    for own, _, _, module in sorted(entries, key=lambda entry: -entry[0])[:top]:
        print(f"    {own / 1000:7.1f} ms  {module}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10, help="starts of each server per setup (default 10)")
    parser.add_argument("--compare", type=Path, help="also start agentbay-mcp from this checkout (e.g. main)")
    parser.add_argument("--importtime", action="store_true", help="also print agentbay-mcp's largest imports")
    parser.add_argument("--top", type=int, default=15, help="entries in each importtime list")
    args = parser.parse_args()
    faulthandler.dump_traceback_later(HANG_SECONDS * (3 * 2 * (args.rounds + 1) + 2), exit=True)
    with tempfile.TemporaryDirectory(prefix="bench-start-") as tmp:
        root = Path(tmp)
        root.chmod(0o711)  # the sandbox user (nobody, when run as root) must reach the state dirs
        minimal = root / "minimal_server.py"
        minimal.write_text(MINIMAL_SERVER)
        cached = {"PYTHONPYCACHEPREFIX": str(root / "pycache"), "PYTHONDONTWRITEBYTECODE": ""}
        as_is = "PYTHONDONTWRITEBYTECODE=1" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "bytecode written"
        load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
        print(f"cold start to tools/list (ms), {args.rounds} starts each, alternating; load average {load}")
        for title, env in (("cached", cached), (f"as-is ({as_is})", {})):
            servers = [
                Server("agentbay-mcp", AGENTBAY_MCP, {"PYTHONPATH": str(CHECKOUT), **env}),
                Server("minimal MCPServer", [sys.executable, str(minimal)], dict(env)),
            ]
            if args.compare:
                compare = args.compare.resolve()
                servers.append(Server(f"agentbay-mcp @ {compare}", AGENTBAY_MCP, {"PYTHONPATH": str(compare), **env}))
            measure(servers, root / title.split()[0], args.rounds)
            report(f"bytecode {title}:", servers)
        print(f"\nissue 14 measured before: {ISSUE_BEFORE}")
        if args.importtime:
            importtime(root, {"PYTHONPATH": str(CHECKOUT), **cached}, args.top)


if __name__ == "__main__":
    main()
