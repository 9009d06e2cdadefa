"""The memory backend's files: one in-memory tree per session, with the sandbox's path rules.

Paths are absolute as the session sees them and are resolved here (normalised; there are no
symlinks). `/home/user` and `/tmp` are writable, like the sandbox's; anything else is a read-only
system directory. Errors are `FileOperationError`s of the kinds the in-sandbox agent uses
(not_found, exists, is_a_directory, not_a_directory, read_only, no_unique_match, invalid, not_text).
"""

from __future__ import annotations

import difflib
import fnmatch
import posixpath
import stat
from dataclasses import dataclass, field
from datetime import UTC, datetime

from agentbay_mcp.backends import records
from agentbay_mcp.errors import FileOperationError, SessionNotFoundError

#: Where a session may write (the sandbox's writable mounts).
WRITABLE = ("/home/user", "/tmp")  # noqa: S108 (paths inside the simulated session, not on this host)


@dataclass
class Node:
    """A file (with its bytes) or a directory."""

    directory: bool
    data: bytearray = field(default_factory=bytearray)
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))


def _missing(path: str) -> FileOperationError:
    return FileOperationError("not_found", f"{path}: No such file or directory")


class Tree:
    """One session's files, keyed by normalised absolute path."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {p: Node(directory=True) for p in ("/", "/home", *WRITABLE)}

    @staticmethod
    def resolve(path: str) -> str:
        """The normalised absolute path (`..` never climbs above `/`)."""
        if not path.startswith("/") or "\x00" in path:
            raise FileOperationError("invalid", f"{path!r} is not an absolute path")
        return posixpath.normpath("/" + path.lstrip("/"))

    def file(self, path: str) -> Node:
        node = self.nodes.get(path)
        if node is None:
            raise _missing(path)
        if node.directory:
            raise FileOperationError("is_a_directory", f"{path} is a directory")
        return node

    def directory(self, path: str) -> Node:
        node = self.nodes.get(path)
        if node is None:
            raise _missing(path)
        if not node.directory:
            raise FileOperationError("not_a_directory", f"{path} is not a directory")
        return node

    def writable(self, path: str) -> None:
        if not any(path == top or path.startswith(top + "/") for top in WRITABLE):
            raise FileOperationError("read_only", f"{path}: Read-only file system")

    def makedirs(self, path: str) -> bool:
        """mkdir -p; True if it created the directory itself."""
        node = self.nodes.get(path)
        if node is not None:
            if not node.directory:
                raise FileOperationError("exists", f"{path} exists and is not a directory")
            return False
        self.writable(path)
        self.makedirs(posixpath.dirname(path))
        self.nodes[path] = Node(directory=True)
        return True

    def children(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return sorted(p[len(prefix) :] for p in self.nodes if p.startswith(prefix) and "/" not in p[len(prefix) :])

    def describe(self, path: str) -> records.FileInfo:
        node = self.nodes.get(path)
        if node is None:
            raise _missing(path)
        mode = (stat.S_IFDIR | 0o755) if node.directory else (stat.S_IFREG | 0o644)
        return records.FileInfo(
            path=path,
            name=posixpath.basename(path) or path,
            type="directory" if node.directory else "file",
            size=4096 if node.directory else len(node.data),
            permissions=stat.filemode(mode),
            mode=oct(stat.S_IMODE(mode)),
            modified=node.modified,
            changed=node.modified,
            accessed=node.modified,
        )


def read_lines(data: bytes, start_line: int, line_count: int | None, max_bytes: int) -> tuple[bytes, int, int, bool]:
    """Whole lines from `start_line` within `max_bytes` (a longer first line in part): the bytes, their
    offset, the lines returned, and whether more follow."""
    lines = data.splitlines(keepends=True)
    offset = sum(len(line) for line in lines[: start_line - 1])
    out = b""
    count = 0
    for line in lines[start_line - 1 :]:
        if line_count is not None and count >= line_count:
            return out, offset, count, True
        if len(out) + len(line) > max_bytes:
            if not out:
                return line[:max_bytes], offset, 1, True
            return out, offset, count, True
        out += line
        count += 1
    return out, offset, count, False


class MemoryFiles:
    """The `Files` capability over the sessions' trees (the backend owns the map)."""

    def __init__(self, trees: dict[str, Tree]) -> None:
        #: The backend's map: a session has a tree from its creation to its deletion.
        self._trees = trees

    def tree(self, session_id: str) -> Tree:
        """The session's tree, or SessionNotFoundError."""
        tree = self._trees.get(session_id)
        if tree is None:
            raise SessionNotFoundError(session_id)
        return tree

    async def read_file(self, session_id: str, path: str, span: records.ReadSpan, max_bytes: int) -> records.FileChunk:
        """A byte range (or whole lines from span.start_line), at most max_bytes."""
        tree = self.tree(session_id)
        path = tree.resolve(path)
        data = bytes(tree.file(path).data)
        start_line = span.start_line
        if start_line is not None:
            if start_line < 1:
                raise FileOperationError("invalid", "start_line counts from 1")
            piece, start, count, more = read_lines(data, start_line, span.line_count, max_bytes)
            return records.FileChunk(
                data=piece,
                offset=start,
                size=len(data),
                next_offset=start + len(piece),
                head=data[:16],
                start_line=start_line,
                lines=count,
                next_line=start_line + count if more else None,
            )
        want = max_bytes if span.length is None else min(span.length, max_bytes)
        offset = span.offset
        piece = data[offset : offset + want]
        return records.FileChunk(
            data=piece, offset=offset, size=len(data), next_offset=offset + len(piece), head=data[:16]
        )

    async def write_file(self, session_id: str, path: str, data: bytes, mode: str) -> records.FileWritten:
        """Overwrite or append; creates parents."""
        tree = self.tree(session_id)
        path = tree.resolve(path)
        existing = tree.nodes.get(path)
        if existing is not None and existing.directory:
            raise FileOperationError("is_a_directory", f"{path} is a directory")
        tree.writable(path)
        tree.makedirs(posixpath.dirname(path))
        node = existing if existing is not None and mode == "append" else Node(directory=False)
        node.data += data
        node.modified = datetime.now(UTC)
        tree.nodes[path] = node
        return records.FileWritten(path=path, bytes_written=len(data), size=len(node.data))

    async def edit_file(
        self, session_id: str, path: str, edits: list[dict[str, str]], dry_run: bool
    ) -> records.FileEdited:
        """Exact-once replacements, with a unified diff."""
        tree = self.tree(session_id)
        path = tree.resolve(path)
        node = tree.file(path)
        try:
            original = node.data.decode("utf-8")
        except UnicodeDecodeError:
            raise FileOperationError("not_text", f"{path} is not UTF-8 text; edit it with a command") from None
        text = original
        for number, item in enumerate(edits, 1):
            count = text.count(item["old_text"])
            if count != 1:
                where = "does not occur" if count == 0 else f"occurs {count} times"
                raise FileOperationError(
                    "no_unique_match", f"edit {number}: old_text {where} in {path}; it must match exactly once"
                )
            text = text.replace(item["old_text"], item["new_text"], 1)
        diff = "".join(difflib.unified_diff(original.splitlines(True), text.splitlines(True), f"a{path}", f"b{path}"))
        if not dry_run:
            tree.writable(path)
            node.data = bytearray(text.encode("utf-8"))
            node.modified = datetime.now(UTC)
        return records.FileEdited(path=path, applied=not dry_run, edits=len(edits), diff=diff)

    async def file_info(self, session_id: str, path: str) -> records.FileInfo:
        """Metadata of a path."""
        tree = self.tree(session_id)
        return tree.describe(tree.resolve(path))

    async def list_directory(self, session_id: str, path: str, max_entries: int) -> records.DirectoryListing:
        """Entries sorted by name, at most max_entries."""
        tree = self.tree(session_id)
        path = tree.resolve(path)
        tree.directory(path)
        names = tree.children(path)
        entries = [tree.describe(posixpath.join(path, name)) for name in names[:max_entries]]
        return records.DirectoryListing(
            path=path, entries=entries, total=len(names), truncated=len(names) > max_entries
        )

    async def search_files(
        self, session_id: str, path: str, pattern: str, exclude_patterns: list[str], max_results: int
    ) -> records.SearchResult:
        """Glob by name, or by relative path when the pattern has a '/' (as the agent does)."""
        tree = self.tree(session_id)
        root = tree.resolve(path)
        tree.directory(root)

        def matches(relative: str, glob: str) -> bool:
            if "/" in glob:
                return fnmatch.fnmatchcase(relative, glob) or fnmatch.fnmatchcase(relative, glob.replace("**/", ""))
            return fnmatch.fnmatchcase(posixpath.basename(relative), glob)

        found: list[str] = []
        prefix = root.rstrip("/") + "/"
        for candidate in sorted(p for p in tree.nodes if p.startswith(prefix)):
            relative = candidate[len(prefix) :]
            parts = relative.split("/")
            if any(matches("/".join(parts[: i + 1]), e) for e in exclude_patterns for i in range(len(parts))):
                continue
            if matches(relative, pattern):
                found.append(candidate)
                if len(found) >= max_results:
                    return records.SearchResult(path=root, pattern=pattern, matches=found, truncated=True)
        return records.SearchResult(path=root, pattern=pattern, matches=found, truncated=False)

    async def create_directory(self, session_id: str, path: str) -> records.DirectoryCreated:
        """mkdir -p."""
        tree = self.tree(session_id)
        path = tree.resolve(path)
        return records.DirectoryCreated(path=path, created=tree.makedirs(path))

    async def move_file(self, session_id: str, source: str, destination: str) -> records.FileMoved:
        """Rename (a directory with everything below it); never replaces the destination."""
        tree = self.tree(session_id)
        source, destination = tree.resolve(source), tree.resolve(destination)
        if source not in tree.nodes:
            raise _missing(source)
        if destination in tree.nodes:
            raise FileOperationError("exists", f"{destination} already exists")
        if (destination + "/").startswith(source.rstrip("/") + "/"):
            raise FileOperationError("invalid", f"cannot move {source} into itself ({destination})")
        tree.writable(source)
        tree.writable(destination)
        tree.makedirs(posixpath.dirname(destination))
        for old in [p for p in tree.nodes if p == source or p.startswith(source + "/")]:
            tree.nodes[destination + old[len(source) :]] = tree.nodes.pop(old)
        return records.FileMoved(source=source, destination=destination)
