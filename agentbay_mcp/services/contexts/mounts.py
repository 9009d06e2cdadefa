"""Where a session may show a context: the checks on create_session's `contexts` argument."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence

from agentbay_mcp.backends.common.session_paths import SESSION_HOME, SESSION_TMP
from agentbay_mcp.backends.records_contexts import CONTEXT_NAME
from agentbay_mcp.errors import InvalidArgumentError

#: Contexts one session may show (each is copied in at create and back at the end).
MAX_CONTEXTS_PER_SESSION = 8
#: The sandbox's writable places: a context lives below one of them (or is one of them).
MOUNT_ROOTS = (SESSION_HOME, SESSION_TMP)
NAME_RULE = "1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
#: A mount path is kept in the AgentBay backend's mounts label, which reads back only short printable
#: paths (and 8 of them in 16,000 characters): a mount it could not read back would never be written back.
MAX_PATH_CHARS = 1024
#: How much of a refused argument an error echoes.
_ECHO = 100


def _echo(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _ECHO else text[:_ECHO] + "..."


def check_name(name: object) -> str:
    """A context name as the rules allow it, or InvalidArgumentError."""
    if not isinstance(name, str) or not CONTEXT_NAME.match(name):
        raise InvalidArgumentError(f"Context name {_echo(name)} is not allowed: use {NAME_RULE}.")
    return name


def check_mounts(requested: Sequence[Mapping[str, object]]) -> list[tuple[str, str]]:
    """(name, path) pairs: names valid and distinct, paths absolute, normalised, below /home/user or /tmp,
    and not inside one another."""
    if len(requested) > MAX_CONTEXTS_PER_SESSION:
        raise InvalidArgumentError(f"A session may show at most {MAX_CONTEXTS_PER_SESSION} contexts.")
    pairs: list[tuple[str, str]] = []
    for item in requested:
        name, path = check_name(item.get("name")), item.get("path")
        if not isinstance(path, str) or not path.startswith("/") or posixpath.normpath(path) != path:
            raise InvalidArgumentError(
                f"Context path {_echo(path)} must be an absolute, normalised path such as '/home/user/.cache'."
            )
        if len(path) > MAX_PATH_CHARS or not path.isprintable():
            raise InvalidArgumentError(
                f"Context path {_echo(path)} must be printable (no newline, tab or NUL) and at most "
                f"{MAX_PATH_CHARS} characters."
            )
        if not any(path == root or path.startswith(root + "/") for root in MOUNT_ROOTS):
            raise InvalidArgumentError(
                f"Context path {_echo(path)} must be {SESSION_HOME} or /tmp, or below one of them."
            )
        for other_name, other in pairs:
            if other_name == name:
                raise InvalidArgumentError(f"Context {name!r} is named twice: show each context at one path.")
            if path == other or path.startswith(other + "/") or other.startswith(path + "/"):
                raise InvalidArgumentError(f"Context paths {other!r} and {path!r} overlap: pick separate paths.")
        pairs.append((name, path))
    return pairs
