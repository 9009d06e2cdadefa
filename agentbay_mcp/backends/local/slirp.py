"""Outbound connectivity for a session's namespace: slirp4netns, and the routes that are its policy.

Why slirp4netns (and not pasta): it attaches to an existing namespace by path, which is what a
sandbox that is already running needs (the network can be switched on later); it keeps the host's
loopback out of reach with `--disable-host-loopback`; it sandboxes itself (`--enable-sandbox`,
`--enable-seccomp`: its own mount namespace, no capabilities, no execve); and Debian 12's pasta
started as root drops to nobody and cannot set up its user mappings. It is a user-mode TCP/IP stack:
the session's packets become ordinary sockets of the slirp4netns process on the host.

The address policy is routing inside the session's namespace, set by the server (the sandbox has no
capability there, so it cannot change it): one route per allowed prefix via slirp's gateway, and no
route for anything else, so a denied destination fails at once with "Network is unreachable",
whatever the protocol (TCP, UDP, ICMP). A policy change swaps the routes in one `ip -batch`.
The tap device is configured by the server too (no `--configure`): there is never a moment with
slirp's default route.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import anyio

from agentbay_mcp.errors import BackendError, BackendUnavailableError

logger = logging.getLogger(__name__)

TAP = "tap0"
SESSION_ADDRESS = "10.0.2.100/24"
GATEWAY = "10.0.2.2"
DNS = "10.0.2.3"
MTU = 65520
#: The sandbox's /etc/resolv.conf: slirp's DNS forwarder (to the host's resolvers), there while routes are.
RESOLV_CONF = f"nameserver {DNS}\n"
START_TIMEOUT = 5.0
INSTALL_HINT = "Install slirp4netns ('apt-get install slirp4netns' on Debian/Ubuntu) for sessions with network."


def find_slirp() -> str | None:
    """The slirp4netns binary, if installed."""
    return shutil.which("slirp4netns")


def find_ip() -> str | None:
    """iproute2's `ip`, which sets the routes."""
    return shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if Path(p).exists()), None)


@dataclass
class Slirp:
    """A running slirp4netns for one namespace."""

    process: subprocess.Popen[bytes]
    exit_fd: int

    def stop(self) -> None:
        """Make it exit (its exit fd closes) and reap it. Blocks briefly: call it in a thread."""
        with contextlib.suppress(OSError):
            os.close(self.exit_fd)
        try:
            self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=2.0)


async def start(netns: int, log_path: Path, routes: list[ipaddress.IPv4Network]) -> Slirp:
    """Attach slirp4netns to the namespace `netns`, bring up its tap device and set `routes`, in one
    `ip -batch` (one process fewer than two steps: a network session's start is on the clock)."""
    binary, ip = find_slirp(), find_ip()
    if binary is None or ip is None:
        raise BackendUnavailableError(
            f"This server cannot give sessions a network: {'slirp4netns' if binary is None else 'ip'} is missing. "
            f"{INSTALL_HINT}"
        )
    exit_r, exit_w = os.pipe2(os.O_CLOEXEC)
    ready_r, ready_w = os.pipe2(os.O_CLOEXEC)
    argv = [
        binary, f"--mtu={MTU}", "--disable-host-loopback", "--enable-sandbox", "--enable-seccomp",
        "--netns-type=path", f"--exit-fd={exit_r}", f"--ready-fd={ready_w}", f"/proc/self/fd/{netns}", TAP,
    ]  # fmt: skip
    try:
        with log_path.open("ab") as log:
            process = subprocess.Popen(  # noqa: ASYNC220 - vfork+exec returns at once
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                pass_fds=(netns, exit_r, ready_w),
                process_group=0,
            )
    except OSError as exc:
        for fd in (exit_r, exit_w, ready_r, ready_w):
            os.close(fd)
        raise BackendUnavailableError(f"Could not start slirp4netns ({exc.strerror or exc}). {INSTALL_HINT}") from exc
    os.close(exit_r)
    os.close(ready_w)
    slirp = Slirp(process, exit_w)
    try:
        with anyio.move_on_after(START_TIMEOUT):
            await anyio.wait_readable(ready_r)
        ready = os.read(ready_r, 1) if process.poll() is None else b""
        if ready != b"1":
            raise BackendError(f"slirp4netns did not start: {_tail(log_path)}")
        device = [f"link set {TAP} mtu {MTU} up", f"addr add {SESSION_ADDRESS} dev {TAP}"]
        await configure(netns, device + _route_commands(routes))
    except BaseException:
        await anyio.to_thread.run_sync(slirp.stop)
        raise
    finally:
        os.close(ready_r)
    return slirp


async def exited(running: Slirp) -> int:
    """Wait until slirp4netns exits (a pidfd turns readable when it does); its exit status."""
    process = running.process
    try:
        pidfd = os.pidfd_open(process.pid)
    except OSError:  # already gone
        return process.wait()
    try:
        while process.poll() is None:
            await anyio.wait_readable(pidfd)
    finally:
        os.close(pidfd)
    return process.returncode


async def set_routes(netns: int, routes: list[ipaddress.IPv4Network]) -> None:
    """Replace the namespace's outbound routes with `routes` (none: only slirp's own subnet)."""
    await configure(netns, ["route flush proto static", *_route_commands(routes)])


def _route_commands(routes: list[ipaddress.IPv4Network]) -> list[str]:
    return [f"route add {net} via {GATEWAY} proto static" for net in routes]


async def configure(netns: int, commands: list[str]) -> None:
    """Run `ip -batch` inside the namespace `netns` (as the server: the sandbox cannot)."""
    ip = find_ip()
    nsenter = shutil.which("nsenter")
    if ip is None or nsenter is None:
        raise BackendUnavailableError(f"iproute2's ip and nsenter are needed for sessions with network. {INSTALL_HINT}")
    with anyio.fail_after(10):
        done = await anyio.run_process(
            [nsenter, f"--net=/proc/self/fd/{netns}", ip, "-batch", "-"],
            input="\n".join(commands).encode() + b"\n",
            check=False,
            pass_fds=(netns,),
        )
    if done.returncode != 0:
        raise BackendError(f"Could not set the session's network routes: {done.stderr.decode(errors='replace')[-300:]}")


def _tail(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace").strip()[-300:] or "no output"
    return "no output"
