"""Calls in flight on one session (numbers printed, not asserted).

One real stdio server (the `mcp` client over pipes), one `code_latest` session, and 1, 8 and 32
`execute_command("echo hi")` calls kept in flight for a few seconds each, in the same run:
throughput, p50/p99 latency, errors, and whether the session's sandbox survived (its agent's start
time is unchanged). Then the same with a mix of file tools.

Run: .venv/bin/python bench/bench_parallel.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from mcp import Client, StdioServerParameters

sys.path.insert(0, str(Path(__file__).parent))
from bench_sessions import percentile

from agentbay_mcp.testing.answers import unpack


async def tool(client: Client, name: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(name, arguments)
    if result.is_error:
        raise RuntimeError(" ".join(getattr(block, "text", "") for block in result.content)[:200])
    return unpack(name, result)


async def agent_start(client: Client, session_id: str) -> str:
    ran = await tool(client, "execute_command", session_id=session_id, command="cut -d' ' -f22 /proc/1/stat")
    return str(ran["stdout"])


async def load(client: Client, session_id: str, in_flight: int, seconds: float, mix: str) -> None:
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + seconds

    async def one(n: int) -> None:
        if mix == "command":
            await tool(client, "execute_command", session_id=session_id, command="echo hi")
        else:
            path = f"/home/user/bench/{n % 20}.txt"
            await tool(client, "write_file", session_id=session_id, path=path, content="x" * 1000)
            await tool(client, "read_file", session_id=session_id, path=path)
            await tool(client, "list_directory", session_id=session_id, path="/home/user/bench")

    async def worker(offset: int) -> None:
        n = offset
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                with anyio.fail_after(30):
                    await one(n)
                latencies.append((time.perf_counter() - started) * 1000)
            except (RuntimeError, TimeoutError) as exc:
                errors.append(str(exc))
            n += in_flight

    before = await agent_start(client, session_id)
    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for offset in range(in_flight):
            tg.start_soon(worker, offset)
    elapsed = time.perf_counter() - began
    survived = await agent_start(client, session_id) == before
    print(
        f"{mix:8} {in_flight:3} in flight: {len(latencies) / elapsed:7.0f} calls/s   "
        f"p50 {statistics.median(latencies):7.2f} ms   p99 {percentile(latencies, 99):7.2f} ms   "
        f"errors {len(errors)}   sandbox restarted: {'no' if survived else 'YES'}"
    )
    for error in errors[:3]:
        print("   ", error)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="agentbay-bench-") as tmp:
        if os.geteuid() == 0:
            os.chmod(tmp, 0o711)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBAY_MCP_")}
        env.update(AGENTBAY_MCP_STATE_DIR=str(Path(tmp) / "state"), AGENTBAY_MCP_LOG_LEVEL="WARNING")
        params = StdioServerParameters(command=sys.executable, args=["-m", "agentbay_mcp"], env=env)
        async with Client(params) as client:
            session_id = (await tool(client, "create_session", image_id="code_latest"))["session_id"]
            await tool(client, "create_directory", session_id=session_id, path="/home/user/bench")
            for mix in ("command", "files"):
                for in_flight in (1, 8, 32):
                    await load(client, session_id, in_flight, args.seconds, mix)


if __name__ == "__main__":
    anyio.run(main)
