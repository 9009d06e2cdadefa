"""AgentBay backend benchmark (numbers printed, not asserted): per-call latency through the emulator.

The same operations, interleaved round by round IN THE SAME RUN, on:
- `local`: the local backend called directly (the floor: a sandbox call, no HTTP);
- `agentbay link`: the agentbay backend through the emulator on 127.0.0.1, tools over LinkUrl;
- `agentbay api`: the same with every tool through CallMcpTool (size-limited messages: command
  output goes to files in the session and is read back, reads and writes go in pieces).
The ratios say what the wire protocol costs on loopback; on the real cloud, network round trips
(tens of ms each) dominate instead, so count calls: `calls` is HTTP requests per operation.

Run: .venv/bin/python bench/bench_agentbay.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx2

sys.path.insert(0, str(Path(__file__).parent.parent))
from agentbay_mcp.backends.agentbay import AgentBayBackend, AgentBayClient
from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.protocols import SandboxBackend
from agentbay_mcp.backends.records import ReadSpan, ShellCommand
from agentbay_mcp.emulator import EmulatorServer
from bench.bench_sessions import percentile

KEY = "bench-key"
KIB = b"x" * 1023 + b"\n"

Operation = Callable[[SandboxBackend, str], Awaitable[object]]


async def _command(backend: SandboxBackend, session_id: str) -> object:
    return await backend.processes.run_process(
        session_id, ShellCommand(command="true"), wait_ms=10000, cap=65536, timeout_ms=10000
    )


async def _get(backend: SandboxBackend, session_id: str) -> object:
    return await backend.get_session(session_id)


async def _write(backend: SandboxBackend, session_id: str) -> object:
    return await backend.files.write_file(session_id, "/tmp/bench.txt", KIB, "overwrite")


async def _read(backend: SandboxBackend, session_id: str) -> object:
    return await backend.files.read_file(session_id, "/tmp/bench.txt", ReadSpan(), 65536)


async def _read_200k(backend: SandboxBackend, session_id: str) -> object:
    return await backend.files.read_file(session_id, "/tmp/big.txt", ReadSpan(), 1 << 20)


async def _info(backend: SandboxBackend, session_id: str) -> object:
    return await backend.files.file_info(session_id, "/tmp/bench.txt")


async def _create_delete(backend: SandboxBackend, session_id: str) -> object:
    record = await backend.create_session(image_id="code_latest", labels={}, owner="bench")
    await backend.delete_session(record.session_id)
    return record


OPERATIONS: dict[str, Operation] = {
    "get_session": _get,
    'run_process("true")': _command,
    "write_file 1 KiB": _write,
    "read_file 1 KiB": _read,
    "read_file 200 KiB": _read_200k,
    "file_info": _info,
    "create + delete": _create_delete,
}


class Counting(httpx2.AsyncBaseTransport):
    """Counts HTTP requests (what an operation costs in round trips on the real cloud)."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.requests = 0

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.requests += 1
        return await self.inner.handle_async_request(request)


async def main(rounds: int, root: Path) -> None:
    samples: dict[tuple[str, str], list[float]] = {}
    calls: dict[tuple[str, str], int] = {}
    async with (
        EmulatorServer(root / "emu-link", KEY, link_url=True).running() as link_url,
        EmulatorServer(root / "emu-api", KEY, link_url=False).running() as api_url,
        anyio.create_task_group() as tg,
    ):
        counters = {"agentbay link": Counting(), "agentbay api": Counting()}
        clients = {name: httpx2.AsyncClient(transport=counter) for name, counter in counters.items()}
        backends: dict[str, SandboxBackend] = {"local": LocalBackend(root / "local")}
        for name, url in (("agentbay link", link_url), ("agentbay api", api_url)):
            client = AgentBayClient(clients[name], api_key=KEY, endpoint=url, timeout_ms=60000)
            backends[name] = AgentBayBackend(client, state_dir=root / name.replace(" ", "-"), instance="bench")
        sessions = {}
        for name, backend in backends.items():
            await backend.start(tg)
            sessions[name] = (await backend.create_session(image_id="code_latest", labels={}, owner="b")).session_id
            await backend.files.write_file(sessions[name], "/tmp/big.txt", KIB * 200, "overwrite")
            await _write(backend, sessions[name])
        for round_number in range(rounds + 2):  # two warm-up rounds
            for op_name, operation in OPERATIONS.items():
                if op_name == "create + delete" and round_number % 5:
                    continue  # sandboxes are slow to build: sample it every fifth round
                for name, backend in backends.items():
                    counter = counters.get(name)
                    before = counter.requests if counter else 0
                    started = time.perf_counter()
                    await operation(backend, sessions[name])
                    elapsed = (time.perf_counter() - started) * 1000
                    if round_number >= 2:
                        samples.setdefault((op_name, name), []).append(elapsed)
                        calls[(op_name, name)] = (counter.requests - before) if counter else 0
        for name, backend in backends.items():
            await backend.delete_session(sessions[name])
            await backend.close()
        for client in clients.values():
            await client.aclose()
        tg.cancel_scope.cancel()

    print(f"agentbay backend through the emulator vs local, {rounds} rounds, median / p99 ms (same run)")
    print(f"{'operation':22} {'backend':14} {'median':>8} {'p99':>8} {'calls':>5} {'x local':>8}")
    for op_name in OPERATIONS:
        local = statistics.median(samples[(op_name, "local")])
        for name in ("local", "agentbay link", "agentbay api"):
            found = samples[(op_name, name)]
            median = statistics.median(found)
            print(
                f"{op_name:22} {name:14} {median:8.2f} {percentile(found, 99):8.2f} "
                f"{calls[(op_name, name)]:5d} {median / local:8.1f}"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50)
    state = Path(tempfile.mkdtemp(prefix="bench-agentbay-"))
    state.chmod(0o711)  # root's sandboxes run as an unprivileged uid that must reach the state dirs
    anyio.run(main, parser.parse_args().rounds, state)
