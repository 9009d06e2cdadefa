"""File operations of the in-sandbox agent (standard library only).

They run inside the session's sandbox, so every path is resolved by the kernel in the sandbox's own
mount namespace: `..`, symlinks (absolute or relative), loops and /proc/self/root tricks can only
reach what the sandbox can reach, and read-only mounts stay read-only. Each function takes the
request dict and returns a JSON-able dict, or raises AgentError with a name from error_names.py (the host maps each).
"""

from __future__ import annotations

import base64
import contextlib
import difflib
import errno
import fnmatch
import os
import shutil
import stat
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type checker sees the package; the sandbox runs these files as top-level modules
    from agentbay_mcp.backends.local.agent import error_names, framing
    from agentbay_mcp.backends.local.agent.error_names import AgentError
else:
    import error_names
    import framing
    from error_names import AgentError

READ_CHUNK = 1024 * 1024
MAX_EDIT_BYTES = 16 * 1024 * 1024
SEARCH_SECONDS = 5.0

_KINDS = {
    errno.ENOENT: error_names.NOT_FOUND,
    errno.EACCES: error_names.PERMISSION_DENIED,
    errno.EPERM: error_names.PERMISSION_DENIED,
    errno.EISDIR: error_names.IS_A_DIRECTORY,
    errno.ENOTDIR: error_names.NOT_A_DIRECTORY,
    errno.EROFS: error_names.READ_ONLY,
    errno.ENOSPC: error_names.NO_SPACE,
    errno.EDQUOT: error_names.NO_SPACE,
    errno.EFBIG: error_names.TOO_LARGE,
    errno.ENAMETOOLONG: error_names.NAME_TOO_LONG,
    errno.ELOOP: error_names.SYMLINK_LOOP,
    errno.EEXIST: error_names.EXISTS,
    errno.ENOTEMPTY: error_names.NOT_EMPTY,
    errno.EINVAL: error_names.INVALID,
    errno.EXDEV: error_names.CROSS_DEVICE,
}


def _fail(exc: OSError, path: str) -> AgentError:
    kind = _KINDS.get(exc.errno or 0, error_names.IO_ERROR)
    return AgentError(kind, f"{path}: {exc.strerror or exc}")


def _path(request: dict[str, object], key: str = "path") -> str:
    value = request.get(key)
    if not isinstance(value, str) or not value or "\x00" in value:
        raise AgentError(error_names.INVALID, f"{key} must be a non-empty path")
    return value


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _open_regular(path: str) -> tuple[int, os.stat_result]:
    try:
        # O_NONBLOCK: opening a FIFO must not hang the agent.
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError as exc:
        raise _fail(exc, path) from None
    info = os.fstat(fd)
    if stat.S_ISDIR(info.st_mode):
        os.close(fd)
        raise AgentError(error_names.IS_A_DIRECTORY, f"{path} is a directory")
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise AgentError(error_names.NOT_A_REGULAR_FILE, f"{path} is not a regular file (device, FIFO or socket)")
    return fd, info


def read(request: dict[str, object]) -> dict[str, object]:
    """A byte range, or whole lines from `start_line`, never more than `max_bytes`."""
    path = _path(request)
    max_bytes = int(request.get("max_bytes", 262144))  # type: ignore[call-overload]
    fd, info = _open_regular(path)
    try:
        head = os.pread(fd, 16, 0)
        if request.get("start_line") is not None:
            return _read_lines(fd, info, head, int(request["start_line"]), request.get("line_count"), max_bytes)  # type: ignore[call-overload]
        offset = int(request.get("offset", 0))  # type: ignore[call-overload]
        length = request.get("length")
        want = max_bytes if length is None else min(int(length), max_bytes)  # type: ignore[call-overload]
        # procfs/sysfs files report size 0 but have content: read them anyway.
        data = os.pread(fd, max(0, want), offset) if offset < info.st_size or info.st_size == 0 else b""
        return {
            framing.BLOB: data,  # raw after the reply's JSON: no base64, no escaping
            "offset": offset,
            "size": info.st_size,
            "next_offset": offset + len(data),
            "head": _b64(head),
            "mtime": info.st_mtime,
        }
    except OSError as exc:
        raise _fail(exc, path) from None
    finally:
        os.close(fd)


