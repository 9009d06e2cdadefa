"""Port links: get_link gives a URL on this host's loopback that reaches a port a session serves.

Real sandboxes, real servers started with start_process, real HTTP from the test process."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import anyio
import httpx2
import psutil
import pytest
from mcp import Client

from agentbay_mcp.testing.calls import call, call_error
from agentbay_mcp.testing.http_team import client_as, running_team
from agentbay_mcp.testing.servers import free_port
from agentbay_mcp.testing.waiting import eventually
from tests.security.sandbox_attacks import serve

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]

#: A web server on the session's loopback (as a dev server binds it) answering `text`.
SERVE = "mkdir -p site && echo {text} > site/index.html && exec python3 -m http.server {port} --bind 127.0.0.1 -d site"


async def serving(client: Client, session_id: str, text: str, port: int = 8000) -> None:
    await call(client, "start_process", session_id=session_id, command=SERVE.format(text=text, port=port))
    probe = f"python3 -c \"import urllib.request as u; print(u.urlopen('http://127.0.0.1:{port}/').read().decode())\""
    for _ in range(100):
        ran = await call(client, "execute_command", session_id=session_id, command=probe)
        if ran["exit_code"] == 0:
            return
        await anyio.sleep(0.1)
    raise AssertionError(f"the server in {session_id} did not start")


async def get(url: str) -> str:
    async with httpx2.AsyncClient(timeout=10) as http:
        answer = await http.get(url)
        answer.raise_for_status()
        return answer.text


async def refused(url: str) -> bool:
    try:
        async with httpx2.AsyncClient(timeout=5) as http:
            await http.get(url)
    except httpx2.TransportError:
        return True
    return False


async def test_a_link_reaches_a_server_started_with_start_process_and_dies_with_the_session(client: Client) -> None:
    session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]  # no network at all
    # A link opened before anything listens: the connection is closed, and it works once the server runs.
    link = await call(client, "get_link", session_id=session_id, port=8000)
    assert link["url"].startswith("http://127.0.0.1:")
    assert (link["port"], link["protocol"], link["session_id"]) == (8000, "http", session_id)
    assert await refused(link["url"])
    await serving(client, session_id, "hello-from-the-session")
    assert await get(link["url"]) == "hello-from-the-session\n"
    # Asked again: the same link.
    assert (await call(client, "get_link", session_id=session_id, port=8000))["url"] == link["url"]
    await call(client, "delete_session", session_id=session_id)
    assert await refused(link["url"])


async def test_two_sessions_links_never_cross(client: Client) -> None:
    first, second = [(await call(client, "create_session", image_id="code_latest"))["session_id"] for _ in range(2)]
    await serving(client, first, "first")
    await serving(client, second, "second")  # the same port, each in its own namespace
    one = await call(client, "get_link", session_id=first, port=8000)
    two = await call(client, "get_link", session_id=second, port=8000)
    assert one["url"] != two["url"]
    assert [await get(one["url"]), await get(two["url"])] == ["first\n", "second\n"]
    # Many at once, both links, while the sessions also run commands and change their network.
    results: dict[int, str] = {}

    async def fetch(index: int) -> None:
        results[index] = await get((one if index % 2 else two)["url"])

    async with anyio.create_task_group() as tg:
        for index in range(40):
            tg.start_soon(fetch, index)
        tg.start_soon(partial(call, client, "execute_command", session_id=first, command="echo busy"))
    assert all(text == ("first\n" if index % 2 else "second\n") for index, text in results.items())
    assert len(results) == 40
    await call(client, "delete_session", session_id=first)
    assert await refused(one["url"])
    assert await get(two["url"]) == "second\n"  # the other session's link lives on


async def test_bad_link_requests_are_clear(client: Client) -> None:
    session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]
    assert "port" in await call_error(client, "get_link", session_id=session_id, port=0)
    assert "port" in await call_error(client, "get_link", session_id=session_id, port=70000)
    assert "protocol" in await call_error(client, "get_link", session_id=session_id, port=80, protocol="gopher")
    assert "not found" in (await call_error(client, "get_link", session_id="session-" + "0" * 24, port=80)).lower()


async def test_a_link_to_another_principals_session_is_refused_over_http(state_dir: Path) -> None:
    with running_team(state_dir) as team:
        async with client_as(team, "alice") as alice, client_as(team, "bob") as bob:
            session_id = (await call(alice, "create_session", image_id="code_latest"))["session_id"]
            await serving(alice, session_id, "alice-only")
            message = await call_error(bob, "get_link", session_id=session_id, port=8000)
            assert "not found" in message.lower(), message
            link = await call(alice, "get_link", session_id=session_id, port=8000)
            assert await get(link["url"]) == "alice-only\n"


async def test_policy_changes_and_links_in_parallel_on_one_session(state_dir: Path) -> None:
    async with serve(state_dir, network="on-request") as client:
        session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]
        await serving(client, session_id, "steady")
        link = await call(client, "get_link", session_id=session_id, port=8000)
        texts: list[str] = []

        async def toggle(index: int) -> None:
            network = ("on", "off", ["pypi.org"], ["203.0.113.0/24"])[index % 4]
            await call(client, "set_session_network", session_id=session_id, network=network)

        async def command() -> None:
            ran = await call(client, "execute_command", session_id=session_id, command="echo ok")
            texts.append(ran["stdout"])

        async def fetch() -> None:
            texts.append(await get(link["url"]))

        async with anyio.create_task_group() as tg:
            for index in range(12):
                tg.start_soon(toggle, index)
                tg.start_soon(command)
                tg.start_soon(fetch)
        assert sorted(texts) == sorted(["ok\n"] * 12 + ["steady\n"] * 12)
        await call(client, "set_session_network", session_id=session_id, network="on")
        routes = await call(client, "execute_command", session_id=session_id, command="ip route | wc -l")
        assert int(routes["stdout"]) > 10, routes  # the last change won: the public internet's routes
        assert (await call(client, "get_session", session_id=session_id))["network"] == "on"
        # One slirp4netns for the session, however many changes raced (this process is the server).
        slirps = [p for p in psutil.Process().children(recursive=True) if p.name() == "slirp4netns"]
        assert len(slirps) == 1, slirps
        await call(client, "delete_session", session_id=session_id)
        assert await eventually(lambda: not any(p.is_running() and p.status() != "zombie" for p in slirps))


async def test_links_through_the_servers_public_url_die_with_the_session(state_dir: Path) -> None:
    port = free_port()
    public = f"http://127.0.0.1:{port}"
    with running_team(state_dir, "--public-url", public, port=port) as team:
        async with client_as(team, "alice") as alice, client_as(team, "bob") as bob:
            session_id = (await call(alice, "create_session", image_id="code_latest"))["session_id"]
            await serving(alice, session_id, "through-the-server")
            link = await call(alice, "get_link", session_id=session_id, port=8000)
            assert link["url"].startswith(f"{public}/links/"), link
            assert link["url"] == (await call(alice, "get_link", session_id=session_id, port=8000))["url"]
            # No bearer token needed (a browser has none): the link's own token is the capability.
            assert await get(link["url"]) == "through-the-server\n"
            assert await get(link["url"] + "index.html?x=1") == "through-the-server\n"
            async with httpx2.AsyncClient(timeout=10) as http:
                page = await http.get(link["url"])
                # The page runs sandboxed on the server's origin: an opaque origin, none of its cookies.
                assert page.headers["content-security-policy"].startswith("sandbox allow-scripts"), page.headers
                missing = await http.get(link["url"] + "nothing-here")
                assert missing.status_code == 404  # the dev server's own answer, passed on
                # Encoded line breaks, '?', and '..' stay inside the path the session's server gets.
                for odd in ("a%0d%0aX-Injected:%201", "a%3Fb%23c", "..%2F..%2Fetc%2Fpasswd"):
                    answer = await http.get(link["url"] + odd)
                    assert answer.status_code == 404, (odd, answer.status_code, answer.text)
                forged = await http.get(f"{public}/links/{'A' * 22}/")
                assert forged.status_code == 404
                assert "Unknown or expired link" in forged.text
                closed = await http.get((await call(alice, "get_link", session_id=session_id, port=9))["url"])
                assert closed.status_code == 502
                assert "Nothing answers on port 9" in closed.text
            assert "not found" in (await call_error(bob, "get_link", session_id=session_id, port=8000)).lower()
            await call(alice, "delete_session", session_id=session_id)
            async with httpx2.AsyncClient(timeout=10) as http:
                assert (await http.get(link["url"])).status_code == 404


async def test_a_network_session_cannot_reach_another_sessions_server_or_link(state_dir: Path) -> None:
    async with serve(state_dir, network="on-request") as client:
        server = (await call(client, "create_session", image_id="code_latest"))["session_id"]
        await serving(client, server, "private-to-b")
        link = urlsplit((await call(client, "get_link", session_id=server, port=8000))["url"])
        attacker = (await call(client, "create_session", image_id="code_latest", network="on"))["session_id"]
        probe = (
            "import socket, sys\n"
            "for host, port in [(a.rsplit(':', 1)[0], int(a.rsplit(':', 1)[1])) for a in sys.argv[1:]]:\n"
            "    try:\n"
            "        s = socket.create_connection((host, port), timeout=3)\n"
            "        s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); print('reached', host, port, s.recv(200))\n"
            "    except OSError as exc:\n"
            "        print('refused', host, port, type(exc).__name__)\n"
        )
        await call(client, "write_file", session_id=attacker, path="probe.py", content=probe)
        # Its own loopback and address (the other session's namespace is not there), slirp's host
        # mapping of the link's port, and the link's port itself.
        targets = ["127.0.0.1:8000", "10.0.2.100:8000", f"10.0.2.2:{link.port}", f"127.0.0.1:{link.port}"]
        ran = await call(
            client, "execute_command", session_id=attacker, command="python3 probe.py " + " ".join(targets)
        )
        assert [line.split()[0] for line in ran["stdout"].splitlines()] == ["refused"] * 4, ran
        assert "private-to-b" not in ran["stdout"]
        # Through its proxy: refused by policy (loopback).
        via_proxy = (
            "import urllib.error, urllib.request\n"
            "opener = urllib.request.build_opener(urllib.request.ProxyHandler({'http': 'http://127.0.0.1:3128'}))\n"
            "try:\n"
            f"    print(opener.open('http://127.0.0.1:{link.port}/', timeout=5).read())\n"
            "except urllib.error.HTTPError as exc:\n"
            "    print(exc.code, exc.read().decode())\n"
        )
        await call(client, "write_file", session_id=attacker, path="via_proxy.py", content=via_proxy)
        tunnel = await call(
            client, "execute_command", session_id=attacker, command="no_proxy= NO_PROXY= python3 via_proxy.py"
        )
        assert tunnel["stdout"].startswith("403 agentbay-mcp egress proxy: 127.0.0.1 is not allowed"), tunnel
        assert await get(urlunsplit(link)) == "private-to-b\n"  # the owner's link works all along
