"""Authentication overhead per tool call over HTTP (numbers printed, not asserted).

Two real HTTP servers in one run: one without authentication and one with a token file (plus an
audit log, as a team would run it). The same handshake-era client calls `get_session` on each,
interleaved round by round so both see the same machine load; medians, p99s and the ratio.
Also the token check alone (`TokenFileVerifier.verify_token`), in microseconds.

Run: .venv/bin/python bench/bench_http_auth.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

sys.path.insert(0, str(Path(__file__).parent))
from bench_sessions import percentile

from agentbay_mcp.auth.token_file import TokenFileVerifier, add_token


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(state_dir: Path, *args: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBAY_MCP_")}
    env |= {"AGENTBAY_MCP_STATE_DIR": str(state_dir), "AGENTBAY_MCP_LOG_LEVEL": "WARNING"}
    process = subprocess.Popen(
        [sys.executable, "-m", "agentbay_mcp", "--transport", "http", "--port", str(port), *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return process, f"http://127.0.0.1:{port}/mcp"
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("server did not start")


async def measure(plain_url: str, authed_url: str, token: str, rounds: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"no auth": [], "token file + audit": []}
    async with (
        httpx2.AsyncClient(timeout=30) as plain_http,
        httpx2.AsyncClient(timeout=30, headers={"Authorization": f"Bearer {token}"}) as authed_http,
        Client(streamable_http_client(plain_url, http_client=plain_http), mode="legacy") as plain,
        Client(streamable_http_client(authed_url, http_client=authed_http), mode="legacy") as authed,
    ):
        clients = {"no auth": plain, "token file + audit": authed}
        ids = {}
        for name, client in clients.items():
            created = await client.call_tool("create_session", {"image_id": "code_latest"})
            assert created.structured_content is not None
            ids[name] = created.structured_content["session_id"]
        for _ in range(20):  # warm-up
            for name, client in clients.items():
                await client.call_tool("get_session", {"session_id": ids[name]})
        for _ in range(rounds):
            for name, client in clients.items():
                started = time.perf_counter()
                result = await client.call_tool("get_session", {"session_id": ids[name]})
                times[name].append((time.perf_counter() - started) * 1000)
                assert not result.is_error
    return times


async def verify_cost(path: Path, token: str, rounds: int = 20000) -> float:
    verifier = TokenFileVerifier(path)
    started = time.perf_counter()
    for _ in range(rounds):
        await verifier.verify_token(token)
    return (time.perf_counter() - started) / rounds * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-http-auth-") as temp:
        base = Path(temp)
        base.chmod(0o711)  # root's sandboxes run as nobody and must reach the state dirs
        tokens = base / "tokens.json"
        token = add_token(tokens, "bench", ("all",))
        plain, plain_url = start(base / "plain")
        authed, authed_url = start(
            base / "authed", "--token-file", str(tokens), "--audit-log", str(base / "audit.jsonl")
        )
        try:
            times = anyio.run(measure, plain_url, authed_url, token, args.rounds)
        finally:
            for process in (plain, authed):
                process.terminate()
                process.wait(timeout=10)
        print(f"get_session over HTTP (handshake era), {args.rounds} interleaved rounds:")
        for name, samples in times.items():
            print(f"  {name:20s} median {statistics.median(samples):6.2f} ms   p99 {percentile(samples, 99):6.2f} ms")
        ratio = statistics.median(times["token file + audit"]) / statistics.median(times["no auth"])
        print(f"  ratio (auth / no auth, medians): {ratio:.2f}")
        print(f"token check alone (TokenFileVerifier.verify_token): {anyio.run(verify_cost, tokens, token):.1f} us")


if __name__ == "__main__":
    main()