def _read_lines(
    fd: int, info: os.stat_result, head: bytes, start_line: int, line_count: object, max_bytes: int
) -> dict[str, object]:
    """Whole lines from `start_line`, scanning forward chunk by chunk: linear time, bounded memory.

    A line longer than max_bytes is returned in part, with next_line pointing past it and
    next_offset at the rest, so a reader always makes progress.
    """
    if start_line < 1:
        raise AgentError(error_names.INVALID, "start_line counts from 1")
    limit = int(line_count) if line_count is not None else None  # type: ignore[call-overload]
    line = 1
    position = 0
    start_offset: int | None = 0 if start_line == 1 else None
    out = bytearray()
    lines_read = 0
    while True:
        chunk = os.pread(fd, READ_CHUNK, position)
        if not chunk:
            break
        index = 0
        if start_offset is None:  # skip to the start line: count newlines only, keep nothing
            while line < start_line:
                newline = chunk.find(b"\n", index)
                if newline < 0:
                    break
                index = newline + 1
                line += 1
            if line < start_line:
                position += len(chunk)
                continue
            start_offset = position + index
        while index < len(chunk):
            if limit is not None and lines_read >= limit:
                return _lines_reply(out, start_line, lines_read, start_offset, info, head, more=True)
            newline = chunk.find(b"\n", index)
            end = len(chunk) if newline < 0 else newline + 1
            room = max_bytes - len(out)
            if end - index > room or (newline < 0 and out and len(out) + (end - index) >= max_bytes):
                if out:  # whole lines only: this one starts the next page
                    return _lines_reply(out, start_line, lines_read, start_offset, info, head, more=True)
                out += chunk[index : index + room]  # a single line over the cap: its first part
                return _lines_reply(
                    out,
                    start_line,
                    lines_read + 1 if not out.endswith(b"\n") else lines_read,
                    start_offset,
                    info,
                    head,
                    more=True,
                )
            out += chunk[index:end]
            if newline >= 0:
                lines_read += 1
            index = end
        position += len(chunk)
    if out and not out.endswith(b"\n"):
        lines_read += 1  # the last line had no newline
    return _lines_reply(out, start_line, lines_read, start_offset or 0, info, head, more=False)


def _lines_reply(
    out: bytearray, start_line: int, lines: int, offset: int, info: os.stat_result, head: bytes, *, more: bool
) -> dict[str, object]:
    return {
        framing.BLOB: out,
        "offset": offset,
        "size": info.st_size,
        "next_offset": offset + len(out),
        "head": _b64(head),
        "start_line": start_line,
        "lines": lines,
        "next_line": start_line + lines if more else None,
        "mtime": info.st_mtime,
    }


def _write_atomically(path: str, data: bytes, *, keep_mode: bool = True) -> None:
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".agentbay-{os.urandom(6).hex()}.tmp")  # short: the real name may be 255 bytes
    mode = 0o644
    if keep_mode:
        # Never the set-id bits: the new content is not what they were given to (and the sandbox's
        # seccomp filter refuses them, as a file in an rw workspace belongs to the host's owner).
        with contextlib.suppress(OSError):
            mode = stat.S_IMODE(os.stat(path).st_mode) & ~(stat.S_ISUID | stat.S_ISGID)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write(request: dict[str, object]) -> dict[str, object]:
    """Overwrite (atomically: temp file + rename) or append; creates parent directories."""
    path = _path(request)
    data = base64.b64decode(str(request.get("data", "")))
    mode = request.get("mode", "overwrite")
    try:
        if os.path.isdir(path):
            raise AgentError(error_names.IS_A_DIRECTORY, f"{path} is a directory")
        parent = os.path.dirname(path)
        if parent:
            _makedirs(parent)
        if mode == "append":
            # O_NONBLOCK: opening a FIFO must not hang the agent; only regular files are appended to.
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # a FIFO nobody reads
                    raise AgentError(error_names.NOT_A_REGULAR_FILE, f"{path} is a FIFO, not a regular file") from None
                raise
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise AgentError(
                    error_names.NOT_A_REGULAR_FILE, f"{path} is not a regular file (device, FIFO or socket)"
                )
            os.set_blocking(fd, True)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
        else:
            _write_atomically(path, data)
        return {"path": path, "bytes_written": len(data), "size": os.stat(path).st_size}
    except OSError as exc:
        raise _fail(exc, path) from None


