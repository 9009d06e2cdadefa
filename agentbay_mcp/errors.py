"""The one exception tree of agentbay-mcp.

Every failure a user or model can meet is one of these; the MCP layer turns them into
`ToolError`s in one place (`agentbay_mcp.tools.common.tool_call`), the CLI into a line on stderr and
exit status 1 in one place (`agentbay_mcp.cli.main`). Messages are written for a model reading
them cold: what went wrong and what to do next. They never carry secrets.

The local backend's in-sandbox agent reports errors by name (`backends/local/agent/error_names.py`,
shared by both sides of the sandbox); `backends/local/agent_errors.py` maps every name to one of
these before a caller sees it, so `AgentCallError` never leaves the backend.

    AgentBayMCPError
    ├── InvalidArgumentError        bad input from the caller (fix the call)
    │   ├── InvalidLabelsError
    │   ├── InvalidPageTokenError
    │   └── UnknownImageError
    ├── SessionNotFoundError        unknown id, another conversation's id, or already deleted
    ├── ProcessNotFoundError        unknown process id in a session
    ├── ContextNotFoundError        no context of that name for this principal
    ├── FileOperationError          a file operation failed (missing, read-only, disk full, ...)
    ├── WindowNotFoundError         no such top-level window on the session's desktop
    ├── DesktopUnavailableError     the session has no desktop (its image, or Xvfb missing on the host)
    ├── QuotaExceededError          a per-conversation (or per-principal) limit was reached
    ├── AccessDeniedError           the caller's scopes do not allow the tool (or resource)
    ├── NotSupportedError           this backend cannot do that (the message says what to use instead)
    ├── BackendUnavailableError     the backend cannot work at all (unwritable state dir, missing bwrap)
    │   └── AuthenticationError     the cloud rejected (or was not given) the API key
    ├── UnsafeConfigurationError    the operator asked for something unsafe (e.g. HTTP beyond loopback)
    │   └── AuthConfigurationError  the token file or JWKS file is unusable (unreadable, plain-text tokens)
    └── BackendError                a backend primitive failed unexpectedly
        ├── CloudAPIError           the AgentBay API answered with an error (code and request id kept)
        ├── SandboxLostError        the session's sandbox died since the last call; says what was lost
        ├── SandboxDiedError        the session's agent went away, or broke the protocol, during a call
        └── AgentCallError          the agent's error reply (`kind` from error_names.py), before mapping
"""

from __future__ import annotations


class AgentBayMCPError(Exception):
    """Base of every error agentbay-mcp raises on purpose."""


class InvalidArgumentError(AgentBayMCPError):
    """The caller passed an argument that cannot be used; the message says which and why."""


class InvalidLabelsError(InvalidArgumentError):
    """A label map broke the label rules (non-empty strings, length and count limits)."""


class InvalidPageTokenError(InvalidArgumentError):
    """A `next_token` was not one this server issued for this listing."""


class UnknownImageError(InvalidArgumentError):
    """The requested image id is not offered by the backend."""


class SessionNotFoundError(AgentBayMCPError):
    """No session with that id is visible to this conversation.

    Deliberately the same for "never existed", "deleted" and "belongs to someone else", so a
    conversation learns nothing about sessions it does not own.
    """

    def __init__(self, session_id: str) -> None:
        shown = session_id if len(session_id) <= 80 else session_id[:77] + "..."
        super().__init__(
            f"Session {shown!r} not found: it does not exist, was deleted or expired, or belongs to "
            "another conversation. Call list_sessions to see your sessions, or create_session for a new one."
        )
        self.session_id = session_id


class ProcessNotFoundError(AgentBayMCPError):
    """No process with that id in the session."""

    def __init__(self, process_id: str) -> None:
        shown = process_id if len(process_id) <= 40 else process_id[:37] + "..."
        super().__init__(
            f"Process {shown!r} not found in this session (it was never started here, or the session's "
            "sandbox restarted). Call list_processes to see the session's processes."
        )


class ContextNotFoundError(AgentBayMCPError):
    """No context of that name belongs to the caller's principal (another principal's is answered the same)."""

    def __init__(self, name: str) -> None:
        shown = name if len(name) <= 80 else name[:77] + "..."
        super().__init__(
            f"Context {shown!r} not found: it does not exist or was deleted. Call list_contexts to see yours, "
            "or create_context to make it."
        )
        self.name = name


class FileOperationError(AgentBayMCPError):
    """A file tool failed; the message names the path and what to do. `kind` says why."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class WindowNotFoundError(AgentBayMCPError):
    """The window id is not a top-level window on this session's desktop."""


class DesktopUnavailableError(AgentBayMCPError):
    """The session cannot have a desktop: its image has none, or the host lacks Xvfb or a window manager."""


class QuotaExceededError(AgentBayMCPError):
    """A limit on live sessions (or similar) was reached."""


class AccessDeniedError(AgentBayMCPError):
    """The authenticated principal's scopes do not allow this tool or resource."""


class NotSupportedError(AgentBayMCPError):
    """The backend in use cannot do this; the message says what to do instead."""


class BackendUnavailableError(AgentBayMCPError):
    """The backend cannot serve requests at all until the operator fixes something."""


class AuthenticationError(BackendUnavailableError):
    """The cloud API key is missing or was rejected; the message says where to get one."""


class UnsafeConfigurationError(AgentBayMCPError):
    """The server refuses to start with settings that would expose sandboxes to others."""


class AuthConfigurationError(UnsafeConfigurationError):
    """The operator's token file or JWKS file cannot be used; the message says how to fix it."""


class BackendError(AgentBayMCPError):
    """A backend primitive failed in a way the caller could not have prevented."""


class CloudAPIError(BackendError):
    """The AgentBay API answered with an error. `request_id` is what Alibaba support asks for."""

    def __init__(self, message: str, *, code: str = "", request_id: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id
        self.status = status


class SandboxLostError(BackendError):
    """The session's sandbox died since the last call (its processes with it) and was restarted.

    Raised once, by the first call after the death, so the loss is never silent; the call itself
    did not run and can be retried.
    """


class SandboxDiedError(BackendError):
    """The session's sandbox (its agent) is gone: killed, crashed or replaced."""


class AgentCallError(BackendError):
    """The agent answered a call with an error; `kind` is a name from the agent's error_names.py."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
