"""A small internet of the tests' own, in network namespaces they create: no packet leaves this machine.

    namespace "inside" (the MCP server, its slirp4netns, a loopback service)   namespace "remote"
        veth 192.0.2.1/24  <------------------------------------------------->  veth 192.0.2.2/24
        routes 203.0.113.0/24, 198.51.100.0/24, 10.99.0.0/24 via 192.0.2.2        lo: 203.0.113.10 (allowed.test)
        /etc/hosts (ip netns exec binds /etc/netns/<inside>/hosts)                    198.51.100.10 (denied.test)
                                                                                      10.99.0.10 (private.test)
The remote namespace runs one HTTP server on port 8080 of every address that answers
`remote:<the address it was reached on>`; the inside namespace runs one on its own loopback
(127.0.0.1:8081, "inside-loopback") and one on its veth address (192.0.2.1:8082, "inside-address"),
the services of "the host" that no session may reach. Only these addresses are ever targets:
documentation ranges and a private range that exist only in these namespaces.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mcp import StdioServerParameters

from agentbay_mcp.testing.servers import server_env
from agentbay_mcp.testing.waiting import wait_until

REMOTE_PORT = 8080
ALLOWED, DENIED, PRIVATE = "203.0.113.10", "198.51.100.10", "10.99.0.10"
HOSTS = {ALLOWED: "allowed.test api.allowed.test", DENIED: "denied.test", PRIVATE: "private.test"}
INSIDE_LOOPBACK, INSIDE_ADDRESS = ("127.0.0.1", 8081), ("192.0.2.1", 8082)

#: An HTTP server that names the address it was reached on (and the Host it was asked for).
SERVER = """
import http.server, socketserver, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (sys.argv[3] or "remote:" + self.connection.getsockname()[0]).encode() + b"\\n"
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a): pass
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True; allow_reuse_address = True
S((sys.argv[1], int(sys.argv[2])), H).serve_forever()
"""


def available() -> str | None:
    """Why the world cannot be built here (None: it can)."""
    if os.geteuid() != 0:
        return "network namespaces for the test world need root"
    for tool in ("ip", "slirp4netns", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, timeout=10, capture_output=True)


@dataclass
class World:
    inside: str
    remote: str
    processes: list[subprocess.Popen[bytes]]

    def server(self, state_dir: Path, *args: str, **env: str) -> StdioServerParameters:
        """A stdio MCP server started inside the world (its sessions' traffic goes out there)."""
        return StdioServerParameters(
            command="ip",
            args=["netns", "exec", self.inside, sys.executable, "-m", "agentbay_mcp", *args],
            env=server_env(state_dir, **env),
        )

    def _serve(self, netns: str, host: str, port: int, name: str = "") -> None:
        process = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", SERVER, host, str(port), name],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.processes.append(process)


@contextlib.contextmanager
def world() -> Iterator[World]:
    """Build the namespaces, addresses, routes, names and servers; take it all down afterwards.

    One world at a time per host: with two (pytest workers without --dist loadgroup), a namespace of
    one was seen to become unusable ("setting the network namespace ... failed: Invalid argument")
    while the other was built or removed. The test module is one xdist group for that."""
    tag = secrets.token_hex(3)
    inside, remote = f"abw-{tag}", f"abr-{tag}"
    etc = Path("/etc/netns") / inside
    made = World(inside, remote, [])
    try:
        _ip("netns", "add", inside)
        _ip("netns", "add", remote)
        _ip("-n", inside, "link", "add", "vw", "type", "veth", "peer", "name", "vr", "netns", remote)
        for netns, dev, address in ((inside, "vw", "192.0.2.1/24"), (remote, "vr", "192.0.2.2/24")):
            _ip("-n", netns, "link", "set", "lo", "up")
            _ip("-n", netns, "addr", "add", address, "dev", dev)
            _ip("-n", netns, "link", "set", dev, "up")
        for address in HOSTS:
            _ip("-n", remote, "addr", "add", f"{address}/32", "dev", "lo")
            _ip("-n", inside, "route", "add", address.rsplit(".", 1)[0] + ".0/24", "via", "192.0.2.2")
        etc.mkdir(parents=True, exist_ok=True)
        lines = ["127.0.0.1 localhost", *(f"{address} {names}" for address, names in HOSTS.items())]
        (etc / "hosts").write_text("\n".join(lines) + "\n")
        made._serve(remote, "0.0.0.0", REMOTE_PORT)
        made._serve(inside, *INSIDE_LOOPBACK, "inside-loopback")
        made._serve(inside, *INSIDE_ADDRESS, "inside-address")
        probe = ["ip", "netns", "exec", inside, "python3", "-c", _PROBE]

        def ready() -> bool:
            return subprocess.run(probe, timeout=10, capture_output=True, check=False).returncode == 0

        wait_until(ready, timeout=15)
        yield made
    finally:
        for process in made.processes:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        for netns in (inside, remote):
            subprocess.run(["ip", "netns", "del", netns], timeout=10, capture_output=True, check=False)
        shutil.rmtree(etc, ignore_errors=True)


#: Every world server answers (run inside the world's inside namespace).
_PROBE = f"""
import socket
targets = [({ALLOWED!r}, {REMOTE_PORT}), ({DENIED!r}, {REMOTE_PORT}), ({PRIVATE!r}, {REMOTE_PORT})]
for address, port in targets + [{INSIDE_LOOPBACK!r}, {INSIDE_ADDRESS!r}]:
    socket.create_connection((address, port), timeout=2).close()
"""
