"""Test support for the agentbay backend: the emulator in-process, and a fault-injecting transport."""

from __future__ import annotations

import collections
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx2

from agentbay_mcp.backends.agentbay import AgentBayBackend, AgentBayClient, RetryPolicy
from agentbay_mcp.emulator import EmulatorServer
from agentbay_mcp.settings import Settings

API_KEY = "test-key-5f0c2a9e1b7d4c3a"
#: Retries fast enough for tests, the same number of attempts as production.
FAST_RETRY = RetryPolicy(attempts=4, base_seconds=0.001, max_seconds=0.01)

FAULTS = ("connect", "timeout", "500", "throttle", "malformed", "nested", "truncated", "drop")
#: Replies that are not the API's JSON: an HTML error page, and JSON nested past the decoder's recursion bound.
_GARBAGE = {"malformed": b"<html>gateway error</html>", "nested": b"[" * 100_000}


def action_of(request: httpx2.Request) -> str:
    """The AgentBay action of a request (`callTool` for the direct LinkUrl path)."""
    if request.url.path.endswith("/callTool"):
        return "callTool"
    return str(request.url.params.get("Action", ""))


class FaultTransport(httpx2.AsyncBaseTransport):
    """Forwards to the emulator, except that planned faults replace or spoil the answers.

    `plan[action]` is a list of faults consumed one per request of that action. "connect" fails
    before anything is sent; "drop" and "timeout" fail *after* the emulator did the work (the
    reply is lost), the worst case for a create. `spoil` plans hostile answers instead: the emulator
    does the work and its reply's `Data` is replaced.
    """

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.plan: dict[str, list[str]] = collections.defaultdict(list)
        self.seen: collections.Counter[str] = collections.Counter()
        #: action -> the read timeouts (seconds) its requests were sent with, in order
        self.read_timeouts: dict[str, list[float]] = collections.defaultdict(list)
        #: action -> replacement `Data` for its next successful replies, one per request
        self.spoiled: dict[str, list[Any]] = collections.defaultdict(list)

    def spoil(self, action: str, data: Any) -> None:
        """Replace the `Data` of the next successful reply to `action` with `data` (a hostile cloud)."""
        self.spoiled[action].append(data)

    def fail(self, action: str, fault: str, times: int = 1) -> None:
        """Plan `times` faults for the next requests of `action`."""
        self.plan[action].extend([fault] * times)

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        action = action_of(request)
        self.seen[action] += 1
        self.read_timeouts[action].append(request.extensions.get("timeout", {}).get("read") or 0.0)
        fault = self.plan[action].pop(0) if self.plan[action] else None
        if fault == "connect":
            raise httpx2.ConnectError("connection refused", request=request)
        if fault == "500":
            body = {"RequestId": "RID-500", "Success": False, "Code": "InternalError", "Message": "boom"}
            return httpx2.Response(500, json=body)
        if fault == "throttle":
            body = {"RequestId": "RID-429", "Success": False, "Code": "Throttling.User", "Message": "slow down"}
            return httpx2.Response(400, json=body)
        if fault in _GARBAGE:
            return httpx2.Response(200, content=_GARBAGE[fault])
        response = await self.inner.handle_async_request(request)
        content = await response.aread()
        if fault == "drop":
            raise httpx2.RemoteProtocolError("peer closed connection without response", request=request)
        if fault == "timeout":
            raise httpx2.ReadTimeout("timed out", request=request)
        if fault == "truncated":
            return httpx2.Response(response.status_code, content=content[: len(content) // 2])
        if self.spoiled[action] and response.status_code == 200:
            body = json.loads(content)
            body["Data"] = self.spoiled[action].pop(0)
            return httpx2.Response(200, json=body)
        return httpx2.Response(response.status_code, headers=response.headers, content=content)

    async def aclose(self) -> None:
        await self.inner.aclose()


@contextlib.asynccontextmanager
async def emulator(state_dir: Path, *, link_url: bool = True) -> AsyncIterator[str]:
    """The emulator on a free loopback port, its sessions under `state_dir`; yields its URL."""
    async with EmulatorServer(state_dir, API_KEY, link_url=link_url).running() as url:
        yield url


def agentbay_backend(
    http: httpx2.AsyncClient,
    url: str,
    state_dir: Path,
    *,
    api_key: str = API_KEY,
    instance: str = "test-instance",
    server_id: str | None = None,
    delete_wait_seconds: float = 10.0,
) -> AgentBayBackend:
    """An agentbay backend pointed at the emulator at `url`."""
    client = AgentBayClient(http, api_key=api_key, endpoint=url, timeout_ms=20000, retry=FAST_RETRY)
    return AgentBayBackend(
        client,
        state_dir=state_dir,
        instance=instance,
        delete_wait_seconds=delete_wait_seconds,
        server_id=server_id,
    )


async def raw_call(url: str, action: str, **form: str) -> dict[str, object]:
    """One API call straight at the emulator (playing the cloud doing things behind our back)."""
    async with httpx2.AsyncClient() as http:
        response = await http.post(
            url + "/",
            params={"Action": action, "Version": "2025-05-06", "Format": "json"},
            data={"Authorization": f"Bearer {API_KEY}", **form},
        )
    body = response.json()
    assert isinstance(body, dict)
    return body


async def live_session_ids(url: str) -> list[str]:
    """Every running session the emulator has."""
    body = await raw_call(url, "ListSession", Labels=json.dumps({}), MaxResults="100")
    data = body.get("Data")
    assert isinstance(data, list)
    return [str(item["SessionId"]) for item in data]


def agentbay_settings(state_dir: Path, url: str, *, instance: str = "mcp-test", **extra: Any) -> Settings:
    """Server settings for the agentbay backend pointed at the emulator at `url`."""
    return Settings(
        state_dir=state_dir / "client",
        backend="agentbay",
        agentbay_endpoint=url,
        agentbay_api_key=API_KEY,
        agentbay_instance=instance,
        **extra,
    )


def serve_once(port: int, directory: str) -> str:
    """A shell command serving `directory` over HTTP on `port` (all addresses) for one request, then ending.

    Foreground on purpose: whatever a command leaves running in the background dies with it in the
    emulator's local sandboxes, so a test runs this beside its other calls and the GET ends it.
    """
    code = (
        "import functools, http.server as s; "
        f"h = functools.partial(s.SimpleHTTPRequestHandler, directory={directory!r}); "
        f"s.HTTPServer(('0.0.0.0', {port}), h).handle_request()"
    )
    return f'python3 -c "{code}"'


async def get_when_served(url: str, *, timeout: float = 20.0) -> httpx2.Response:
    """GET `url`, again until something answers (the server in the session may still be starting)."""
    async with httpx2.AsyncClient(timeout=5.0) as http:
        with anyio.fail_after(timeout):
            while True:
                try:
                    return await http.get(url)
                except httpx2.TransportError:
                    await anyio.sleep(0.1)
