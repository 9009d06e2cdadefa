"""Conversations over real streamable HTTP: a `python -m agentbay_mcp --transport http` subprocess.

What is pinned here (see agentbay_mcp/conversation.py):

* handshake era (2025-11-25): the conversation is the MCP session (`Mcp-Session-Id`); it ends on
  HTTP DELETE or after `--http-idle-timeout` without a request, and its sessions are deleted then;
* sessionless era (2026-07-28): the conversation is the principal (`anonymous` without auth); it
  survives client disconnects, and only the idle lease (`--idle-lease`) or shutdown deletes sessions;
* the two eras, and different MCP sessions, never see each other's sessions;
* SIGTERM deletes every session of both eras and exits 0 promptly.
"""

from __future__ import annotations

import signal
import time
from functools import partial
from pathlib import Path

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agentbay_mcp.testing.calls import call, call_error
from agentbay_mcp.testing.http_clients import (
    LEGACY_VERSION,
    assert_not_visible,
    gone,
    legacy,
    listed_ids,
    post_tools_list,
    raw_legacy_session,
    sessionless,
)
from agentbay_mcp.testing.servers import HttpServer, session_dirs
from agentbay_mcp.testing.waiting import eventually

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

MODERN_VERSION = "2026-07-28"


def on_disk(state_dir: Path, *session_ids: str) -> bool:
    present = set(session_dirs(state_dir))
    return all(sid in present for sid in session_ids)


# 1. Handshake-era isolation -------------------------------------------------------------------


async def test_two_legacy_clients_have_isolated_registries(http_server: HttpServer, state_dir: Path) -> None:
    async with legacy(http_server) as a, legacy(http_server) as b:
        assert a.protocol_version == LEGACY_VERSION
        assert b.protocol_version == LEGACY_VERSION
        a_ids = [(await call(a, "create_session", labels={"owner": "a", "n": str(n)}))["session_id"] for n in range(2)]
        assert session_dirs(state_dir) == sorted(a_ids)
        assert sorted(await listed_ids(a)) == sorted(a_ids)

        assert await listed_ids(b) == []
        assert (await call(b, "list_sessions", labels={"owner": "a"}))["total_count"] == 0
        for session_id in a_ids:
            await assert_not_visible(b, session_id)

        # B's failed delete and relabel did nothing to A's sessions.
        assert session_dirs(state_dir) == sorted(a_ids)
        for n, session_id in enumerate(a_ids):
            fetched = await call(a, "get_session", session_id=session_id)
            assert fetched["labels"] == {"owner": "a", "n": str(n)}

        # B's own sessions are just as invisible to A.
        b_id = (await call(b, "create_session"))["session_id"]
        await assert_not_visible(a, b_id)
        assert sorted(await listed_ids(a)) == sorted(a_ids)
        assert await listed_ids(b) == [b_id]


# 2. DELETE ends a handshake-era conversation --------------------------------------------------


async def test_delete_releases_only_that_clients_sessions(http_server: HttpServer, state_dir: Path) -> None:
    """`Client(url)` leaves through `streamable_http_client(terminate_on_close=True)`, which sends
    HTTP DELETE with its Mcp-Session-Id; the server must then delete exactly that client's sessions."""
    async with legacy(http_server) as staying:
        kept = [(await call(staying, "create_session"))["session_id"] for _ in range(2)]
        async with legacy(http_server) as leaving:
            released = [(await call(leaving, "create_session"))["session_id"] for _ in range(3)]
            assert session_dirs(state_dir) == sorted(kept + released)

        assert await eventually(lambda: gone(state_dir, *released), timeout=5), session_dirs(state_dir)
        assert session_dirs(state_dir) == sorted(kept)
        assert sorted(await listed_ids(staying)) == sorted(kept)
        for session_id in kept:
            assert (await call(staying, "get_session", session_id=session_id))["status"] == "RUNNING"
        # The staying client still works normally.
        extra = (await call(staying, "create_session"))["session_id"]
        assert on_disk(state_dir, extra)

    assert await eventually(lambda: session_dirs(state_dir) == [], timeout=5), session_dirs(state_dir)


