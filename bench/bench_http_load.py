"""50 conversations over streamable HTTP at once (numbers printed, not asserted).

One real `agentbay-mcp --transport http` server on 127.0.0.1 (a free port, a fresh state dir,
default settings but --allow-unauthenticated: without the per-start token, as issue 14's figures
were taken; bench_http_auth.py measures what the token costs a call). Each conversation is its
own MCP session (its own client and connections): it creates a sandbox session, waits until
every conversation has one, runs 20 `execute_command("echo hi")` one after another, then deletes
its session and closes. Printed: calls/s over the command phase (first command started to last
one answered), p50/p90/p99 of one call, and in the same run the single-conversation round trip
(one conversation alone, same server), with ratios against the figures issue 14 quotes for today.

Clients: `--client sdk` (default) is the Python SDK's `Client` over `streamable_http_client`, as the
issue's figures were taken; `--client raw` speaks JSON-RPC over httpx2 directly (no GET stream, far
less client CPU), which shows how much of the time is the client's on this 2-core machine.
`--profile FILE` runs the server under cProfile (written when it exits) to see where its time goes.

Run: .venv/bin/python bench/bench_http_load.py [--conversations 50] [--calls 20] [--client sdk|raw]
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).parent))
from bench_sessions import percentile

from agentbay_mcp.testing.servers import free_port
from agentbay_mcp.testing.waiting import wait_until

#: Issue 14's figures for today (50 conversations x 20 `echo hi`).
TODAY_CALLS_PER_SECOND = (190.0, 200.0)
TODAY_P50_MS = (105.0, 113.0)
TODAY_P99_MS = (600.0, 675.0)
TODAY_SINGLE_MS = (3.5, 4.0)
TARGET_P99_MS = 250.0

#: Bounds: one call, and the whole load phase.
CALL_TIMEOUT = 60.0
PHASE_TIMEOUT = 300.0

#: The server under cProfile counting CPU time, not wall time (on 2 busy cores a wall-clock profile
#: charges whatever ran when the server was preempted, e.g. by a sandbox its `send` woke, to the
#: call), and only during the load phase: SIGUSR1 starts it, SIGUSR2 stops it and writes the file.
PROFILED_SERVER = """
import cProfile, runpy, signal, sys, time
out = sys.argv.pop(1)
sys.argv[0] = "agentbay_mcp"
clock = sys.argv.pop(1)
profiler = cProfile.Profile(time.process_time if clock == "cpu" else time.perf_counter)
signal.signal(signal.SIGUSR1, lambda *_: profiler.enable())
signal.signal(signal.SIGUSR2, lambda *_: (profiler.disable(), profiler.dump_stats(out)))
runpy.run_module("agentbay_mcp", run_name="__main__", alter_sys=True)
"""

Call = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


#: Where a profiled frame's time goes, by the file it is in (first match wins).
LAYERS: tuple[tuple[str, str], ...] = (
    ("/agentbay_mcp/", "agentbay_mcp (ours)"),
    ("/uvicorn/", "uvicorn + h11 (HTTP/1.1)"),
    ("/h11/", "uvicorn + h11 (HTTP/1.1)"),
    ("/starlette/", "starlette + sse_starlette (routing, SSE responses)"),
    ("/sse_starlette/", "starlette + sse_starlette (routing, SSE responses)"),
    ("/mcp/", "mcp SDK (transport, session manager, dispatcher, tools)"),
    ("/mcp_types/", "mcp SDK (transport, session manager, dispatcher, tools)"),
    ("/pydantic", "pydantic (validation, serialisation)"),
    ("/typing_inspection/", "pydantic (validation, serialisation)"),
    ("/opentelemetry/", "opentelemetry (the SDK's spans)"),
    ("/anyio/", "anyio + asyncio (tasks, streams, cancel scopes, the loop)"),
    ("/sniffio/", "anyio + asyncio (tasks, streams, cancel scopes, the loop)"),
    ("/asyncio/", "anyio + asyncio (tasks, streams, cancel scopes, the loop)"),
    ("/selectors.py", "anyio + asyncio (tasks, streams, cancel scopes, the loop)"),
    ("/logging/", "logging"),
)


def layer_of(filename: str) -> str | None:
    """The layer of a profiled frame's file; None for built-ins (charged to their callers)."""
    if filename == "~":
        return None
    return next((name for part, name in LAYERS if part in filename), "other (stdlib)")


