"""Network benchmark (numbers printed, not asserted), issue 15's two measures, each in one run:

1. create_session + the first command, for a session without network, with network "on"
   (slirp4netns started and ~85 routes set) and with a domain-only allow-list (the proxy only), round
   robin on one stdio server with no pool (every create starts its sandbox), so the difference is
   what the network costs.
2. HTTP throughput and latency through a port link against a direct loopback connection: the same
   Python server script serves a file of --megabytes MB and a tiny page, once on the host's loopback
   (direct) and once inside a session (reached through get_link); GETs are timed from this process.

Run as root on a machine with slirp4netns: .venv/bin/python bench/bench_network.py [--rounds N]
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).parent))
from stdio_client import RawStdioServer

#: The web server, the same on the host and in the session: a file of N MB at /big, a tiny page at /.
SERVER = r"""
import http.server, sys
size = int(sys.argv[2]) * 1024 * 1024
big = b"x" * size
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 1 << 16  # head and a small body in one segment (else Nagle + delayed ACK: 40 ms)
    def do_GET(self):
        body = big if self.path == "/big" else b"ok\n"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def median_ms(samples: list[float]) -> str:
    return f"{statistics.median(samples) * 1000:7.1f} ms"


def create_first_command(server: RawStdioServer, rounds: int) -> None:
    kinds = {"no network": None, "network on": "on", "domain list (proxy only)": ["pypi.org"]}
    times: dict[str, list[float]] = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind, network in kinds.items():
            arguments = {"image_id": "code_latest"} | ({} if network is None else {"network": network})
            started = time.perf_counter()
            session_id = server.tool("create_session", **arguments)["session_id"]
            server.tool("execute_command", session_id=session_id, command="echo hi")
            times[kind].append(time.perf_counter() - started)
            server.tool("delete_session", session_id=session_id)
    base = statistics.median(times["no network"])
    print(f"create_session + first command, median of {rounds} (no pool):")
    for kind, samples in times.items():
        print(f"  {kind:26} {median_ms(samples)}  {statistics.median(samples) / base:4.2f}x")


def timed_gets(host: str, port: int, path: str, count: int) -> tuple[list[float], int]:
    """`count` GETs on one keep-alive connection: seconds each, and the bytes of the last body."""
    connection = http.client.HTTPConnection(host, port, timeout=60)
    samples: list[float] = []
    size = 0
    for _ in range(count):
        started = time.perf_counter()
        connection.request("GET", path)
        size = len(connection.getresponse().read())
        samples.append(time.perf_counter() - started)
    connection.close()
    return samples, size


def throughput(server: RawStdioServer, megabytes: int, rounds: int) -> None:
    port = 18765
    direct = subprocess.Popen([sys.executable, "-c", SERVER, str(port), str(megabytes)])
    try:
        session_id = server.tool("create_session", image_id="code_latest")["session_id"]
        server.tool("write_file", session_id=session_id, path="serve.py", content=SERVER)
        server.tool("start_process", session_id=session_id, command=f"python3 serve.py 8000 {megabytes}")
        url = server.tool("get_link", session_id=session_id, port=8000)["url"]
        link = urlsplit(url)
        deadline = time.monotonic() + 30
        while True:
            try:
                timed_gets("127.0.0.1", port, "/", 1)
                timed_gets(str(link.hostname), int(link.port or 80), "/", 1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        results = {}
        for name, (host, at) in {"direct": ("127.0.0.1", port), "port link": (link.hostname, link.port)}.items():
            big, size = timed_gets(str(host), int(at or 80), "/big", rounds)
            small, _ = timed_gets(str(host), int(at or 80), "/", rounds * 20)
            results[name] = (size / statistics.median(big) / 1e6, statistics.median(small))
        shape = f"{megabytes} MB body, median of {rounds}; tiny page x{rounds * 20}"
        print(f"HTTP through a port link vs direct loopback ({shape}):")
        base_rate, base_latency = results["direct"]
        for name, (rate, latency) in results.items():
            print(
                f"  {name:10} {rate:8.0f} MB/s ({rate / base_rate:4.2f}x)   tiny GET {latency * 1000:6.2f} ms "
                f"({latency / base_latency:4.2f}x)"
            )
    finally:
        direct.kill()
        direct.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--megabytes", type=int, default=64)
    args = parser.parse_args()
    if os.geteuid() != 0 or shutil.which("slirp4netns") is None:
        sys.exit("bench_network: needs root and slirp4netns")
    state = Path(tempfile.mkdtemp(prefix="bench-network-", dir="/var/tmp"))
    state.chmod(0o711)
    server = RawStdioServer(state / "state", "--network", "on-request", env={"AGENTBAY_MCP_POOL_SIZE": "0"})
    try:
        create_first_command(server, args.rounds)
        throughput(server, args.megabytes, args.rounds)
    finally:
        server.process.stdin.close()  # type: ignore[union-attr]
        server.process.wait(timeout=20)
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
