"""Authentication overhead per tool call over HTTP (numbers printed, not asserted).

Three real HTTP servers in one run: one without authentication (--allow-unauthenticated), one with
its per-start token (the default), and one with a token file (plus an audit log, as a team would
run it). The same handshake-era client calls `get_session` on each, interleaved round by round so
all see the same machine load; medians, p99s and the ratios. Also each token check alone
(`TokenFileVerifier.verify_token`, `StartTokenVerifier.verify_token`), in microseconds.

Run: .venv/bin/python bench/bench_http_auth.py [--rounds N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.auth.provider import TokenVerifier

sys.path.insert(0, str(Path(__file__).parent))
from bench_sessions import percentile

from agentbay_mcp.auth.start_token import StartTokenVerifier
from agentbay_mcp.auth.token_file import TokenFileVerifier, add_token, new_token
from agentbay_mcp.testing.servers import HttpServer

NO_AUTH, START_TOKEN, TOKEN_FILE = "no auth", "per-start token", "token file + audit"


async def measure(servers: dict[str, tuple[str, dict[str, str]]], rounds: int) -> dict[str, list[float]]:
    """`get_session` round trips on each server (name -> url, headers), interleaved round by round."""
    times: dict[str, list[float]] = {name: [] for name in servers}
    async with AsyncExitStack() as stack:
        clients = {}
        for name, (url, headers) in servers.items():
            http = await stack.enter_async_context(httpx2.AsyncClient(timeout=30, headers=headers))
            transport = streamable_http_client(url, http_client=http)
            clients[name] = await stack.enter_async_context(Client(transport, mode="legacy"))
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


async def verify_cost(verifier: TokenVerifier, token: str, rounds: int = 20000) -> float:
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
        quiet = ("--log-level", "WARNING")
        plain = HttpServer(base / "plain" / "state", *quiet)
        started = HttpServer(base / "start" / "state", *quiet, start_token=True)
        audit = str(base / "audit.jsonl")
        authed = HttpServer(base / "authed" / "state", *quiet, "--token-file", str(tokens), "--audit-log", audit)
        servers = {
            NO_AUTH: (plain.url, plain.headers),
            START_TOKEN: (started.url, started.headers),
            TOKEN_FILE: (authed.url, {"Authorization": f"Bearer {token}"}),
        }
        try:
            times = anyio.run(measure, servers, args.rounds)
        finally:
            for server in (plain, started, authed):
                server.stop()
        print(f"get_session over HTTP (handshake era), {args.rounds} interleaved rounds:")
        for name, samples in times.items():
            print(f"  {name:20s} median {statistics.median(samples):6.2f} ms   p99 {percentile(samples, 99):6.2f} ms")
        for name in (START_TOKEN, TOKEN_FILE):
            ratio = statistics.median(times[name]) / statistics.median(times[NO_AUTH])
            print(f"  ratio ({name} / {NO_AUTH}, medians): {ratio:.2f}")
        file_check = anyio.run(verify_cost, TokenFileVerifier(tokens), token)
        print(f"token check alone (TokenFileVerifier.verify_token): {file_check:.1f} us")
        start_token = new_token()
        start_check = anyio.run(verify_cost, StartTokenVerifier(start_token), start_token)
        print(f"token check alone (StartTokenVerifier.verify_token): {start_check:.1f} us")


if __name__ == "__main__":
    main()
