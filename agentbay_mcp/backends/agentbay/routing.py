"""Which way a session's in-session tool call goes: over its LinkUrl, or through CallMcpTool.

The route follows the session's channel (sessions.py fills it from GetSession/CreateMcpSession):
a tool whose server the session lists, on a session that offers LinkUrl and a token, is called
directly (no message size limit); anything else goes through the CallMcpTool API action, whose
messages are size-limited, so file pieces are sized by the route too.
"""

from __future__ import annotations

import json
from typing import Any

from agentbay_mcp.backends.agentbay import tools
from agentbay_mcp.backends.agentbay.client import AgentBayClient
from agentbay_mcp.backends.agentbay.files import ToolCall
from agentbay_mcp.backends.agentbay.sessions import Channel, CloudSessions
from agentbay_mcp.backends.agentbay.tools import Tool
from agentbay_mcp.errors import BackendError, CloudAPIError

#: Over LinkUrl there is no message limit; pieces this big only bound one request's memory.
DIRECT_PIECE_BYTES = 8 * 1024 * 1024


class ToolRouter:
    """Calls a session's tools over the route its channel offers."""

    def __init__(self, client: AgentBayClient, sessions: CloudSessions) -> None:
        self._client = client
        self._sessions = sessions

    async def call(
        self, session_id: str, tool: Tool, args: dict[str, Any], timeout_seconds: float | None = None
    ) -> tuple[str, bool]:
        """One tool call: direct over LinkUrl when the session offers it, else CallMcpTool."""
        channel = self._sessions.channels.get(session_id)
        if channel is None:
            await self._sessions.get(session_id)  # raises SessionNotFoundError, fills the channel
            channel = self._sessions.channels.get(session_id, Channel())
        server = channel.servers.get(tool.name, "")
        try:
            if channel.direct_for(tool.name):
                data = await self._client.call_link(
                    channel.link_url,
                    channel.token,
                    server=server,
                    tool=tool.name,
                    args=args,
                    idempotent=tool.idempotent,
                    timeout_seconds=timeout_seconds,
                )
            else:
                params: dict[str, str | int | bool | None] = {
                    "SessionId": session_id,
                    "Name": tool.name,
                    "Args": json.dumps(args, ensure_ascii=False),
                    "Server": server or tool.server,
                    "AutoGenSession": False,
                }
                data = (
                    await self._client.call(
                        "CallMcpTool", params, idempotent=tool.idempotent, timeout_seconds=timeout_seconds
                    )
                ).data
        except CloudAPIError as exc:
            if 400 <= exc.status < 500:
                await self._sessions.get(session_id)  # released behind our back? then SessionNotFoundError
            raise
        try:
            return tools.result_text(data)
        except (ValueError, TypeError) as exc:
            raise BackendError(f"AgentBay sent a malformed {tool.name} result (not an MCP tool result).") from exc

    def direct(self, session_id: str, tool: Tool) -> bool:
        """Whether `tool` is reached over LinkUrl (no message size limit): the rule `call` follows."""
        channel = self._sessions.channels.get(session_id)
        return channel is not None and channel.direct_for(tool.name)

    def read_piece(self, session_id: str) -> int:
        """How many bytes one read_file call may fetch on this session's route."""
        return DIRECT_PIECE_BYTES if self.direct(session_id, tools.READ_FILE) else tools.READ_CHUNK_BYTES

    def write_piece(self, session_id: str) -> int:
        """How many bytes one write_file call may carry on this session's route."""
        return DIRECT_PIECE_BYTES if self.direct(session_id, tools.WRITE_FILE) else tools.WRITE_CHUNK_BYTES

    def caller(self, session_id: str) -> ToolCall:
        """`call` bound to one session, as files.py and desktop.py take it."""

        async def call(tool: Tool, args: dict[str, Any]) -> tuple[str, bool]:
            return await self.call(session_id, tool, args)

        return call
