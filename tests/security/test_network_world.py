"""Egress policies against a small internet of the tests' own (network_world.py): what a network
session reaches and what it does not, raw and through its proxy, as the policy changes while it runs,
and within the operator's allow- and deny-lists. The MCP server runs inside the world's namespace as
a real stdio subprocess; every target is an address that exists only in the world."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import psutil
import pytest
from mcp import Client

from agentbay_mcp.testing.calls import call, call_error, unwrapped
from agentbay_mcp.testing.stdio import RawStdioServer
from agentbay_mcp.testing.waiting import eventually, wait_until
from tests.security.network_probes import fetch, install, reached
from tests.security.network_world import ALLOWED, DENIED, INSIDE_ADDRESS, INSIDE_LOOPBACK, PRIVATE, World, available
from tests.security.network_world import world as build_world

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.xdist_group("network_world"),  # one world, on one worker (scripts/test.sh: --dist loadgroup)
    pytest.mark.timeout(180),
    pytest.mark.skipif(available() is not None, reason=str(available())),
]

REMOTE = {name: f"http://{address}:8080/" for name, address in (("allowed", ALLOWED), ("denied", DENIED))}
REMOTE["private"] = f"http://{PRIVATE}:8080/"
HOST_LOOPBACK = f"http://{INSIDE_LOOPBACK[0]}:{INSIDE_LOOPBACK[1]}/"
HOST_ADDRESS = f"http://{INSIDE_ADDRESS[0]}:{INSIDE_ADDRESS[1]}/"
#: The host's loopback as slirp would map it (disabled), and the cloud metadata address.
SLIRP_HOST = f"http://10.0.2.2:{INSIDE_LOOPBACK[1]}/"
METADATA = "http://169.254.169.254/latest/meta-data/"


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    with build_world() as made:
        yield made


@asynccontextmanager
async def server_in(world: World, state_dir: Path, *args: str) -> AsyncIterator[Client]:
    with unwrapped():
        params = world.server(state_dir, "--log-level", "WARNING", *args)
        async with Client(params, mode="legacy") as client:
            yield client


async def session(client: Client, **arguments: object) -> str:
    created = await call(client, "create_session", image_id="code_latest", **arguments)
    await install(client, str(created["session_id"]))
    return str(created["session_id"])


async def test_network_on_reaches_the_public_test_hosts_and_nothing_of_the_host_or_private(
    world: World, state_dir: Path
) -> None:
    async with server_in(world, state_dir, "--network", "on-request") as client:
        online = await session(client, network="on")
        assert (await call(client, "get_session", session_id=online))["network"] == "on"
        raw = await fetch(
            client,
            online,
            "raw",
            REMOTE["allowed"],
            REMOTE["denied"],
            REMOTE["private"],
            HOST_LOOPBACK,
            SLIRP_HOST,
            HOST_ADDRESS,
            METADATA,
        )
        assert raw[:2] == [f"OK remote:{ALLOWED}", f"OK remote:{DENIED}"], raw
        assert reached(raw[2:]) == [False] * 5, raw  # private, host loopback (both ways), host address, metadata
        assert "unreachable" in raw[2].lower(), raw  # no route at all: nothing is even sent

        proxied = await fetch(
            client,
            online,
            "proxy",
            "http://allowed.test:8080/",
            "http://private.test:8080/",
            REMOTE["private"],
            HOST_ADDRESS,
            METADATA,
        )
        assert proxied[0] == f"OK remote:{ALLOWED}", proxied
        assert proxied[1] == (
            "ERR 403 agentbay-mcp egress proxy: private.test is not allowed by this session's network policy "
            f"(on: the public internet): it resolves to {PRIVATE}"
        ), proxied
        assert all(line.startswith("ERR 403 agentbay-mcp egress proxy:") for line in proxied[2:]), proxied
        loopback = f"{INSIDE_LOOPBACK[0]}:{INSIDE_LOOPBACK[1]}"
        tunnel = await fetch(client, online, "connect", "allowed.test:8080", loopback)
        assert tunnel[0] == f"OK remote:{ALLOWED}", tunnel
        assert tunnel[1].startswith("ERR HTTP/1.1 403"), tunnel

        # A session without network: nothing raw, and its proxy says why.
        offline = await session(client)
        none = await fetch(client, offline, "raw", REMOTE["allowed"])
        assert reached(none) == [False], none
        said = await fetch(client, offline, "proxy", REMOTE["allowed"])
        assert said == [
            "ERR 403 agentbay-mcp egress proxy: this session has no network access; ask for it with "
            "set_session_network (or create the session with network)"
        ]


async def test_allow_lists_of_domains_and_cidrs_change_while_the_session_runs(world: World, state_dir: Path) -> None:
    async with server_in(world, state_dir, "--network", "on-request") as client:
        sid = await session(client, network=["allowed.test"])
        # Domains only: the proxy is the only way out (no routes, no device).
        assert await fetch(
            client,
            sid,
            "proxy",
            "http://allowed.test:8080/",
            "http://api.allowed.test:8080/",
            "http://denied.test:8080/",
            REMOTE["allowed"],
        ) == [
            f"OK remote:{ALLOWED}",
            "ERR 403 agentbay-mcp egress proxy: api.allowed.test is not allowed by this session's network policy "
            "(allow allowed.test)",
            "ERR 403 agentbay-mcp egress proxy: denied.test is not allowed by this session's network policy "
            "(allow allowed.test)",
            f"ERR 403 agentbay-mcp egress proxy: {ALLOWED} is not allowed by this session's network policy "
            "(allow allowed.test)",
        ]
        assert reached(await fetch(client, sid, "raw", REMOTE["allowed"])) == [False]
        devices = await call(client, "execute_command", session_id=sid, command="tail -n +3 /proc/net/dev")
        assert [line.split(":")[0].strip() for line in devices["stdout"].splitlines()] == ["lo"]

        rules = ["*.allowed.test", "198.51.100.0/24"]
        changed = await call(client, "set_session_network", session_id=sid, network=rules)
        assert changed == {"session_id": sid, "network": "*.allowed.test,198.51.100.0/24"}
        assert reached(
            await fetch(
                client,
                sid,
                "proxy",
                "http://api.allowed.test:8080/",
                "http://allowed.test:8080/",
                "http://denied.test:8080/",
            )
        ) == [True, False, True]
        assert reached(await fetch(client, sid, "raw", REMOTE["denied"], REMOTE["allowed"])) == [True, False]
        assert (await call(client, "get_session", session_id=sid))["network"] == "*.allowed.test,198.51.100.0/24"

        await call(client, "set_session_network", session_id=sid, network="off")
        assert reached(await fetch(client, sid, "raw", REMOTE["denied"])) == [False]
        assert reached(await fetch(client, sid, "proxy", "http://api.allowed.test:8080/")) == [False]

        await call(client, "set_session_network", session_id=sid, network=True)
        assert reached(await fetch(client, sid, "raw", REMOTE["allowed"], REMOTE["private"])) == [True, False]

        # A domain on the list that resolves into a private range is still refused.
        await call(client, "set_session_network", session_id=sid, network=["private.test"])
        assert (await fetch(client, sid, "proxy", "http://private.test:8080/"))[0].endswith(f"it resolves to {PRIVATE}")

        # Bad requests are clear, and change nothing.
        for bad, said in (
            ("maybe", "network must be 'off', 'on' (the public internet) or a list"),
            ([], "An empty allow-list allows nothing"),
            (["not a domain!"], "Invalid network rule 'not a domain!'"),
            ([f"h{i}.test" for i in range(65)], "At most 64"),
        ):
            message = await call_error(client, "set_session_network", session_id=sid, network=bad)
            assert said in message, message
        assert (await call(client, "get_session", session_id=sid))["network"] == "private.test"


async def test_the_operators_deny_list_wins_and_its_allow_list_bounds_every_session(
    world: World, state_dir: Path
) -> None:
    deny = ("--network", "on", "--network-deny", f"denied.test,{ALLOWED}/32")
    async with server_in(world, state_dir / "deny", *deny) as client:
        sid = await session(client)  # network on: the operator's default
        assert reached(await fetch(client, sid, "raw", REMOTE["allowed"], REMOTE["denied"])) == [False, True]
        assert reached(await fetch(client, sid, "proxy", "http://allowed.test:8080/", "http://denied.test:8080/")) == [
            False,
            False,
        ]
        # Asking for it by name does not get past the operator.
        await call(client, "set_session_network", session_id=sid, network=["denied.test", f"{ALLOWED}/32"])
        asked = await fetch(client, sid, "proxy", "http://denied.test:8080/", REMOTE["allowed"])
        assert reached(asked) == [False, False], asked

    allow = ("--network", "on", "--network-allow", "allowed.test,10.99.0.0/24")
    async with server_in(world, state_dir / "allow", *allow) as client:
        sid = await session(client)
        # The operator named a private range: allowed; the public host outside the list: not.
        assert reached(await fetch(client, sid, "raw", REMOTE["private"], REMOTE["denied"])) == [True, False]
        assert reached(await fetch(client, sid, "proxy", "http://allowed.test:8080/", "http://denied.test:8080/")) == [
            True,
            False,
        ]


async def test_network_off_on_the_server_refuses_every_request_for_network(world: World, state_dir: Path) -> None:
    async with server_in(world, state_dir) as client:
        assert "network=off" in await call_error(client, "create_session", network="on")
        sid = await session(client)
        assert "network=off" in await call_error(client, "set_session_network", session_id=sid, network=["a.test"])
        assert reached(await fetch(client, sid, "raw", REMOTE["allowed"])) == [False]


def slirps() -> list[psutil.Process]:
    """The live slirp4netns processes this test's servers started (a process may exit while we look)."""
    found = []
    for process in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if process.name() == "slirp4netns" and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


async def test_a_slirp_that_dies_is_started_again(world: World, state_dir: Path) -> None:
    async with server_in(world, state_dir, "--network", "on-request") as client:
        sid = await session(client, network="on")
        assert reached(await fetch(client, sid, "raw", REMOTE["allowed"])) == [True]
        [first] = slirps()
        first.kill()
        assert await eventually(lambda: [p.pid for p in slirps()] not in ([], [first.pid]))
        assert reached(await fetch(client, sid, "raw", REMOTE["allowed"])) == [True]
        await call(client, "delete_session", session_id=sid)
        assert await eventually(lambda: slirps() == [])


def test_no_slirp_outlives_a_sigkilled_server(state_dir: Path) -> None:
    with RawStdioServer(state_dir, "--network", "on-request") as server:
        server.initialize()
        server.create_sessions(2, network="on", image_id="code_latest")
        helpers = [p for p in psutil.Process(server.pid).children(recursive=True) if p.name() == "slirp4netns"]
        assert len(helpers) == 2, helpers
        server.kill()
        # Their exit fd's other end was the server's: they go with it, whoever reaps the sessions.
        assert wait_until(lambda: not any(p.is_running() and p.status() != "zombie" for p in helpers), timeout=10)
