"""Context results as text: one line per context, and what a sync wrote."""

from __future__ import annotations

from agentbay_mcp.services.contexts.models import ContextInfo, ContextList, ContextsSynced, DeletedContext
from agentbay_mcp.tools.shape import Shape
from agentbay_mcp.tools.text.common import name, plural, when


def _size(size_bytes: int | None, file_count: int | None) -> str:
    if size_bytes is None:
        return "size unknown"
    return f"{size_bytes:,} bytes in {plural(file_count or 0, 'file')}"


def context_line(info: ContextInfo) -> str:
    """name, size, times, users (and the last sync's problem, when there is one)."""
    used = when(info.last_used_at) if info.last_used_at else "never"
    line = f"{name(info.name)}: {_size(info.size_bytes, info.file_count)}, created {when(info.created_at)}, used {used}"
    if info.in_use_by:
        line += f", in use by {', '.join(info.in_use_by)}"
    return f"{line}. NOTICE: {info.notice}" if info.notice else line


def _made(info: ContextInfo) -> str:
    verb = "Created" if info.created else "Found existing"
    use = f"create_session(contexts=[{{'name': {info.name!r}, 'path': '/home/user/...'}}])"
    return f"{verb} context {context_line(info)}\nShow it in a session: {use}."


def _listed(found: ContextList) -> str:
    if not found.contexts:
        return f"No contexts (you may have {found.limit}). create_context makes one."
    head = f"{plural(len(found.contexts), 'context')} of at most {found.limit}:"
    return "\n".join([head, *(context_line(info) for info in found.contexts)])


def _synced(result: ContextsSynced) -> str:
    lines = [f"Synced from {result.session_id}:"]
    for item in result.synced:
        line = f"{name(item.name)} from {item.path}: {_size(item.size_bytes, item.file_count)}"
        lines.append(f"{line}. WARNING: {item.warning}" if item.warning else line)
    return "\n".join(lines)


#: A context just made or found: its size and users; its times and notice are in the text (get_context has them).
CONTEXT = Shape(ContextInfo, _made, ("created_at", "last_used_at", "notice"))
INFO = Shape(ContextInfo, lambda info: f"Context {context_line(info)}")
CONTEXTS = Shape(ContextList, _listed, ("contexts",), structured=False)
DELETED = Shape(DeletedContext, lambda gone: f"Context {name(gone.name)} deleted with its content.", structured=False)
SYNCED = Shape(ContextsSynced, _synced, ("session_id",))
