"""Attacks on a session's desktop (Xvfb + openbox, started by the agent inside the sandbox).

Every test drives real MCP tools on real sandboxes, X servers and clients (python-xlib inside the
sandbox, raw X11 connection setups from the host) and checks the effect: who can reach a session's
X server, and what a hostile X client can do to the desktop tools. Each test fails if the protection
it checks were missing. Abuse by the session's own commands (huge titles, many windows, the
display's files tampered with) is in test_desktop_tampering.py.
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path

import anyio
import pytest

from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import call, call_error
from agentbay_mcp.testing.desktop import new_desktop_session, start_xterm, window_titles
from agentbay_mcp.testing.host import processes_in, sandbox_namespace
from tests.security import desktop_attacks as attacks

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]


# 1. Another session cannot reach a session's X server ------------------------------------------


@pytest.mark.parametrize(
    ("policy", "ask"),
    [("off", False), ("on-request", True), ("on", False)],
    ids=["no-network", "network-on-request", "network-on"],
)
async def test_another_session_cannot_reach_the_x_server(state_dir: Path, policy: str, ask: bool) -> None:
    async with attacks.serve(Settings(state_dir=state_dir, network=policy)) as client:
        created = [
            await call(client, "create_session", image_id="linux_latest", **({"network": True} if ask else {}))
            for _ in range(2)
        ]
        session_a, session_b = (str(c["session_id"]) for c in created)
        assert [c["network"] for c in created] == ["off" if policy == "off" else "on"] * 2
        # Names and ports B will try. Every session has a network namespace of its own, network or not:
        # the host's loopback and abstract unix sockets (a host X server on :0) are out of its reach too.
        by_name = [("unix", "@" + attacks.SOCKET), ("tcp", "127.0.0.1:6000")]
        assert await window_titles(client, session_a) == []  # A's desktop runs
        cookie = attacks.read_cookie(state_dir, session_a)

        # Structurally: A's X server listens on its socket file in A's /tmp only (no TCP, no abstract name).
        xvfb = attacks.host_pid_of(state_dir, session_a, "Xvfb")
        assert attacks.listening_sockets(xvfb) == [attacks.SOCKET]

        # The probe works: A itself reaches its own display with the cookie (and is refused without).
        own = await attacks.probe_from(client, session_a, cookie, [("unix", attacks.SOCKET)])
        assert own == {attacks.SOCKET: "reply:1"}
        assert (await attacks.probe_from(client, session_a, b"", [("unix", attacks.SOCKET)]))[attacks.SOCKET] in (
            "reply:0",
            "reply:2",
        )

        # B, even holding A's cookie, finds nothing: not by name, port or path.
        host_path = attacks.host_socket(state_dir, session_a)
        by_path = [("unix", attacks.SOCKET), ("unix", host_path), ("unix", f"/proc/{xvfb}/root{attacks.SOCKET}")]
        targets = by_name + by_path
        with attacks.host_listener("unix") as abstract_control, attacks.host_listener("tcp") as tcp_control:
            controls = [("unix", abstract_control), ("tcp", tcp_control)]
            found = await attacks.probe_from(client, session_b, cookie, targets + controls)
        expected = {t[1]: ("ENOENT" if t[1].startswith("/") else "ECONNREFUSED") for t in targets}
        # The controls: the host's own listeners (abstract unix, loopback TCP), out of reach with network too.
        expected[abstract_control] = "ECONNREFUSED"
        expected[tcp_control] = "ECONNREFUSED"
        assert found == expected

        # Every socket file B can see anywhere: none is A's X server.
        listed = await attacks.run(
            client, session_b, "find / -path /proc -prune -o -path /sys -prune -o -type s -print 2>/dev/null"
        )
        sockets = [line for line in listed["stdout"].splitlines() if line]
        assert sockets == []  # B has no desktop of its own yet
        assert await window_titles(client, session_b) == []  # now it has
        found = await attacks.probe_from(client, session_b, cookie, [("unix", attacks.SOCKET)])
        assert found == {attacks.SOCKET: "reply:0"}  # B's own X server: A's cookie means nothing there

        # A's desktop is unharmed.
        await start_xterm(client, session_a, "still-a")
        assert await window_titles(client, session_b) == []


# 2. A host process without the cookie -----------------------------------------------------------


async def test_host_process_without_the_cookie_is_refused(settings: Settings, state_dir: Path) -> None:
    async with attacks.serve(settings) as client:
        session_id = await new_desktop_session(client)
        other = await new_desktop_session(client)
        await window_titles(client, session_id)
        await window_titles(client, other)
        path = attacks.host_socket(state_dir, session_id)
        cookie_file = attacks.session_tmp(state_dir, session_id) / attacks.XAUTHORITY.removeprefix("/tmp/")
        assert cookie_file.stat().st_mode & 0o077 == 0  # only the sandbox user may read the cookie
        cookie = attacks.read_cookie(state_dir, session_id)

        assert attacks.probe_x("unix", path, "") in ("reply:0", "reply:2")
        assert attacks.probe_x("unix", path, secrets.token_hex(16)) in ("reply:0", "reply:2")
        assert attacks.probe_x("unix", path, attacks.read_cookie(state_dir, other).hex()) in ("reply:0", "reply:2")
        assert attacks.probe_x("unix", path, cookie.hex()) == "reply:1"  # the test can tell the difference
        assert await window_titles(client, session_id) == []


# 3. The session's own processes attacking the desktop -------------------------------------------


@pytest.mark.parametrize("victim", ["Xvfb", "openbox"])
async def test_killing_the_display_from_a_command_gives_a_fresh_desktop(
    settings: Settings, state_dir: Path, victim: str
) -> None:
    async with attacks.serve(settings) as client:
        session_id = await new_desktop_session(client)
        await start_xterm(client, session_id, "before")
        killed = await attacks.run(client, session_id, attacks.kill_9(victim) + "; pgrep -x -c " + victim)
        assert killed["stdout"] == "0\n", killed
        with anyio.fail_after(30):
            windows = await attacks.desktop_answers(client, session_id)
        titles = [w["title"] for w in windows]
        # A dead X server takes its clients along; a dead window manager may or may not (a restart of both).
        assert titles == [] if victim == "Xvfb" else titles in ([], ["before"]), titles
        await start_xterm(client, session_id, "after")
        assert await window_titles(client, session_id) == [*titles, "after"]
        running = processes_in(sandbox_namespace(state_dir, session_id))
        assert running.count("Xvfb") == 1, running
        assert running.count("openbox") == 1, running


async def test_stop_app_never_stops_the_desktop_or_the_agent(settings: Settings, state_dir: Path) -> None:
    async with attacks.serve(settings) as client:
        session_id = await new_desktop_session(client)
        await start_xterm(client, session_id, "survivor")
        namespace = sandbox_namespace(state_dir, session_id)
        pids = json.loads(
            (
                await attacks.run(
                    client,
                    session_id,
                    attacks.python(
                        "import json, subprocess; print(json.dumps({n: int(subprocess.check_output(['pgrep', '-x', n]))"
                        " for n in ('Xvfb', 'openbox')}))"
                    ),
                )
            )["stdout"]
        )
        display = {attacks.host_pid_of(state_dir, session_id, n) for n in ("Xvfb", "openbox")}
        # A python3 of the user's own, which pname="python3" may stop (the agent is a python3 too).
        started = await call(
            client,
            "start_app",
            session_id=session_id,
            start_cmd="exec " + attacks.python("import time; time.sleep(60)"),
            wait_ms=0,
        )
        users_python = started["processes"][0]["pid"]
        comm = f"cat /proc/{users_python}/comm"
        with anyio.fail_after(10):
            while (await attacks.run(client, session_id, comm))["stdout"] != "python3\n":  # noqa: ASYNC110 - in the sandbox
                await anyio.sleep(0.05)

        for pname in ("Xvfb", "openbox"):
            message = await call_error(client, "stop_app", session_id=session_id, pname=pname)
            assert "no process named" in message
        stopped = await call(client, "stop_app", session_id=session_id, pname="python3")
        assert [p["pid"] for p in stopped["stopped"]] == [users_python]
        for pid in (1, pids["Xvfb"], pids["openbox"]):
            assert "cannot be stopped" in await call_error(client, "stop_app", session_id=session_id, pid=pid)

        assert await window_titles(client, session_id) == ["survivor"]
        assert {attacks.host_pid_of(state_dir, session_id, n) for n in ("Xvfb", "openbox")} == display
        assert "python3" in processes_in(namespace)  # the agent
        assert (await attacks.run(client, session_id, "echo alive"))["stdout"] == "alive\n"


# 4. A hostile X client grabs the server ---------------------------------------------------------

GRAB = "d.grab_server(); d.sync(); print('grabbed', flush=True); import time; time.sleep(120)"


async def test_a_grabbed_x_server_times_out_and_recovers(settings: Settings) -> None:
    async with attacks.serve(settings) as client:
        session_id = await new_desktop_session(client)
        other = await new_desktop_session(client)
        await window_titles(client, session_id)
        await start_xterm(client, other, "other")
        grabber = await attacks.start_background(client, session_id, attacks.x_client(GRAB))
        await attacks.wait_for_output(client, session_id, grabber, "grabbed")

        began = time.monotonic()
        with anyio.fail_after(15):
            async with anyio.create_task_group() as group:

                async def other_session() -> None:
                    assert await window_titles(client, other) == ["other"]
                    assert time.monotonic() - began < 3

                group.start_soon(other_session)
                message = await call_error(client, "list_windows", session_id=session_id)
        assert "did not answer" in message
        assert time.monotonic() - began < 10

        await call(client, "kill_process", session_id=session_id, process_id=grabber, signal="KILL")
        with anyio.fail_after(30):
            assert await attacks.desktop_answers(client, session_id) == []
        await start_xterm(client, session_id, "after-grab")


async def test_a_timeout_keeps_the_sessions_apps(settings: Settings) -> None:
    async with attacks.serve(settings) as client:
        session_id = await new_desktop_session(client)
        await start_xterm(client, session_id, "precious")
        grabber = await attacks.start_background(client, session_id, attacks.x_client(GRAB))
        await attacks.wait_for_output(client, session_id, grabber, "grabbed")
        with anyio.fail_after(15):
            assert "did not answer" in await call_error(client, "list_windows", session_id=session_id)
        await call(client, "kill_process", session_id=session_id, process_id=grabber, signal="KILL")
        with anyio.fail_after(30):
            titles = [w["title"] for w in await attacks.desktop_answers(client, session_id)]
        assert titles == ["precious"]
