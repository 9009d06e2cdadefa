"""What a hostile command in a session can and cannot do: the sandbox boundary, tested by attacking it.

Every test runs real commands in real bubblewrap sandboxes through the MCP tools and checks the
effect on the host: canary files, host processes (psutil), a TCP listener. Tests marked xfail
document security weaknesses found in the project; each reason says what happens and how to fix
it, and `strict=True` makes the test fail loudly once it is fixed. Resource attacks (fork bombs,
memory, file sizes, what outlives a session) are in test_sandbox_resources.py."""

from __future__ import annotations

import os
import secrets
import socket
import sys
from pathlib import Path

import anyio
import pytest
from mcp import Client

from agentbay_mcp.backends.local.sandbox import UNPRIVILEGED_UID
from agentbay_mcp.testing.calls import call, call_error, unwrapped
from agentbay_mcp.testing.host import marked, nonce
from agentbay_mcp.testing.http_clients import sessionless
from agentbay_mcp.testing.servers import HttpServer, session_dirs
from agentbay_mcp.testing.waiting import eventually
from tests.security.sandbox_attacks import (
    AS_ROOT,
    SANDBOX_HOST_UID,
    connect_probe,
    exposing_mounts,
    mounts,
    new_session,
    on_host,
    python,
    run,
    run_as_other_user,
    serve,
    tcp_listener,
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


# 1. Host files ---------------------------------------------------------------------------------


async def test_host_files_outside_the_sandbox_are_unreachable(
    client: Client, state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = secrets.token_hex(16)
    canary = tmp_path / f"canary-{secrets.token_hex(6)}.txt"
    canary.write_text(secret)
    canary.chmod(0o644)  # readable by everyone, the sandbox uid included: only the mount namespace protects it
    monkeypatch.setenv("AGENTBAY_SECURITY_CANARY", secret)  # the server's environment must not leak either
    session_id = await new_session(client)

    # No mount of the sandbox exposes the canary, /root or the session's own record, under any path.
    mountinfo = (await run(client, session_id, "cat /proc/self/mountinfo"))["stdout"]
    assert mounts(mountinfo), mountinfo
    for host_path in (canary, Path("/root"), state_dir / "sessions" / session_id / "meta.json"):
        assert not exposing_mounts(mountinfo, host_path), f"{host_path} is reachable in the sandbox"

    read = await run(client, session_id, f"cat {canary}")
    assert read["exit_code"] != 0
    assert secret not in read["stdout"] + read["stderr"]

    root = await run(client, session_id, "ls -a /root")
    assert root["exit_code"] != 0 or root["stdout"].split() in ([], [".", ".."]), root
    host_root_entries = {name for name in os.listdir("/root") if len(name) > 4}
    assert not host_root_entries & set(root["stdout"].split())

    for command in (
        f"find / -xdev 2>/dev/null | grep {canary.name}",
        f"find / -path /proc -prune -o -name {canary.name} -print 2>/dev/null",
        f"grep -rls {secret} /home /tmp /opt /etc /dev /run 2>/dev/null",
        "env; tr '\\0' '\\n' < /proc/1/environ",
        f"ls -la {state_dir} {state_dir}/sessions/{session_id} 2>&1; cat {state_dir}/sessions/{session_id}/meta.json",
    ):
        found = await run(client, session_id, command)
        assert secret not in found["stdout"], command
        assert canary.name not in found["stdout"], command
        assert "meta.json" not in found["stdout"], command
        assert '"owner"' not in found["stdout"], command


# 2. Writing ------------------------------------------------------------------------------------


async def test_system_dirs_are_read_only_and_home_and_tmp_land_in_the_session(client: Client, state_dir: Path) -> None:
    token = secrets.token_hex(6)
    session_id = await new_session(client)
    probes = {
        f"touch /usr/agentbay-probe-{token}": f"/usr/agentbay-probe-{token}",
        f"echo x > /etc/agentbay-probe-{token}": f"/etc/agentbay-probe-{token}",
        f"mkdir /usr/lib/agentbay-probe-{token}": f"/usr/lib/agentbay-probe-{token}",
        f"echo x >> /etc/passwd && grep -c x /etc/passwd # {token}": None,
    }
    for command, host_path in probes.items():
        result = await run(client, session_id, command)
        assert result["exit_code"] != 0, f"{command!r} succeeded: {result}"
        if host_path is not None:
            assert not on_host(host_path), f"{command!r} reached the host"
    # Writes to the sandbox's own root must at least never reach the host.
    await run(client, session_id, f"touch /agentbay-probe-{token}; mkdir /opt/agentbay-probe-{token}; true")
    assert not on_host(f"/agentbay-probe-{token}")
    assert not on_host(f"/opt/agentbay-probe-{token}")

    wrote = await run(
        client,
        session_id,
        f"echo home-{token} > /home/user/h.txt && echo rel-{token} > rel.txt && mkdir -p deep/er "
        f"&& echo tmp-{token} > /tmp/t.txt && echo ok",
    )
    assert wrote["exit_code"] == 0, wrote
    session = state_dir / "sessions" / session_id
    assert (session / "home" / "h.txt").read_text() == f"home-{token}\n"
    assert (session / "home" / "rel.txt").read_text() == f"rel-{token}\n"
    assert (session / "home" / "deep" / "er").is_dir()
    assert (session / "tmp" / "t.txt").read_text() == f"tmp-{token}\n"


async def test_writes_outside_home_and_tmp_fail(state_dir: Path) -> None:
    token = secrets.token_hex(6)
    async with serve(state_dir) as client:
        session_id = await new_session(client)
        for command in (f"touch /agentbay-probe-{token}", f"mkdir /opt/agentbay-probe-{token}", "echo x > /x"):
            result = await run(client, session_id, command)
            assert result["exit_code"] != 0, f"{command!r} succeeded inside the sandbox"


# 3. Other sessions ----------------------------------------------------------------------------------


async def test_other_sessions_files_and_processes_are_invisible_and_unkillable(state_dir: Path) -> None:
    secret, name, mark = secrets.token_hex(16), f"secret-{secrets.token_hex(6)}.txt", nonce()
    async with serve(state_dir) as client:
        a, b = await new_session(client), await new_session(client)
        assert (await run(client, a, f"echo {secret} > {name}"))["exit_code"] == 0
        started = await call(client, "start_process", session_id=a, command=f"sleep 300.{mark}")
        assert await eventually(lambda: marked(state_dir, mark), timeout=5)
        victims = marked(state_dir, mark)

        found = await run(client, b, f"find / -name {name} 2>/dev/null; grep -rs {secret} /home /tmp")
        assert name not in found["stdout"], found
        assert secret not in found["stdout"], found
        ps = await run(client, b, "ps aux; for p in /proc/[0-9]*; do tr '\\0' ' ' < $p/cmdline; echo; done")
        assert mark not in ps["stdout"], ps["stdout"]
        listing = (await run(client, b, "ls /proc"))["stdout"].split()
        assert not {str(pid) for pid in victims} & set(listing)
        assert len([entry for entry in listing if entry.isdigit()]) < 10, listing  # only B's own handful

        await run(client, b, "kill -9 -1; pkill sleep; pkill -9 -f 300; true")
        await anyio.sleep(0.3)
        still = marked(state_dir, mark)
        assert victims <= still, "session B killed a process of session A"
        status = await call(client, "wait_process", session_id=a, process_id=started["process_id"], timeout_ms=0)
        assert status["running"] is True
        assert (await run(client, a, f"cat {name}"))["stdout"] == f"{secret}\n"


# 4. Network ------------------------------------------------------------------------------------------


async def test_no_session_reaches_the_hosts_loopback_network_or_not(state_dir: Path) -> None:
    with tcp_listener() as (port, received):
        async with serve(state_dir, network="on-request") as client:
            offline = await new_session(client)
            online = await new_session(client, network=True)
            assert (await call(client, "get_session", session_id=online))["network"] == "on"
            for session_id in (offline, online):
                # Its own 127.0.0.1, slirp's mapping of the host's (disabled), and the proxy: none is the host's.
                for address in ("127.0.0.1", "10.0.2.2"):
                    token = secrets.token_hex(8)
                    attempt = await run(client, session_id, connect_probe(port, token).replace("127.0.0.1", address))
                    assert attempt["exit_code"] != 0, attempt
                    assert "connected" not in attempt["stdout"]
                tunnel = await run(
                    client,
                    session_id,
                    python(
                        "import socket\ns = socket.create_connection(('127.0.0.1', 3128), timeout=5)\n"
                        f"s.sendall(b'CONNECT 127.0.0.1:{port} HTTP/1.1\\r\\n\\r\\n')\nprint(s.recv(200))"
                    ),
                )
                assert "403 Forbidden" in tunnel["stdout"], tunnel
            # Devices: only loopback offline; loopback and slirp's tap online. No host socket is listed.
            devices = (await run(client, offline, "tail -n +3 /proc/net/dev"))["stdout"].splitlines()
            assert [line.split(":")[0].strip() for line in devices] == ["lo"]
            devices = (await run(client, online, "tail -n +3 /proc/net/dev"))["stdout"].splitlines()
            assert sorted(line.split(":")[0].strip() for line in devices) == ["lo", "tap0"]
            marker = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # a named socket of the host's
            name = f"agentbay-test-{secrets.token_hex(6)}"
            marker.bind("\0" + name)
            marker.listen(1)
            assert f"@{name}" in await anyio.Path("/proc/net/unix").read_text(errors="replace")
            for session_id in (offline, online):
                unix = (await run(client, session_id, "tail -n +2 /proc/net/unix"))["stdout"]
                assert name not in unix, unix
                # Only the sandbox's own unnamed sockets (its namespace's): none of the host's named ones.
                assert [line for line in unix.splitlines() if len(line.split()) > 7] == [], unix
            # The sandbox cannot change its routes (no capability in its namespace).
            route = await run(
                client, online, "ip route add 1.0.0.0/8 via 10.0.2.2 dev tap0 2>&1; ip route flush all 2>&1"
            )
            assert "Operation not permitted" in route["stdout"], route
            marker.close()
            await anyio.sleep(0.3)
            assert received == [], "a session reached the host's loopback"


async def test_network_off_refuses_network_sessions(state_dir: Path) -> None:
    async with serve(state_dir, network="off") as client:
        message = await call_error(client, "create_session", network=True)
        assert "network=off" in message, message
        assert session_dirs(state_dir) == []
        session_id = await new_session(client)
        assert (await call(client, "get_session", session_id=session_id))["network"] == "off"


#: Drive agentbay-mcp's HTTP endpoint like any MCP client (sessionless era) and read every session's
#: secret.txt. Arguments: the server's URL, the route (direct: no proxy; proxy: the session's egress
#: proxy; slirp: slirp's mapping of the host's loopback, 10.0.2.2) and, optionally, a bearer token.
HTTP_ATTACK = """
import json, sys, urllib.request
url, route, token = sys.argv[1], sys.argv[2], (sys.argv[3:] or [""])[0]
if route == "slirp":
    url = url.replace("127.0.0.1", "10.0.2.2")
opener = urllib.request.build_opener(*([] if route == "proxy" else [urllib.request.ProxyHandler({})]))
def call(name, args):
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    params = {"name": name, "arguments": args, "_meta": meta}
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}
    headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
               "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": name}
    if token:
        headers["Authorization"] = "Bearer " + token
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    with opener.open(request, timeout=5) as response:
        return json.loads(response.read())["result"]["content"][0]["text"]
try:
    # list_sessions answers one session per line after its header, the id first; a command's output
    # follows its status line.
    for line in call("list_sessions", {"max_results": 100}).splitlines()[1:]:
        session_id = line.split(" ", 1)[0]
        ran = call("execute_command", {"session_id": session_id, "command": "cat secret.txt"})
        print(session_id, ran.partition("\\n")[2])
except Exception as exc:
    print("failed:", type(exc).__name__, exc)
"""


@pytest.mark.parametrize("token", [True, False], ids=["per-start-token", "allow-unauthenticated"])
async def test_a_network_session_cannot_use_the_servers_http_endpoint(state_dir: Path, token: bool) -> None:
    """Two layers, each enough alone: the session's own network namespace (the endpoint is out of
    its reach by every route, even with --allow-unauthenticated), and the per-start token (the same
    attack run on the host, where the port is reachable, gets 401 without it)."""
    server = HttpServer(state_dir, "--network", "on-request", start_token=token)
    try:
        with unwrapped():
            async with sessionless(server) as client:
                victim = await new_session(client)
                secret = secrets.token_hex(16)
                assert (await run(client, victim, f"echo {secret} > secret.txt"))["exit_code"] == 0
                online = await new_session(client, network=True)
                for route in ("direct", "proxy", "slirp"):
                    # no_proxy emptied: the session's proxy is asked for 127.0.0.1 too.
                    command = f"no_proxy= NO_PROXY= {python(HTTP_ATTACK)} {server.url} {route}"
                    attack = await run(client, online, command)
                    assert secret not in attack["stdout"], f"{route}: session {online} read {victim}: {attack}"
                    assert attack["stdout"].startswith("failed:"), attack
                if server.token is not None:  # nor can it read the token from the state dir
                    stolen = await run(client, online, f"cat {server.token_file}; ls -a {state_dir}")
                    assert server.token not in stolen["stdout"]
                    assert server.token_file.name not in stolen["stdout"], stolen

                async def from_host(*token_argument: str) -> str:
                    argv = [sys.executable, "-c", HTTP_ATTACK, server.url, "direct", *token_argument]
                    return (await anyio.run_process(argv, check=False)).stdout.decode()

                # The controls, on the host: the attack works with the token (or without, when the
                # operator allowed that), and gets 401 without it.
                assert f"{victim} {secret}" in await from_host(*([server.token] if server.token else []))
                if server.token is not None:
                    assert (await from_host()).startswith("failed: HTTPError HTTP Error 401"), await from_host()
    finally:
        server.stop()


# 9. Identity -------------------------------------------------------------------------------------------


async def test_commands_run_as_an_unprivileged_user(client: Client, state_dir: Path) -> None:
    session_id = await new_session(client)
    who = await run(client, session_id, "id; id -u; grep CapEff /proc/self/status")
    lines = who["stdout"].splitlines()
    assert lines[0].startswith("uid=1000(user) gid=1000(user)"), lines
    assert lines[1] == "1000"
    assert lines[2].split() == ["CapEff:", "0000000000000000"]
    shadow = await run(client, session_id, "cat /etc/shadow")
    assert shadow["exit_code"] != 0
    assert "root:" not in shadow["stdout"]

    token = secrets.token_hex(6)
    assert (await run(client, session_id, f"echo x > owned-{token}; mkdir dir-{token}"))["exit_code"] == 0
    home = state_dir / "sessions" / session_id / "home"
    for path in (home / f"owned-{token}", home / f"dir-{token}"):
        assert path.stat().st_uid == SANDBOX_HOST_UID, f"{path} is owned by uid {path.stat().st_uid}"
        assert path.stat().st_gid == (UNPRIVILEGED_UID if AS_ROOT else os.getegid())


#: Run as another, unprivileged user of the host: find a session's directory in bwrap's command
#: line (world-readable in /proc), read a file of the session and plant one in its /tmp.
HOST_SPY = """
import os, sys
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().decode().split("\\0")
    except OSError:
        continue
    for i in range(len(argv) - 2):
        if argv[i] == "--bind" and argv[i + 2] == "/home/user" and argv[i + 1].startswith(sys.argv[1]):
            home = argv[i + 1]
            try:
                print(open(os.path.join(home, "secret.txt")).read().strip())
            except OSError as exc:
                print("read refused:", exc)
            try:
                with open(os.path.join(os.path.dirname(home), "tmp", "planted"), "w") as planted:
                    planted.write("x")
            except OSError as exc:
                print("write refused:", exc)
"""


@pytest.mark.skipif(not AS_ROOT, reason="only a root server runs sandboxes as nobody under a traversable state dir")
async def test_other_host_users_cannot_reach_a_sessions_files(state_dir: Path) -> None:
    spy_python = "/usr/bin/python3"
    if not os.access(spy_python, os.X_OK):
        pytest.skip("no system python3 for the unprivileged spy")
    secret = secrets.token_hex(16)
    async with serve(state_dir) as client:
        session_id = await new_session(client)
        assert (await run(client, session_id, f"echo {secret} > secret.txt"))["exit_code"] == 0
        spy = await anyio.to_thread.run_sync(run_as_other_user, [spy_python, "-I", "-c", HOST_SPY, str(state_dir)])
        assert secret not in spy.stdout, "another host user read a session's file"
        assert "read refused" in spy.stdout or spy.stdout == "", spy.stdout
        assert not (state_dir / "sessions" / session_id / "tmp" / "planted").exists(), "a host user wrote into /tmp"