def _shown(name: str) -> str:
    """A file name as valid text: undecodable bytes (surrogate escapes) become U+FFFD."""
    return name if name.isascii() else name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _makedirs(path: str) -> None:
    """os.makedirs without recursion (a 10,000-level path must not blow the agent's stack)."""
    missing = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        if os.path.lexists(current):
            raise FileExistsError(errno.EEXIST, "exists and is not a directory", current)
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise


def _describe(path: str, name: str | None = None) -> dict[str, object]:
    info = os.lstat(path)
    kind = (
        "directory"
        if stat.S_ISDIR(info.st_mode)
        else "file"
        if stat.S_ISREG(info.st_mode)
        else "symlink"
        if stat.S_ISLNK(info.st_mode)
        else "other"
    )
    described: dict[str, object] = {
        "name": _shown(name if name is not None else os.path.basename(path) or path),
        "type": kind,
        "size": info.st_size,
        "permissions": stat.filemode(info.st_mode),
        "mode": oct(stat.S_IMODE(info.st_mode)),
        "modified": info.st_mtime,
        "changed": info.st_ctime,
        "accessed": info.st_atime,
    }
    if kind == "symlink":
        described["target"] = _shown(os.readlink(path))
    return described


def info(request: dict[str, object]) -> dict[str, object]:
    """Type, size, permissions and times of one path (a symlink itself, with its target)."""
    path = _path(request)
    try:
        return _describe(path)
    except OSError as exc:
        raise _fail(exc, path) from None


def listing(request: dict[str, object]) -> dict[str, object]:
    """Entries sorted by name, at most `max_entries`: a compact row (framing.LIST_COLUMNS) and one lstat each."""
    path = _path(request)
    limit = int(request.get("max_entries", 1000))  # type: ignore[call-overload]
    try:
        if not os.path.isdir(path):
            if os.path.lexists(path):
                raise AgentError(error_names.NOT_A_DIRECTORY, f"{path} is not a directory")
            raise AgentError(error_names.NOT_FOUND, f"{path}: No such file or directory")
        with os.scandir(path) as found:
            entries = sorted(found, key=lambda entry: entry.name)
        rows: list[list[object]] = []
        for entry in entries[: max(0, limit)]:
            try:
                st = entry.stat(follow_symlinks=False)
                target = _shown(os.readlink(entry.path)) if stat.S_ISLNK(st.st_mode) else None
            except OSError:
                continue  # vanished meanwhile
            rows.append([_shown(entry.name), st.st_mode, st.st_size, st.st_mtime, st.st_ctime, st.st_atime, target])
        return {"path": path, "rows": rows, "total": len(entries), "truncated": len(entries) > limit}
    except OSError as exc:
        raise _fail(exc, path) from None


def mkdir(request: dict[str, object]) -> dict[str, object]:
    """Create a directory and its parents (fine if it already exists)."""
    path = _path(request)
    try:
        existed = os.path.isdir(path)
        _makedirs(path)
        return {"path": path, "created": not existed}
    except FileExistsError:
        raise AgentError(error_names.EXISTS, f"{path} exists and is not a directory") from None
    except OSError as exc:
        raise _fail(exc, path) from None


def move(request: dict[str, object]) -> dict[str, object]:
    """Rename `source` to `destination`; refuses to replace anything."""
    source, destination = _path(request, "source"), _path(request, "destination")
    try:
        info_ = os.lstat(source)
    except OSError as exc:
        raise _fail(exc, source) from None
    if not (stat.S_ISREG(info_.st_mode) or stat.S_ISDIR(info_.st_mode) or stat.S_ISLNK(info_.st_mode)):
        raise AgentError(error_names.NOT_A_REGULAR_FILE, f"{source} is a device, FIFO or socket: it cannot be moved")
    if os.path.lexists(destination):
        raise AgentError(error_names.EXISTS, f"{destination} already exists")
    real_source, real_destination = os.path.realpath(source), os.path.realpath(destination)
    if stat.S_ISDIR(info_.st_mode) and (real_destination + "/").startswith(real_source.rstrip("/") + "/"):
        raise AgentError(error_names.INVALID, f"cannot move {source} into itself ({destination})")
    try:
        parent = os.path.dirname(destination)
        if parent:
            _makedirs(parent)
        try:
            os.rename(source, destination)
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
            try:  # across mounts (home <-> /tmp): copy, then delete
                shutil.move(source, destination)
            except BaseException:
                _remove_quietly(destination)
                raise
        return {"source": source, "destination": destination}
    except OSError as exc:
        raise _fail(exc, destination) from None