def profile_by_layer(path: Path) -> list[tuple[str, float]]:
    """CPU seconds by layer in a cProfile file; a built-in's time goes to its callers' layers pro rata."""
    stats: dict[Any, Any] = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    totals: dict[str, float] = {}
    for (filename, _, _), (_, _, own, _, callers) in stats.items():
        layer = layer_of(filename)
        shares = {layer: own} if layer else {}
        if layer is None:
            by_caller = {layer_of(caller[0]) or "built-ins": calls[2] for caller, calls in callers.items()}
            weight = sum(by_caller.values())
            shares = {name: own * t / weight for name, t in by_caller.items()} if weight else {"built-ins": own}
        for name, seconds in shares.items():
            totals[name] = totals.get(name, 0.0) + seconds
    return sorted(totals.items(), key=lambda item: -item[1])


def start_server(
    state_dir: Path, profile: Path | None, clock: str, extra: list[str]
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBAY_MCP_")}
    env["AGENTBAY_MCP_STATE_DIR"] = str(state_dir)
    # The checkout's package, whatever the current directory.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent.parent), env.get("PYTHONPATH")]))
    runner = ["-c", PROFILED_SERVER, str(profile), clock] if profile else ["-m", "agentbay_mcp"]
    command = [sys.executable, *runner, "--transport", "http", "--port", str(port), "--allow-unauthenticated"]
    command += extra
    log_path = state_dir.parent / "server.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)

    def listening() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log_path.read_text()}")
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    if not wait_until(listening, timeout=30):
        process.kill()
        raise RuntimeError("server did not start")
    return process, f"http://127.0.0.1:{port}/mcp"


