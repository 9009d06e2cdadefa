"""Calling tools through an MCP client in tests: results that must succeed or fail, and the eras."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from mcp import Client
from mcp_types import CallToolResult

from agentbay_mcp.testing.answers import unpack

#: The two protocol eras every in-memory tool test runs in.
ERAS = ("legacy", "2026-07-28")
#: A handshake-era initialize request, for tests that speak JSON-RPC themselves.
INITIALIZE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
}


def leaves(error: BaseException) -> Iterator[BaseException]:
    """The exceptions inside (nested) exception groups."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from leaves(inner)
    else:
        yield error


@contextlib.contextmanager
def unwrapped() -> Iterator[None]:
    """Re-raise a failed assertion that a client's task group wrapped in an exception group."""
    try:
        yield
    except BaseExceptionGroup as group:
        found = list(leaves(group))
        if len(found) == 1 and isinstance(found[0], AssertionError):
            raise found[0] from None
        raise


def structured(result: CallToolResult) -> dict[str, Any]:
    """The structured result of a successful tool call (fails the test on a tool error)."""
    assert not result.is_error, error_text(result)
    assert result.structured_content is not None
    return dict(result.structured_content)


def error_text(result: CallToolResult) -> str:
    """The text of a tool result (the message of a tool error)."""
    return " ".join(getattr(block, "text", "") for block in result.content)


async def call(client: Client, tool: str, /, **arguments: Any) -> dict[str, Any]:
    """Call a tool that must succeed; returns its structured output with its text-only fields read back
    from the text (testing/answers.py)."""
    return unpack(tool, await client.call_tool(tool, arguments))


async def call_error(client: Client, tool: str, /, **arguments: Any) -> str:
    """Call a tool that must fail with a tool error; returns the message."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, f"{tool} unexpectedly succeeded: {result.structured_content}"
    return error_text(result)
