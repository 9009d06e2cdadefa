"""Which conversation a tool call belongs to (see docs/conversations.md).

| era / transport                  | conversation                         | ends                      |
|----------------------------------|--------------------------------------|---------------------------|
| 2025-11-25 handshake, stdio      | the connection (= server process)    | stdin EOF, SIGTERM/SIGINT |
| 2025-11-25 handshake, HTTP       | the MCP session (Mcp-Session-Id)     | DELETE, client gone (*),  |
|                                  |                                      | idle timeout              |
| 2026-07-28 sessionless, any      | the principal (or anonymous)         | idle lease, shutdown      |

(*) client_presence.py: a client that held a stream and has had nothing open for the grace.

A handshake-era connection is one `mcp.server.connection.Connection` for its whole life, so the
conversation id is kept in `Connection.state` and its release is pushed on `Connection.exit_stack`,
which the SDK unwinds when the connection ends, however it ends. A 2026-07-28 connection is built
afresh for every request, so there the principal is the only stable identity.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.connection import Connection
from mcp.server.context import ServerRequestContext
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from agentbay_mcp.services.sessions.registry import ANONYMOUS

_STATE_KEY = "agentbay_mcp.server.conversation"


@dataclass(frozen=True)
class Caller:
    """Who is calling: the principal, its scopes (None: unauthenticated, no limits) and the conversation."""

    principal: str
    scopes: tuple[str, ...] | None
    conversation: str


def connection_of(request: ServerRequestContext[Any, Any]) -> Connection:
    """The per-client `Connection` behind a request (a tool's `ctx.request_context`).

    One of the two private SDK attributes agentbay-mcp uses (the other: `MCPServer._lowlevel_server`
    in serve.py, to run stdio on our own cancellable streams): mcp 2.x hands tools a new
    `ServerSession` per request and keeps the connection in `ServerSession._connection`.
    `tests/unit/test_sdk_contract.py` fails loudly if either ever changes.
    """
    connection = getattr(request.session, "_connection", None)
    if not isinstance(connection, Connection):
        raise RuntimeError(
            "mcp SDK internals changed: ServerSession._connection is no longer a Connection; "
            "update agentbay_mcp/conversation.py:connection_of"
        )
    return connection


def principal_and_scopes() -> tuple[str, tuple[str, ...] | None]:
    """The authenticated principal of this request and its scopes; `anonymous` with no limits without auth.

    Our token verifiers put the principal name in `AccessToken.subject` (the SDK's own session
    ownership also compares it, with the client id and issuer).
    """
    token = get_access_token()
    if token is None:
        return ANONYMOUS, None
    return token.subject or token.client_id, tuple(token.scopes)


def resolve_caller(request: ServerRequestContext[Any, Any], on_end: Callable[[str], Awaitable[object]]) -> Caller:
    """The caller of this request; `on_end(conversation)` runs once when a connection conversation ends."""
    principal, scopes = principal_and_scopes()
    connection = connection_of(request)
    if connection.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return Caller(principal, scopes, f"principal:{principal}")
    conversation = connection.state.get(_STATE_KEY)
    if not isinstance(conversation, str):
        kind = "http" if connection.session_id is not None else "conn"
        conversation = f"{kind}:{secrets.token_hex(8)}"
        connection.state[_STATE_KEY] = conversation
        connection.exit_stack.push_async_callback(on_end, conversation)
    return Caller(principal, scopes, conversation)