async def test_disconnect_without_delete_keeps_sessions_until_explicit_delete(
    http_server: HttpServer, state_dir: Path
) -> None:
    """Closing the connections does not end a handshake-era conversation at once: DELETE does, or the
    disconnect grace (60 s by default; test_http_client_gone.py), or the idle timeout. This is the
    counter-check showing the release above comes from the DELETE."""
    seen_ids: list[str] = []

    async def remember_session_id(response: httpx2.Response) -> None:
        if "mcp-session-id" in response.headers and not seen_ids:
            seen_ids.append(response.headers["mcp-session-id"])

    hooks = {"response": [remember_session_id]}
    async with httpx2.AsyncClient(timeout=10, headers=http_server.headers, event_hooks=hooks) as http:
        transport = streamable_http_client(http_server.url, http_client=http, terminate_on_close=False)
        async with Client(transport, mode="legacy") as client:
            ids = [(await call(client, "create_session"))["session_id"] for _ in range(2)]
    (mcp_session_id,) = seen_ids
    await anyio.sleep(0.5)
    assert session_dirs(state_dir) == sorted(ids)

    async with httpx2.AsyncClient(timeout=10, headers=http_server.headers) as http:
        response = await http.delete(
            http_server.url,
            headers={"Mcp-Session-Id": mcp_session_id, "mcp-protocol-version": LEGACY_VERSION},
        )
        assert response.status_code in (200, 204), (response.status_code, response.text)
        assert await eventually(lambda: gone(state_dir, *ids), timeout=5), session_dirs(state_dir)
        # The MCP session is over: its id now answers 404.
        again = await post_tools_list(http, http_server.url, mcp_session_id)
        assert again.status_code == 404


# 3. HTTP idle timeout -------------------------------------------------------------------------


async def test_http_idle_timeout_releases_abandoned_sessions(state_dir: Path) -> None:
    server = HttpServer(state_dir, "--http-idle-timeout", "1", start_token=True)
    try:
        async with raw_legacy_session(server.url, server.headers) as raw:
            ids = [(await raw.call_tool("create_session"))["session_id"] for _ in range(2)]
            assert session_dirs(state_dir) == sorted(ids)
            listed = await raw.call_tool("list_sessions")
            assert sorted(s["session_id"] for s in listed["sessions"]) == sorted(ids)
            abandoned = raw.session_id
            assert abandoned is not None
        # The idle lease is the default 30 minutes: only the HTTP idle timeout can delete these.
        assert await eventually(lambda: gone(state_dir, *ids), timeout=5), session_dirs(state_dir)
        assert session_dirs(state_dir) == []

        # The abandoned MCP session is gone too, and the server still serves new ones.
        async with httpx2.AsyncClient(timeout=10, headers=server.headers) as http:
            response = await post_tools_list(http, server.url, abandoned)
            assert response.status_code == 404
        async with legacy(server) as client:
            assert await listed_ids(client) == []
            fresh = (await call(client, "create_session"))["session_id"]
            assert session_dirs(state_dir) == [fresh]
    finally:
        server.stop()


async def test_http_idle_timeout_spares_active_sessions(state_dir: Path) -> None:
    """A session that keeps sending requests is never idle, however long it lives."""
    server = HttpServer(state_dir, "--http-idle-timeout", "1", start_token=True)
    try:
        async with raw_legacy_session(server.url, server.headers) as raw:
            session_id = (await raw.call_tool("create_session"))["session_id"]
            deadline = time.monotonic() + 2.5
            while time.monotonic() < deadline:
                await anyio.sleep(0.3)
                assert (await raw.call_tool("get_session", session_id=session_id))["session_id"] == session_id
            assert session_dirs(state_dir) == [session_id]
        assert await eventually(lambda: gone(state_dir, session_id), timeout=5), session_dirs(state_dir)
    finally:
        server.stop()


# 4. Sessionless era ---------------------------------------------------------------------------


