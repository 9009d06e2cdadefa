"""Where a session's writable trees are, as its commands see them: the same on every backend."""

from __future__ import annotations

#: The session user's home: the default working directory, and where relative paths start.
SESSION_HOME = "/home/user"
#: The session's private /tmp.
SESSION_TMP = "/tmp"  # noqa: S108 - inside the session, never on this host
