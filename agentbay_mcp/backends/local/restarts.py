"""How often a session's sandbox may be restarted after breaking the agent protocol.

A session whose agent was taken over could otherwise make the server start a sandbox for every
call, and each start costs a process launch on this host's cores, shared by every conversation.
"""

from __future__ import annotations

import time

from agentbay_mcp.backends.common.session_paths import SESSION_HOME, SESSION_TMP
from agentbay_mcp.backends.local.sandbox import Sandbox
from agentbay_mcp.errors import BackendError

#: Sandbox restarts a session may cause per minute by breaking the protocol.
RESTARTS_AFTER_VIOLATION = 3
VIOLATION_WINDOW_SECONDS = 60.0


class RestartBudget:
    """Per session, the times its sandbox broke the protocol in the last minute."""

    def __init__(self) -> None:
        self._violations: dict[str, list[float]] = {}

    def check(self, session_id: str, dead: Sandbox | None) -> None:
        """Count `dead`'s violation (once), then refuse a restart past RESTARTS_AFTER_VIOLATION per minute:
        calls fail at once until the oldest of them is a minute old."""
        now = time.monotonic()
        recent = [t for t in self._violations.get(session_id, []) if now - t < VIOLATION_WINDOW_SECONDS]
        if dead is not None and dead.agent.violated and not dead.violation_counted:
            dead.violation_counted = True
            recent.append(now)
        self._violations[session_id] = recent
        if len(recent) > RESTARTS_AFTER_VIOLATION:
            wait = recent[-RESTARTS_AFTER_VIOLATION - 1] + VIOLATION_WINDOW_SECONDS - now
            raise BackendError(
                f"The session's sandbox broke the protocol {len(recent)} times in the last minute (something in "
                f"the session is tampering with its agent); it can be restarted in {wait:.0f} s. Delete the "
                "session and create a new one, or retry later."
            )

    def forget(self, session_id: str) -> None:
        """The session is gone."""
        self._violations.pop(session_id, None)


def loss_report(session_id: str, lost: dict[str, str], desktop_used: bool) -> str:
    """What died with the session's sandbox (its background processes `lost`, by id), for a model reading it cold."""
    shown = "; ".join(f"{proc_id} ({command[:80]})" for proc_id, command in sorted(lost.items())[:10])
    if len(lost) > 10:
        shown += f"; and {len(lost) - 10} more"
    what = f"its {len(lost)} background process(es) were lost: {shown}" if lost else "no background process"
    if desktop_used:
        what += "; its desktop, with every window and application on it"
    return (
        f"The sandbox of session {session_id} died (its agent was killed or crashed), and with it everything "
        f"running in it: {what}. Files in {SESSION_HOME} and {SESSION_TMP} are kept. The sandbox has been "
        "restarted empty: retry your call, and start again any process or application you still need."
    )
