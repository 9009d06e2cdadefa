"""Session results as text: one line per session."""

from __future__ import annotations

import json

from agentbay_mcp.services.sessions.models import DeletedSession, SessionInfo, SessionLabels, SessionList
from agentbay_mcp.tools.shape import Shape
from agentbay_mcp.tools.text.common import labels, when


def session_line(info: SessionInfo) -> str:
    """id, image, status, network, labels, idle expiry (and a notice, when there is one)."""
    line = (
        f"{info.session_id} {info.image_id} {info.status}{'' if info.network == 'off' else f' network={info.network}'} "
        f"labels={labels(info.labels)} idle-expires={when(info.idle_expires_at)}"
    )
    if info.contexts:  # JSON, like the labels: a path may hold anything
        line += f" contexts={json.dumps(info.contexts, ensure_ascii=False, separators=(',', ':'))}"
    if info.workspaces:
        line += f" workspaces={json.dumps(info.workspaces, separators=(',', ':'))}"
    return f"{line} NOTICE: {info.notice}" if info.notice else line


def _created(info: SessionInfo) -> str:
    return f"Created session {session_line(info)}\nPass its session_id to the other tools."


def _listed(page: SessionList) -> str:
    if not page.sessions:
        return "No sessions match." if page.total_count == 0 else "No sessions on this page."
    head = f"{len(page.sessions)} of {page.total_count} sessions (id image status labels expiry):"
    lines = [head, *(session_line(s) for s in page.sessions)]
    if page.next_token:
        lines.append(f"More: call list_sessions again with next_token={page.next_token!r}.")
    return "\n".join(lines)


def _labels(found: SessionLabels) -> str:
    return f"Labels of {found.session_id}: {labels(found.labels)}"


def _deleted(gone: DeletedSession) -> str:
    text = f"Session {gone.session_id} deleted: its sandbox, files and processes are gone."
    if gone.contexts:
        text += f" Its contexts ({', '.join(gone.contexts)}) were written back first: get_context shows any problem."
    return text


#: Contexts and workspaces are in the text (`session_line`) only: most sessions have none.
MOUNTS = ("contexts", "workspaces")
#: A notice is for the model to read. create_session's image, labels and network echo its arguments,
#: and a session it made is RUNNING.
CREATED = Shape(SessionInfo, _created, (*MOUNTS, "notice", "image_id", "labels", "network", "status"))
#: get_session's session_id echoes its argument; the network is in the text (absent: off).
SESSION = Shape(SessionInfo, lambda info: f"Session {session_line(info)}", (*MOUNTS, "notice", "session_id", "network"))
SESSIONS = Shape(SessionList, _listed, ("sessions",))
LABELS = Shape(SessionLabels, _labels, ("session_id",))
#: set_session_labels and delete_session acknowledge: their text says all (the labels, the id).
LABELS_SET = Shape(SessionLabels, _labels, structured=False)
DELETED = Shape(DeletedSession, _deleted, structured=False)
