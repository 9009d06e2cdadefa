"""The names of the errors the agent reports: the one vocabulary both sides of the sandbox use.

Standard library only (this file runs in the sandbox, see sandbox_agent.py). The agent raises
`AgentError(<name>, message)` with a name from here and replies `{"kind": name, "message": m}`;
the host (`backends/local/agent_errors.py`) imports the same names and maps every one of them to
an exception of `agentbay_mcp/errors.py`. A test checks that the agent passes only these names and
that the host maps each, so the two sides cannot drift apart again.
"""

from __future__ import annotations

# ---- files (most come from an errno, see file_ops._KINDS) ----------------------------------------
NOT_FOUND = "not_found"  # also: no process with that id
PERMISSION_DENIED = "permission_denied"
READ_ONLY = "read_only"
IS_A_DIRECTORY = "is_a_directory"
NOT_A_DIRECTORY = "not_a_directory"
NOT_A_REGULAR_FILE = "not_a_regular_file"
EXISTS = "exists"
NOT_EMPTY = "not_empty"
NO_SPACE = "no_space"
TOO_LARGE = "too_large"
NAME_TOO_LONG = "name_too_long"
SYMLINK_LOOP = "symlink_loop"
NOT_TEXT = "not_text"
CROSS_DEVICE = "cross_device"
NO_UNIQUE_MATCH = "no_unique_match"
# ---- the request itself -----------------------------------------------------------------------
INVALID = "invalid"  # an argument of a file or desktop operation
BAD_REQUEST = "bad_request"  # an argument of a process operation, or an unknown operation
SPAWN_FAILED = "spawn_failed"
# ---- the desktop -------------------------------------------------------------------------------
WINDOW_NOT_FOUND = "window_not_found"
NO_DESKTOP = "no_desktop"
DESKTOP_TIMEOUT = "desktop_timeout"
DESKTOP_ERROR = "desktop_error"
# ---- anything else the kernel said no to --------------------------------------------------------
IO_ERROR = "io_error"

#: Every name above: what the agent may put in an error reply.
ALL = frozenset(value for key, value in dict(globals()).items() if key.isupper() and isinstance(value, str))


class AgentError(Exception):
    """An error reply: `kind` is one of the names above, the message says what and where."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
