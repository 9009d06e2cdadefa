"""The local backend's network capability: egress policies and port links, per session.

Every bwrap sandbox has a network namespace of its own, with only a loopback device, from the start
(bwrap --unshare-all; never --share-net). Around it the server keeps, per session:
- the egress proxy (egress_proxy.py) on the namespace's 127.0.0.1:3128, always: a session without
  network gets a clear refusal from it instead of a connection error;
- slirp4netns (slirp.py), only while the policy gives the session routes (`on`, or CIDRs in its
  allow-list); a domain-only allow-list goes out through the proxy alone;
- its port links (links.py).
The policy is the session's request (a `NetworkPolicy` record, checked by the service) within the
operator's allow- and deny-lists, plus this host's own addresses; `Egress` (backends/common) does the
checking. A restarted sandbox is a new namespace: `attach` builds it all again from what is kept here.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import resource
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.abc import SocketListener, TaskGroup

from agentbay_mcp.backends.common.egress import Address, Egress, Rules, parse_rules
from agentbay_mcp.backends.local import netns, slirp
from agentbay_mcp.backends.local.egress_proxy import PROXY_PORT, EgressProxy, Resolver, resolve_on_host
from agentbay_mcp.backends.local.links import SessionLinks
from agentbay_mcp.backends.records import Capabilities, LinkRecord, NetworkPolicy
from agentbay_mcp.errors import BackendError, BackendUnavailableError, InvalidArgumentError, SessionNotFoundError

logger = logging.getLogger(__name__)

HOST_ADDRESSES_TTL = 30.0
#: slirp4netns restarts per session per minute after it died on its own (killed, out of memory).
SLIRP_RESTARTS_PER_MINUTE = 3
NOT_ROOT_NETWORK = (
    "This server does not run as root, so it cannot enter its sessions' network namespaces: sessions "
    "have no network and no port links here. Run the server as root for both."
)
UNCONFINED_NETWORK = (
    "This server runs sessions with --isolation none: they share the host's network and no egress policy "
    "can be enforced. Use bubblewrap isolation for sessions with network."
)


def capabilities_for(full: Capabilities, *, confined: bool, root: bool) -> Capabilities:
    """What the network part of `full` comes to on this server: no egress rules without bwrap (the
    host's network) and neither rules nor links when not root (the namespaces cannot be entered)."""
    if not confined:
        return full.model_copy(
            update={"egress_rules": False, "unsupported": {**full.unsupported, "egress_rules": UNCONFINED_NETWORK}}
        )
    if not root:
        reasons = {"egress_rules": NOT_ROOT_NETWORK, "port_links": NOT_ROOT_NETWORK}
        return full.model_copy(
            update={"egress_rules": False, "port_links": False, "unsupported": {**full.unsupported, **reasons}}
        )
    return full


@dataclass(frozen=True)
class NetworkBounds:
    """The operator's bounds on every session's egress."""

    allow: Rules = field(default_factory=Rules)
    deny: Rules = field(default_factory=Rules)


@dataclass
class _SessionNet:
    policy: NetworkPolicy
    egress: Egress
    links: SessionLinks
    log_path: Path
    netns: int | None = None
    slirp: slirp.Slirp | None = None
    proxy: anyio.CancelScope | None = None
    lock: anyio.Lock = field(default_factory=anyio.Lock)
    #: When slirp4netns died on its own lately (a restart budget).
    deaths: list[float] = field(default_factory=list)


class LocalNetwork:
    """Egress and links for the local backend's sessions."""

    def __init__(
        self,
        bounds: NetworkBounds,
        *,
        confined: bool,
        enterable: bool = True,
        saved: Callable[[str, NetworkPolicy], None] = lambda _session, _policy: None,
        place: Callable[[str, int], None] = lambda _session, _pid: None,
        resolver: Resolver = resolve_on_host,
    ) -> None:
        #: Puts a session's slirp4netns in the session's cgroups: its CPU and memory are the session's.
        self._place = place
        self._bounds = bounds
        #: Keeps a changed policy in the session's record.
        self._saved = saved
        #: False with isolation none: the agent shares the host's network, no policy can be enforced.
        self._confined = confined
        #: Whether the server may enter the sandboxes' namespaces (setns needs root): else no proxy, links, routes.
        self._enterable = enterable
        self._resolver = resolver
        self._sessions: dict[str, _SessionNet] = {}
        self._task_group: TaskGroup | None = None
        self._host_addresses: tuple[Address, ...] = ()
        self._host_addresses_at = -HOST_ADDRESSES_TTL

    def start(self, task_group: TaskGroup) -> None:
        """Run proxies and links in `task_group` (the backend's), with as many descriptors as allowed:
        every proxied or linked connection holds two or more."""
        self._task_group = task_group
        with contextlib.suppress(OSError, ValueError):
            soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            wanted = hard if hard != resource.RLIM_INFINITY else 1 << 20
            if soft != resource.RLIM_INFINITY and soft < wanted:
                resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))

    def egress(self, policy: NetworkPolicy) -> Egress:
        """`policy` within the operator's bounds, as the checks see it."""
        return Egress(
            mode=policy.mode,
            session=parse_rules(policy.allow),
            operator=self._bounds.allow,
            denied=self._bounds.deny,
            host_addresses=self._host_addresses,
        )

    # Backend hooks -------------------------------------------------------------------------

    async def attach(self, session_id: str, namespace: int | None, policy: NetworkPolicy, log_path: Path) -> None:
        """A sandbox of the session started (first, or after a restart): proxy, and routes if any."""
        net = self._sessions.get(session_id)
        if (policy if net is None else net.policy).enabled:  # only a session with network needs them
            await self._refresh_addresses()
        if net is None:
            net = self._sessions[session_id] = _SessionNet(
                policy, self.egress(policy), SessionLinks(session_id, lambda: self._namespace(session_id)), log_path
            )
        async with net.lock:
            # Our own copy of the descriptor (closed by detach): the sandbox's closes when it stops.
            net.netns = os.dup(namespace) if self._enterable and namespace is not None else None
            net.egress = self.egress(net.policy)
            if net.netns is None:
                return
            namespace = net.netns
            net.proxy = await self._start_proxy(session_id, namespace)
            await self._apply(net)

    async def detach(self, session_id: str) -> None:
        """The session's sandbox stopped: its namespace is gone, so are slirp and the proxy."""
        net = self._sessions.get(session_id)
        if net is not None:
            with anyio.CancelScope(shield=True):
                async with net.lock:
                    self._down(net)
                    await self._stop_slirp(net)

    async def forget(self, session_id: str) -> None:
        """The session is deleted: everything goes, links included."""
        await self.detach(session_id)
        net = self._sessions.pop(session_id, None)
        if net is not None:
            net.links.close()

    def _down(self, net: _SessionNet) -> None:
        if net.netns is not None:
            os.close(net.netns)
        net.netns = None
        if net.proxy is not None:
            net.proxy.cancel()
            net.proxy = None

    # The capability ------------------------------------------------------------------------

    async def set_egress(self, session_id: str, policy: NetworkPolicy) -> None:
        """Change the session's egress while it runs (routes and proxy at once)."""
        net = self._sessions.get(session_id)
        if net is None:
            raise SessionNotFoundError(session_id)
        if not self._confined:
            raise BackendUnavailableError(UNCONFINED_NETWORK)
        if not self._enterable:
            raise BackendUnavailableError(NOT_ROOT_NETWORK)
        if policy.enabled:
            await self._refresh_addresses()
        async with net.lock:
            net.policy, net.egress = policy, self.egress(policy)
            self._saved(session_id, policy)
            if net.netns is not None:
                try:
                    await self._apply(net)
                except BaseException:
                    # Fail closed: the proxy already applies the new policy; routes must not stay broader.
                    with anyio.CancelScope(shield=True):
                        await self._stop_slirp(net)
                    raise

    async def open_link(self, session_id: str, port: int, protocol: str) -> LinkRecord:
        """A URL on the host's loopback that reaches `port` in the session."""
        net = self._sessions.get(session_id)
        if net is None:
            raise SessionNotFoundError(session_id)
        if not 0 < port < 65536:
            raise InvalidArgumentError(f"port must be 1-65535 (got {port}).")
        if self._confined and not self._enterable:
            raise BackendUnavailableError(NOT_ROOT_NETWORK)
        assert self._task_group is not None, "LocalNetwork.start() was not called"
        link = await net.links.open(port, self._task_group)
        scheme = {"http": "http://", "https": "https://", "ws": "ws://", "wss": "wss://"}.get(protocol, "")
        return LinkRecord(url=f"{scheme}127.0.0.1:{link.host_port}", port=port, protocol=protocol)

    # Internals -----------------------------------------------------------------------------

    def _namespace(self, session_id: str) -> int | None:
        """A descriptor of the session's namespace for one use, which the caller closes: a copy, so
        that a sandbox stopping meanwhile cannot close it and let the number name another file."""
        net = self._sessions.get(session_id)
        if net is None or (net.netns is None and self._confined):
            raise BackendError(f"Session {session_id} has no running sandbox right now; call any tool on it first.")
        return None if net.netns is None else os.dup(net.netns)

    async def _apply(self, net: _SessionNet) -> None:
        """Make slirp and the routes match `net.egress` (the proxy reads it on every request)."""
        assert net.netns is not None
        egress = net.egress
        if egress.raw:
            if net.slirp is None or net.slirp.process.poll() is not None:
                net.slirp = await slirp.start(net.netns, net.log_path, egress.routes())
                with contextlib.suppress(OSError):
                    self._place(net.links.session_id, net.slirp.process.pid)
                assert self._task_group is not None
                self._task_group.start_soon(self._watch, net, net.slirp)
            else:
                await slirp.set_routes(net.netns, egress.routes())
        else:  # no routes at all: take the device away (no DNS either)
            await self._stop_slirp(net)

    async def _stop_slirp(self, net: _SessionNet) -> None:
        running, net.slirp = net.slirp, None  # first: its watcher then knows the exit is ours
        if running is not None:
            await anyio.to_thread.run_sync(running.stop)

    async def _watch(self, net: _SessionNet, running: slirp.Slirp) -> None:
        """Start slirp4netns again if it dies on its own while the session should have routes."""
        try:
            status = await slirp.exited(running)
        except Exception:  # never into the server's task group
            logger.exception("session %s: lost sight of slirp4netns", net.links.session_id)
            return
        if net.slirp is not running:
            return  # stopped on purpose
        session_id = net.links.session_id
        now = time.monotonic()
        net.deaths = [t for t in net.deaths if now - t < 60] + [now]
        logger.warning("session %s: slirp4netns exited (status %s)", session_id, status)
        async with net.lock:
            if net.slirp is not running or net.netns is None:
                return
            net.slirp = None
            if len(net.deaths) > SLIRP_RESTARTS_PER_MINUTE:
                logger.error("session %s: slirp4netns keeps dying; its routed network stays down", session_id)
                return
            try:
                await self._apply(net)
            except Exception:
                logger.exception("session %s: could not restart slirp4netns", session_id)

    async def _start_proxy(self, session_id: str, namespace: int) -> anyio.CancelScope:
        assert self._task_group is not None, "LocalNetwork.start() was not called"
        sock = await netns.socket_in(namespace)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", PROXY_PORT))
            sock.listen(64)
            listener = await SocketListener.from_socket(sock)
        except OSError as exc:
            sock.close()
            raise BackendError(f"Could not start the session's egress proxy: {exc.strerror or exc}") from exc
        proxy = EgressProxy(session_id, lambda: self._current(session_id), self._resolver)
        scope = anyio.CancelScope()

        async def serve() -> None:
            with scope:
                try:
                    await proxy.serve(listener)
                except Exception:  # never into the server's task group
                    logger.exception("session %s: the egress proxy stopped", session_id)

        self._task_group.start_soon(serve)
        return scope

    def _current(self, session_id: str) -> Egress:
        net = self._sessions.get(session_id)
        return net.egress if net is not None else Egress()

    async def _refresh_addresses(self) -> None:
        """This host's own addresses, read again when older than a few seconds (`ip` is a process)."""
        now = time.monotonic()
        if now - self._host_addresses_at > HOST_ADDRESSES_TTL:
            self._host_addresses = await anyio.to_thread.run_sync(host_addresses)
            self._host_addresses_at = now


def host_addresses() -> tuple[Address, ...]:
    """Every address on this host's interfaces (from `ip -j addr`; empty if it cannot be read)."""
    ip = slirp.find_ip()
    if ip is None:
        return ()
    with contextlib.suppress(OSError, subprocess.SubprocessError, ValueError):
        shown = subprocess.run([ip, "-j", "addr", "show"], capture_output=True, timeout=5, check=True).stdout
        out: list[Address] = []
        for link in json.loads(shown):
            for info in link.get("addr_info", []):
                with contextlib.suppress(ValueError, TypeError):
                    out.append(ipaddress.ip_address(str(info.get("local")).split("%", 1)[0]))
        return tuple(out)
    return ()