def cpu_seconds(server_pid: int) -> dict[str, float]:
    """CPU seconds so far: the server process, its descendants (sandboxes, agents, commands), this
    client process, and the whole machine (other work on it included)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    used: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        parents[int(entry.name)] = int(fields[1])
        used[int(entry.name)] = sum(int(f) for f in fields[11:15]) / tick  # utime stime cutime cstime
    descendants = 0.0
    for pid, cpu in used.items():
        ancestor = parents.get(pid, 0)
        while ancestor > 1 and ancestor != server_pid:
            ancestor = parents.get(ancestor, 0)
        if ancestor == server_pid:
            descendants += cpu
    server_fields = (Path(f"/proc/{server_pid}/stat")).read_text().rsplit(")", 1)[1].split()
    machine = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    client = os.times()
    return {
        "server": sum(int(f) for f in server_fields[11:13]) / tick,
        "sandboxes": descendants + sum(int(f) for f in server_fields[13:15]) / tick,
        "client": client.user + client.system,
        "machine busy": (sum(machine) - machine[3] - machine[4]) / tick,  # all but idle and iowait
    }


class RawConversation:
    """A handshake-era conversation in plain JSON-RPC over httpx2 (initialize, calls, DELETE)."""

    def __init__(self, http: httpx2.AsyncClient, url: str) -> None:
        self.http = http
        self.url = url
        self.headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
        self.next_id = 0

    async def _post(self, message: dict[str, Any]) -> dict[str, Any] | None:
        response = await self.http.post(self.url, content=json.dumps(message), headers=self.headers)
        response.raise_for_status()
        if "mcp-session-id" in response.headers:
            self.headers["mcp-session-id"] = response.headers["mcp-session-id"]
        if response.status_code == 202:
            return None
        if response.headers["content-type"].startswith("application/json"):
            return dict(response.json())
        for line in response.text.splitlines():  # SSE: the answer is the one data line with our id
            if line.startswith("data:"):
                event = json.loads(line[5:])
                if event.get("id") == message.get("id"):
                    return dict(event)
        raise RuntimeError(f"no answer in {response.text[:200]!r}")

    async def open(self) -> None:
        hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}
        await self.request("initialize", hello)
        self.headers["mcp-protocol-version"] = "2025-11-25"
        await self._post({"jsonrpc": "2.0", "method": "notifications/initialized"})

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.next_id += 1
        reply = await self._post({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        if reply is None or "result" not in reply:
            raise RuntimeError(f"{method}: {reply}")
        return dict(reply["result"])

    async def call(self, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await self.request("tools/call", {"name": name, "arguments": arguments})
        if result.get("isError"):
            raise RuntimeError(f"{name}: {result['content']}")
        return dict(result["structuredContent"])

    async def close(self) -> None:
        await self.http.delete(self.url, headers=self.headers)


async def open_conversation(stack: AsyncExitStack, url: str, client_kind: str) -> Call:
    """A new conversation (its own MCP session and HTTP connections); returns its tool-call function."""
    http = await stack.enter_async_context(httpx2.AsyncClient(timeout=httpx2.Timeout(CALL_TIMEOUT)))
    if client_kind == "raw":
        raw = RawConversation(http, url)
        await raw.open()
        stack.push_async_callback(raw.close)
        return raw.call
    client = await stack.enter_async_context(Client(streamable_http_client(url, http_client=http), mode="legacy"))

    async def call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
        result = await client.call_tool(name, arguments)
        if result.is_error or result.structured_content is None:
            raise RuntimeError(f"{name}: {result.content}")
        return dict(result.structured_content)

    return call


async def echo(call: Call, session_id: str) -> float:
    started = time.perf_counter()
    with anyio.fail_after(CALL_TIMEOUT):
        result = await call("execute_command", {"session_id": session_id, "command": "echo hi"})
    elapsed = (time.perf_counter() - started) * 1000
    if result.get("exit_code") != 0:
        raise RuntimeError(f"echo hi: {result}")
    return elapsed


async def single(url: str, client_kind: str, rounds: int, server_pid: int) -> tuple[list[float], dict[str, float]]:
    """One conversation alone: the round trip of one call with nothing else running, and CPU seconds used."""
    async with AsyncExitStack() as stack:
        call = await open_conversation(stack, url, client_kind)
        session_id = str((await call("create_session", {"image_id": "code_latest"}))["session_id"])
        for _ in range(10):  # warm-up
            await echo(call, session_id)
        before = cpu_seconds(server_pid)
        times = [await echo(call, session_id) for _ in range(rounds)]
        after = cpu_seconds(server_pid)
        await call("delete_session", {"session_id": session_id})
    return times, {party: after[party] - before[party] for party in before}


async def load(
    url: str, client_kind: str, conversations: int, calls: int, server_pid: int, profiling: bool
) -> tuple[list[float], float, dict[str, float]]:
    """`conversations` at once, `calls` echoes each after all have a session; (call times, phase seconds,
    CPU seconds spent during the phase by each party)."""
    times: list[float] = []
    cpu: dict[str, dict[str, float]] = {}
    finished = 0
    ready = 0
    all_ready = anyio.Event()
    phase: dict[str, float] = {}

    async def conversation() -> None:
        nonlocal ready, finished
        async with AsyncExitStack() as stack:
            call = await open_conversation(stack, url, client_kind)
            session_id = str((await call("create_session", {"image_id": "code_latest"}))["session_id"])
            ready += 1
            if ready == conversations:
                cpu["start"] = cpu_seconds(server_pid)
                if profiling:
                    os.kill(server_pid, signal.SIGUSR1)
                phase["start"] = time.perf_counter()
                all_ready.set()
            await all_ready.wait()
            for _ in range(calls):
                times.append(await echo(call, session_id))
            finished += 1
            if finished == conversations:
                phase["end"] = time.perf_counter()
                cpu["end"] = cpu_seconds(server_pid)
                if profiling:
                    os.kill(server_pid, signal.SIGUSR2)
            await call("delete_session", {"session_id": session_id})

    with anyio.fail_after(PHASE_TIMEOUT):
        async with anyio.create_task_group() as tg:
            for _ in range(conversations):
                tg.start_soon(conversation)
    used = {party: cpu["end"][party] - cpu["start"][party] for party in cpu["start"]}
    return times, phase["end"] - phase["start"], used


def span(value: float, today: tuple[float, float]) -> str:
    return f"{value / today[1]:.2f}-{value / today[0]:.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--single-rounds", type=int, default=100)
    parser.add_argument("--client", choices=("sdk", "raw"), default="sdk")
    parser.add_argument("--profile", type=Path, help="run the server under cProfile, writing this file")
    parser.add_argument(
        "--profile-clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="cpu: where the server's CPU goes; wall: also what blocks its event loop (syscalls, waits)",
    )
    parser.add_argument("--server-arg", action="append", default=[], help="an extra server argument (repeatable)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-http-load-") as temp:
        base = Path(temp)
        base.chmod(0o711)  # root's sandboxes run as nobody and must reach the state dir
        server, url = start_server(base / "state", args.profile, args.profile_clock, args.server_arg)
        try:
            alone, alone_used = anyio.run(single, url, args.client, args.single_rounds, server.pid)
            times, seconds, used = anyio.run(
                load, url, args.client, args.conversations, args.calls, server.pid, args.profile is not None
            )
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait(timeout=10)
    report(args, alone, alone_used, times, seconds, used)


def report(
    args: argparse.Namespace,
    alone: list[float],
    alone_used: dict[str, float],
    times: list[float],
    seconds: float,
    used: dict[str, float],
) -> None:
    rate = len(times) / seconds
    p50, p90, p99 = (percentile(times, p) for p in (50, 90, 99))
    single_median = statistics.median(alone)
    print(
        f"HTTP under load ({args.client} client, {os.cpu_count()} CPUs): {args.conversations} conversations x "
        f"{args.calls} execute_command('echo hi'), each conversation its own MCP session"
    )
    print(
        f"  single conversation alone: median {single_median:.2f} ms, p99 {percentile(alone, 99):.2f} ms "
        f"({len(alone)} calls); CPU per call: {per_call(alone_used, len(alone))}"
    )
    print(
        f"  under load: {rate:.0f} calls/s ({len(times)} calls in {seconds:.2f} s); "
        f"p50 {p50:.1f} ms, p90 {p90:.1f} ms, p99 {p99:.1f} ms, max {max(times):.1f} ms"
    )
    shares = ", ".join(f"{party} {value / seconds * 100:.0f}%" for party, value in used.items())
    print(f"  CPU during the load phase (100% = one core; machine busy includes everything else running): {shares}")
    print(f"  CPU per call under load: {per_call(used, len(times))}")
    if args.profile is not None:
        layers = profile_by_layer(args.profile)
        total = sum(spent for _, spent in layers)
        print(f"  server profile of the load phase (cProfile, {args.profile_clock} clock; {args.profile}):")
        for name, spent in layers:
            print(f"    {spent / total * 100:5.1f}%  {name}")
    print(f"  p50 under load / single round trip: {p50 / single_median:.1f}x")
    print(
        f"  vs issue 14's figures for today: calls/s {span(rate, TODAY_CALLS_PER_SECOND)} (target >= 2x), "
        f"p50 {span(p50, TODAY_P50_MS)}, p99 {span(p99, TODAY_P99_MS)} "
        f"(target <= {TARGET_P99_MS:.0f} ms: {'met' if p99 <= TARGET_P99_MS else 'not met'}), "
        f"single {span(single_median, TODAY_SINGLE_MS)}"
    )


def per_call(used: dict[str, float], calls: int) -> str:
    return ", ".join(f"{party} {value / calls * 1000:.2f} ms" for party, value in used.items())


if __name__ == "__main__":
    main()
