"""File results as text: a file's content once under one header line; one line per entry or match."""

from __future__ import annotations

from agentbay_mcp.backends import records
from agentbay_mcp.services.files import models
from agentbay_mcp.tools.shape import Shape
from agentbay_mcp.tools.text.common import join_body, lines, name, plural, when

#: `type` of an entry as its listing column.
_KIND = {"file": "file", "directory": "dir", "symlink": "link", "other": "other"}


def _content(read: models.FileContent) -> str:
    head = f"{name(read.path)} ({read.encoding}{'' if read.mime_type == 'text/plain' else ', ' + read.mime_type}): "
    return join_body(head + read.message, read.content)


def entry_line(entry: records.FileInfo) -> str:
    """kind, size, name (`-> target` for a symlink)."""
    line = f"{_KIND[entry.type]} {entry.size} {name(entry.name)}"
    return f"{line} -> {name(entry.target)}" if entry.target is not None else line


def detail_line(entry: records.FileInfo) -> str:
    """ls -l style: permissions, size, modified time, name (and symlink target)."""
    line = f"{entry.permissions} {entry.size} {when(entry.modified)} {name(entry.name)}"
    return f"{line} -> {name(entry.target)}" if entry.target is not None else line


def listing(found: records.DirectoryListing, *, details: bool) -> str:
    """The header (path, count, what was left out), then one line per entry."""
    head = f"{found.path}: {plural(found.total, 'entry', 'entries')}"
    if found.truncated:
        head += f". {found.message}"
    head += " (permissions size modified name)" if details else " (kind size name)"
    render = detail_line if details else entry_line
    return lines(head, map(render, found.entries))


def _info(info: models.FileInfo) -> str:
    target = f" -> {name(info.target)}" if info.target is not None else ""
    return (
        f"{name(info.path)}{target}: {info.type}, {info.size} bytes, {info.permissions} ({info.mode}), "
        f"modified {when(info.modified)}, changed {when(info.changed)}, accessed {when(info.accessed)}"
    )


def _matches(found: models.SearchResult) -> str:
    head = f"{plural(len(found.matches), 'match', 'matches')} for {found.pattern!r} below {found.path}"
    if found.truncated:
        head += f" (stopped early: {found.message})"
    if not found.matches:
        return head + "."
    return lines(head + ":", map(name, found.matches))


def _edited(done: models.FileEdited) -> str:
    edits = plural(done.edits, "edit")
    head = f"Edited {done.path}: {edits}." if done.applied else f"Dry run on {done.path}: {edits}, nothing written."
    return join_body(head, done.diff)


#: invalid_utf8 is the message's "Undecodable bytes were replaced".
CONTENT = Shape(models.FileContent, _content, ("content", "message", "invalid_utf8"))
#: list_directory's text depends on its `details` argument, so its render is called by the tool. Here and
#: below, `path` is the argument made absolute (relative ones are below /home/user), said in the text.
LISTING = Shape(models.DirectoryListing, lambda found: listing(found, details=False), ("entries", "message", "path"))
#: name is the path's last part; permissions is mode spelled out; ctime and atime are in the text.
INFO = Shape(models.FileInfo, _info, ("name", "permissions", "changed", "accessed"))
#: The pattern echoes the argument.
MATCHES = Shape(models.SearchResult, _matches, ("matches", "message", "pattern", "path"))
EDITED = Shape(models.FileEdited, _edited, ("diff", "path"))
WRITTEN = Shape(
    models.FileWritten, lambda done: f"Wrote {done.bytes_written} bytes to {done.path}; size {done.size}.", ("path",)
)
#: Acknowledgements: the text says all.
DIRECTORY = Shape(
    models.DirectoryCreated,
    lambda done: f"Created {done.path}." if done.created else f"{done.path} already exists.",
    structured=False,
)
MOVED = Shape(models.FileMoved, lambda done: f"Moved {done.source} to {done.destination}.", structured=False)
