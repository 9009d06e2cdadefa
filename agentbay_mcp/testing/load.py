"""A conversation under load, on a real server subprocess: N sessions, each with a background process,
a command in flight and (linux_latest) a desktop with an xterm. Shared by the endings tests and
bench/bench_sessions.py, so what the benchmark times is what the tests check.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agentbay_mcp.testing.answers import unpack
from agentbay_mcp.testing.servers import HttpServer, exit_code, spawn_stdio

#: A command that stays in flight for the whole test.
IN_FLIGHT = "sleep 600"


def load_calls(session_id: str, desktop: bool) -> list[tuple[str, dict[str, Any]]]:
    """What each session holds: a background process and, on a desktop image, an xterm."""
    calls: list[tuple[str, dict[str, Any]]] = [("start_process", {"session_id": session_id, "command": "sleep 600"})]
    if desktop:
        calls.append(("start_app", {"session_id": session_id, "start_cmd": "xterm", "wait_ms": 20000}))
    return calls


class PipelinedStdio:
    """A stdio server subprocess with many requests in flight at once (replies matched by id)."""

    def __init__(self, state_dir: Path, *args: str) -> None:
        self.stderr_path = state_dir.parent / f"pipelined-{time.monotonic_ns()}.stderr"
        state_dir.parent.mkdir(parents=True, exist_ok=True)
        self._stderr = self.stderr_path.open("wb")
        self.process = spawn_stdio(state_dir, self._stderr, *args)
        self._next = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._arrived = threading.Condition()
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        hello = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "load", "version": "0"}}
        self.request("initialize", hello)
        self._send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    @property
    def stderr_text(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def _read(self) -> None:  # always drains stdout, so the server's writes never block on us
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with contextlib.suppress(ValueError):
                message = json.loads(line)
                if isinstance(message.get("id"), int):
                    with self._arrived:
                        self._replies[message["id"]] = message
                        self._arrived.notify_all()

    def _send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        with self._send_lock:
            self.process.stdin.write(json.dumps(message).encode() + b"\n")
            self.process.stdin.flush()

    def send_request(self, method: str, params: dict[str, Any]) -> int:
        with self._send_lock:
            self._next += 1
            request_id = self._next
        self._send({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params})
        return request_id

    def reply(self, request_id: int, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._arrived:
            while request_id not in self._replies:
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    raise TimeoutError(f"no reply to request {request_id}\n{self.stderr_text[-3000:]}")
                self._arrived.wait(min(left, 0.5))
            return self._replies.pop(request_id)

    def request(self, method: str, params: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        return self.reply(self.send_request(method, params), timeout)

    def tool(self, name: str, **arguments: Any) -> dict[str, Any]:
        return unpack(name, self.request("tools/call", {"name": name, "arguments": arguments})["result"])

    def tools_pipelined(self, calls: list[tuple[str, dict[str, Any]]], window: int = 8) -> list[dict[str, Any]]:
        """Run calls with up to `window` in flight; every one must succeed."""
        results: list[dict[str, Any]] = []
        pending: list[int] = []
        for name, arguments in calls:
            pending.append(self.send_request("tools/call", {"name": name, "arguments": arguments}))
            if len(pending) >= window:
                results.append(self._ok(pending.pop(0)))
        results += [self._ok(request_id) for request_id in pending]
        return results

    def _ok(self, request_id: int) -> dict[str, Any]:
        result = self.reply(request_id)["result"]
        assert not result.get("isError"), result
        return dict(result.get("structuredContent") or {})

    def load(self, count: int, image_id: str) -> list[str]:
        """Create `count` loaded sessions, with a command left in flight in each; returns their ids."""
        creates = [("create_session", {"image_id": image_id})] * count
        ids = [r["session_id"] for r in self.tools_pipelined(creates)]
        desktop = image_id == "linux_latest"
        self.tools_pipelined([c for sid in ids for c in load_calls(sid, desktop)], window=4 if desktop else 8)
        for session_id in ids:
            arguments = {"session_id": session_id, "command": IN_FLIGHT, "timeout_ms": 600000}
            self.send_request("tools/call", {"name": "execute_command", "arguments": arguments})
        return ids

    def wait_exit(self, timeout: float) -> int | None:
        return exit_code(self.process, timeout)

    def close_stdin(self) -> None:
        assert self.process.stdin is not None
        with contextlib.suppress(BrokenPipeError, OSError), self._send_lock:
            self.process.stdin.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        self.close_stdin()
        self._reader.join(timeout=5)
        self._stderr.close()

    def __enter__(self) -> PipelinedStdio:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.asynccontextmanager
async def loaded_http_client(
    server: HttpServer | str,
    count: int,
    image_id: str,
    *,
    in_flight: bool = True,
    mode: Literal["legacy", "auto"] = "legacy",
    hold_from_create: bool = False,
) -> AsyncIterator[list[str]]:
    """An HTTP client holding `count` loaded sessions, each with a command in flight (unless
    `in_flight` is false). The calls in flight are abandoned when the block ends.

    `mode="legacy"` is a handshake-era client (leaving the block sends DELETE); `"auto"` speaks the
    sessionless era. With `hold_from_create` each session's command starts as soon as the session
    exists, so no session is ever idle while the others load (a short idle lease cannot race the load).
    """
    url, headers = (server, {}) if isinstance(server, str) else (server.url, server.headers)
    # Every call in flight holds a connection of its own: room for all of them, the load window and the
    # GET stream (httpx's default pool of 100 would make the last calls wait, or time out). Timeouts are
    # the SDK's own defaults (create_mcp_http_client).
    limits = httpx2.Limits(max_connections=count + 16)
    timeout = httpx2.Timeout(30.0, read=300.0)
    async with (
        httpx2.AsyncClient(limits=limits, timeout=timeout, headers=headers) as http,
        Client(streamable_http_client(url, http_client=http), mode=mode) as client,
        anyio.create_task_group() as tg,
    ):
        limiter = anyio.CapacityLimiter(4 if image_id == "linux_latest" else 8)

        async def tool(name: str, **arguments: Any) -> dict[str, Any]:
            async with limiter:
                result = await client.call_tool(name, arguments)
            return unpack(name, result)

        ids: list[str] = []

        async def command(session_id: str) -> None:
            with contextlib.suppress(Exception):
                await client.call_tool(
                    "execute_command", {"session_id": session_id, "command": IN_FLIGHT, "timeout_ms": 600000}
                )

        async def create() -> None:
            session_id = (await tool("create_session", image_id=image_id))["session_id"]
            ids.append(session_id)
            if in_flight and hold_from_create:
                tg.start_soon(command, session_id)

        async with anyio.create_task_group() as creating:
            for _ in range(count):
                creating.start_soon(create)
        async with anyio.create_task_group() as loading:
            for session_id in ids:
                for name, arguments in load_calls(session_id, image_id == "linux_latest"):
                    loading.start_soon(partial(tool, name, **arguments))

        if in_flight and not hold_from_create:
            for session_id in ids:
                tg.start_soon(command, session_id)
            await anyio.sleep(0.5)  # let the commands reach their sandboxes
        try:
            yield ids
        finally:
            tg.cancel_scope.cancel()


async def _hold(url: str, count: int, image_id: str) -> None:
    async with loaded_http_client(url, count, image_id) as ids:
        print(json.dumps({"session_ids": ids}), flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    # A client that can vanish (the endings tests SIGKILL it, so it never sends DELETE):
    # `python -m agentbay_mcp.testing.load URL COUNT IMAGE` loads the sessions, prints their ids as one JSON line
    # and holds them, calls in flight and GET stream open, until killed.
    anyio.run(_hold, sys.argv[1], int(sys.argv[2]), sys.argv[3])