async def test_sessionless_client_full_round_trip(http_server: HttpServer, state_dir: Path) -> None:
    async with sessionless(http_server) as client:
        assert client.protocol_version == MODERN_VERSION
        created = await call(client, "create_session", image_id="code_latest", labels={"p": "demo"})
        session_id = created["session_id"]
        assert created["image_id"] == "code_latest"
        assert session_dirs(state_dir) == [session_id]
        assert await listed_ids(client) == [session_id]
        assert (await call(client, "list_sessions", labels={"p": "demo"}))["total_count"] == 1
        assert (await call(client, "list_sessions", labels={"p": "other"}))["total_count"] == 0

        relabelled = await call(client, "set_session_labels", session_id=session_id, labels={"q": "1"})
        assert relabelled == {"session_id": session_id, "labels": {"q": "1"}}
        assert (await call(client, "get_session_labels", session_id=session_id))["labels"] == {"q": "1"}
        assert (await call(client, "get_session", session_id=session_id))["labels"] == {"q": "1"}

        deleted = await call(client, "delete_session", session_id=session_id)
        assert deleted["status"] == "DELETED"
        assert session_dirs(state_dir) == []
        assert "not found" in await call_error(client, "get_session", session_id=session_id)
        assert await listed_ids(client) == []


async def test_sessionless_sessions_outlive_the_client(http_server: HttpServer, state_dir: Path) -> None:
    """In the sessionless era the conversation is the principal, not the connection: a client
    that disconnects leaves its sessions in place for the next request of the same principal."""
    async with sessionless(http_server) as first:
        ids = [(await call(first, "create_session", labels={"k": "v"}))["session_id"] for _ in range(2)]
    await anyio.sleep(0.5)
    assert session_dirs(state_dir) == sorted(ids)

    async with sessionless(http_server) as second:
        assert sorted(await listed_ids(second)) == sorted(ids)
        for session_id in ids:
            assert (await call(second, "get_session_labels", session_id=session_id))["labels"] == {"k": "v"}
            await call(second, "delete_session", session_id=session_id)
    assert session_dirs(state_dir) == []


async def test_sessionless_anonymous_clients_share_sessions(http_server: HttpServer, state_dir: Path) -> None:
    """Without authentication every sessionless client is the same principal, `anonymous`, so two
    such clients see and may manage each other's sessions. This is the designed behaviour (the
    principal is the only stable identity in the 2026-07-28 era); isolating them needs auth."""
    async with sessionless(http_server) as x, sessionless(http_server) as y:
        from_x = (await call(x, "create_session", labels={"by": "x"}))["session_id"]
        from_y = (await call(y, "create_session", labels={"by": "y"}))["session_id"]
        assert await listed_ids(x) == await listed_ids(y)
        assert sorted(await listed_ids(x)) == sorted([from_x, from_y])

        await call(y, "set_session_labels", session_id=from_x, labels={"by": "y"})
        assert (await call(x, "get_session_labels", session_id=from_x))["labels"] == {"by": "y"}
        await call(x, "delete_session", session_id=from_y)
        assert session_dirs(state_dir) == [from_x]
        assert "not found" in await call_error(y, "get_session", session_id=from_y)
        assert (await call(y, "get_session", session_id=from_x))["session_id"] == from_x


async def test_sessionless_idle_lease_expires_unused_sessions_only(state_dir: Path) -> None:
    server = HttpServer(state_dir, "--idle-lease", "1", start_token=True)
    try:
        async with sessionless(server) as client:
            unused = (await call(client, "create_session"))["session_id"]
            busy = (await call(client, "create_session"))["session_id"]
            started = time.monotonic()
            keeper_errors: list[str] = []

            async def keep_busy(stop: anyio.Event) -> None:
                while not stop.is_set():
                    result = await client.call_tool("get_session", {"session_id": busy})
                    if result.is_error:
                        keeper_errors.append(str(result.content))
                        return
                    with anyio.move_on_after(0.3):
                        await stop.wait()

            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(keep_busy, stop)
                assert await eventually(lambda: gone(state_dir, unused), timeout=5), session_dirs(state_dir)
                # Past twice the lease, the session in use is still there.
                await anyio.sleep(max(0.0, started + 2.5 - time.monotonic()))
                assert on_disk(state_dir, busy)
                stop.set()
            assert keeper_errors == []
            assert time.monotonic() - started >= 2.5
            assert (await call(client, "get_session", session_id=busy))["session_id"] == busy
            assert await listed_ids(client) == [busy]
            assert "not found" in await call_error(client, "get_session", session_id=unused)

            # Left alone, the busy session expires as well.
            assert await eventually(lambda: gone(state_dir, busy), timeout=5), session_dirs(state_dir)
            with anyio.fail_after(10):  # the registry lets go once the whole delete is done
                while await listed_ids(client):  # noqa: ASYNC110 - polling a remote listing
                    await anyio.sleep(0.05)
    finally:
        server.stop()