def _remove_quietly(path: str) -> None:
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            os.unlink(path)
    except OSError:
        pass


def search(request: dict[str, object]) -> dict[str, object]:
    """Paths under `path` matching a glob (by name, or by relative path if it has a '/')."""
    root = _path(request)
    pattern = str(request.get("pattern", ""))
    excludes = [str(p) for p in request.get("exclude_patterns") or []]  # type: ignore[attr-defined]
    limit = int(request.get("max_results", 1000))  # type: ignore[call-overload]
    if not pattern:
        raise AgentError(error_names.INVALID, "pattern must be a glob such as '*.py' or 'src/**/*.ts'")
    if not os.path.isdir(root):
        raise AgentError(error_names.NOT_A_DIRECTORY, f"{root} is not a directory")

    def matches(name: str, relative: str, glob: str) -> bool:
        if "/" in glob:
            return fnmatch.fnmatchcase(relative, glob) or fnmatch.fnmatchcase(relative, glob.replace("**/", ""))
        return fnmatch.fnmatchcase(name, glob)

    found: list[str] = []
    deadline = time.monotonic() + SEARCH_SECONDS
    truncated = False
    stack = [root]  # iterative: a 10,000-level tree must not blow the agent's stack
    while stack and not truncated:
        directory = stack.pop()
        rel_dir = os.path.relpath(directory, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        subdirs = []
        for entry in entries:
            relative = rel_dir + entry.name
            if any(matches(entry.name, relative, e) for e in excludes):
                continue
            is_dir = entry.is_dir(follow_symlinks=False)
            if matches(entry.name, relative, pattern):
                found.append(_shown(entry.path))
                if len(found) >= limit:
                    truncated = True
                    break
            if is_dir:
                subdirs.append(entry.path)
        stack.extend(reversed(subdirs))
        if time.monotonic() > deadline:
            truncated = True
    return {"path": root, "matches": found, "truncated": truncated}


def edit(request: dict[str, object]) -> dict[str, object]:
    """Replace each old_text (which must occur exactly once) with new_text; a diff either way."""
    path = _path(request)
    edits = request.get("edits")
    if not isinstance(edits, list) or not edits:
        raise AgentError(error_names.INVALID, "edits must be a non-empty list of {old_text, new_text}")
    fd, info_ = _open_regular(path)
    try:
        if info_.st_size > MAX_EDIT_BYTES:
            raise AgentError(
                error_names.TOO_LARGE, f"{path} is larger than {MAX_EDIT_BYTES} bytes; edit it with a command"
            )
        raw = b""
        while len(raw) < info_.st_size:
            chunk = os.pread(fd, READ_CHUNK, len(raw))
            if not chunk:
                break
            raw += chunk
    finally:
        os.close(fd)
    try:
        original = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise AgentError(error_names.NOT_TEXT, f"{path} is not UTF-8 text; edit it with a command") from None
    text = original
    for number, item in enumerate(edits, 1):
        if not isinstance(item, dict) or not isinstance(item.get("old_text"), str):
            raise AgentError(error_names.INVALID, f"edit {number} needs old_text and new_text strings")
        old, new = item["old_text"], str(item.get("new_text", ""))
        if not old:
            raise AgentError(error_names.INVALID, f"edit {number}: old_text is empty")
        count = text.count(old)
        if count != 1:
            where = "does not occur" if count == 0 else f"occurs {count} times"
            raise AgentError(
                error_names.NO_UNIQUE_MATCH,
                f"edit {number}: old_text {where} in {path} (after the edits before it); it must match exactly "
                "once: include more surrounding lines to make it unique",
            )
        text = text.replace(old, new, 1)
    diff = "".join(difflib.unified_diff(original.splitlines(True), text.splitlines(True), f"a{path}", f"b{path}"))
    if not request.get("dry_run"):
        try:
            _write_atomically(path, text.encode("utf-8"))
        except OSError as exc:
            raise _fail(exc, path) from None
    return {"path": path, "diff": diff, "applied": not request.get("dry_run"), "edits": len(edits)}


OPERATIONS = {
    "file_read": read,
    "file_write": write,
    "file_info": info,
    "file_list": listing,
    "file_mkdir": mkdir,
    "file_move": move,
    "file_search": search,
    "file_edit": edit,
}
