"""In-session paths as the tools take them: checked for junk and made absolute, never resolved.

Shared by the file and desktop services (a desktop app's work_directory is a path like any other).
Resolving `..` and symlinks is the backend's job, where the session lives.
"""

from __future__ import annotations

import posixpath

from agentbay_mcp.backends.common.session_paths import SESSION_HOME
from agentbay_mcp.errors import InvalidArgumentError

MAX_PATH_CHARS = 4096


def session_path(path: object, name: str = "path") -> str:
    """An absolute in-session path (relative ones start at /home/user); refuses junk up front."""
    if not isinstance(path, str) or not path.strip():
        raise InvalidArgumentError(f"{name} must be a non-empty path, e.g. 'notes.txt' or '/tmp/out.log'")
    if "\x00" in path:
        raise InvalidArgumentError(f"{name} contains a NUL byte, which no path can")
    if len(path) > MAX_PATH_CHARS:
        raise InvalidArgumentError(f"{name} is {len(path)} characters long; the limit is {MAX_PATH_CHARS}")
    return path if path.startswith("/") else posixpath.join(SESSION_HOME, path)