# 5. Shutdown ----------------------------------------------------------------------------------


async def test_sigterm_releases_sessions_of_both_eras_promptly(state_dir: Path) -> None:
    server = HttpServer(state_dir, start_token=True)
    try:
        async with legacy(server) as old, sessionless(server) as new:
            ids = [(await call(old, "create_session"))["session_id"] for _ in range(2)]
            ids += [(await call(new, "create_session"))["session_id"] for _ in range(2)]
            assert session_dirs(state_dir) == sorted(ids)

            started = time.monotonic()
            # stop() sends SIGTERM and raises TimeoutExpired if the server does not exit in time.
            await anyio.to_thread.run_sync(partial(server.stop, timeout=5.0))
            assert time.monotonic() - started < 5.0
            assert server.process.poll() is not None
            assert session_dirs(state_dir) == []
            # No staging or trash litter either, and the server gave up its lock.
            assert list((state_dir / "sessions").iterdir()) == []
            assert list((state_dir / "servers").glob("*.lock")) == []
    finally:
        server.stop()
    log = server.log.read_text()
    assert "shutting down: releasing" in log or "conversation ended: releasing" in log, log
    assert "Traceback" not in log, log


@pytest.mark.parametrize(
    "signum",
    [
        pytest.param(signal.SIGTERM, id="SIGTERM"),
        pytest.param(signal.SIGINT, id="SIGINT"),
    ],
)
async def test_stop_signal_exits_zero(state_dir: Path, signum: signal.Signals) -> None:
    server = HttpServer(state_dir, start_token=True)
    try:
        async with legacy(server) as old, sessionless(server) as new:
            await call(old, "create_session")
            await call(new, "create_session")
            started = time.monotonic()
            server.process.send_signal(signum)
            code = await anyio.to_thread.run_sync(partial(server.process.wait, timeout=5.0))
            assert time.monotonic() - started < 5.0
            assert session_dirs(state_dir) == []
    finally:
        server.stop()
    assert code == 0, server.log.read_text()


# 6. The two eras on one server ----------------------------------------------------------------


async def test_legacy_and_sessionless_eras_are_isolated(http_server: HttpServer, state_dir: Path) -> None:
    async with legacy(http_server) as old, sessionless(http_server) as new:
        assert old.protocol_version == LEGACY_VERSION
        assert new.protocol_version == MODERN_VERSION
        old_id = (await call(old, "create_session", labels={"era": "legacy"}))["session_id"]
        new_id = (await call(new, "create_session", labels={"era": "modern"}))["session_id"]
        assert session_dirs(state_dir) == sorted([old_id, new_id])

        assert await listed_ids(old) == [old_id]
        assert await listed_ids(new) == [new_id]
        await assert_not_visible(old, new_id)
        await assert_not_visible(new, old_id)

        assert session_dirs(state_dir) == sorted([old_id, new_id])
        assert (await call(old, "get_session", session_id=old_id))["labels"] == {"era": "legacy"}
        assert (await call(new, "get_session", session_id=new_id))["labels"] == {"era": "modern"}

    # The legacy client's DELETE releases its session only; the principal's session stays.
    assert await eventually(lambda: gone(state_dir, old_id), timeout=5), session_dirs(state_dir)
    assert session_dirs(state_dir) == [new_id]
