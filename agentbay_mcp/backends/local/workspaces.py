"""The local backend's workspaces: host directories the operator offers, at /workspace/NAME in a session.

    sessions/<id>/ws/NAME/state.json     mode, host path, owner, start time, what apply wrote (root's)
    sessions/<id>/ws/NAME/lower          the host directory, id-mapped so its owner is the sandbox uid
    sessions/<id>/ws/NAME/merged         overlay mode: overlayfs (lower + the session's upper)
    sessions/<id>/disk/ws/NAME/{upper,work}   overlay's layers, on the session's quota disk (or, without
                                         one, under ws/NAME/): the session's writes count in its quota

The mounts are made in staging, before the sandbox exists, and bwrap binds `lower` (ro: read-only,
rw: writable, so writes reach the host at once) or `merged` (overlay). They are host mounts under
the session dir, so every ending unmounts them first (layout.remove_tree -> unmount_under), and a
removal never reaches the host directory: see layout.remove_tree's refusal when one stays mounted.
"""

from __future__ import annotations

import codecs
import contextlib
import difflib
import json
import os
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio

from agentbay_mcp.backends.common.workspace_specs import WorkspaceSpec
from agentbay_mcp.backends.local import idmap
from agentbay_mcp.backends.local.layout import WORKSPACE_MOUNTS
from agentbay_mcp.backends.local.sandbox import UNPRIVILEGED_UID
from agentbay_mcp.backends.local.ws_apply import Target, apply_changes
from agentbay_mcp.backends.local.ws_tree import (
    MAX_ENTRIES,
    MAX_PATH_BYTES,
    MAX_TEXT_BYTES,
    O_DIR,
    Found,
    changed_since,
    open_no_links,
    origin_gone,
    read_at,
    shown,
    split_path,
    walk_upper,
)
from agentbay_mcp.backends.records import Capabilities
from agentbay_mcp.backends.records_workspaces import (
    WORKSPACE_ROOT,
    WorkspaceApplied,
    WorkspaceChange,
    WorkspaceDiff,
    WorkspaceInfo,
)
from agentbay_mcp.errors import BackendError, InvalidArgumentError

NONE_CONFIGURED = (
    "No workspaces are configured on this server: the operator offers host directories with "
    "--workspace NAME=/host/path[:ro|rw|overlay]."
)
NEEDS_ROOT_BWRAP = "Workspaces need the server to run as root with bubblewrap isolation (id-mapped mounts)."
# CLOCK_REALTIME_COARSE: what the kernel stamps ctimes with, so an edit right after the start is never older.
_COARSE = getattr(time, "CLOCK_REALTIME_COARSE", 5)
#: What tells a binary file from a text one past the diff's cap (git reads 8000 bytes).
_SNIFF_BYTES = 8000


def offer_workspaces(
    specs: Sequence[WorkspaceSpec],
    confined_root: bool,
    session_dir: Callable[[str], Path],
    read: Callable[[str], object],
) -> LocalWorkspaces:
    """The backend's workspaces: `specs` (the operator's), usable only by a root server with bwrap
    where id-mapped mounts work. `read(session_id)` raises SessionNotFoundError for a dead id."""
    reason = None
    if not specs:
        reason = NONE_CONFIGURED
    elif not confined_root:
        reason = NEEDS_ROOT_BWRAP
    else:
        with contextlib.suppress(OSError):
            reason = idmap.probe(Path(tempfile.gettempdir()), UNPRIVILEGED_UID)

    def live_dir(session_id: str) -> Path:
        read(session_id)
        return session_dir(session_id)

    return LocalWorkspaces(specs, reason, live_dir)


class LocalWorkspaces:
    """Workspaces of this server's sessions (the `Workspaces` protocol, plus what the backend calls)."""

    def __init__(self, specs: Sequence[WorkspaceSpec], reason: str | None, session_dir: Callable[[str], Path]) -> None:
        self._specs = {spec.name: spec for spec in specs}
        #: (st_dev, st_ino) of each host directory as the server found it at start: what it mounts.
        self._identities = {spec.name: _identity(str(spec.path)) for spec in specs}
        self._uid = UNPRIVILEGED_UID
        # One apply at a time per host directory, whichever session it comes from: an apply checks
        # conflicts and then writes, and two interleaved would each overwrite the other's files unseen.
        # A lock nobody holds is dropped by itself.
        self._locks: weakref.WeakValueDictionary[str, anyio.Lock] = weakref.WeakValueDictionary()
        self._namespaces: dict[tuple[int, int], int] = {}
        self._userns_lock = threading.Lock()  # sessions are assembled in worker threads
        #: Why sessions cannot have workspaces here (None: they can).
        self.reason = reason
        #: The directory of a live session id (SessionNotFoundError otherwise).
        self._session_dir = session_dir

    @property
    def usable(self) -> LocalWorkspaces | None:
        """This object where workspaces work, else None (the backend's `workspaces`)."""
        return self if self.reason is None else None

    def declare(self, capabilities: Capabilities) -> Capabilities:
        """`capabilities` with `workspaces` as this server can honour them (and why not)."""
        if self.reason is None:
            return capabilities.model_copy(update={"workspaces": True})
        unsupported = {**capabilities.unsupported, "workspaces": self.reason}
        return capabilities.model_copy(update={"workspaces": False, "unsupported": unsupported})

    def configured(self) -> list[WorkspaceInfo]:
        """The workspaces sessions may ask for, by name."""
        return [WorkspaceInfo(name=name, mode=spec.mode) for name, spec in sorted(self._specs.items())]

    def check(self, names: Sequence[str]) -> None:
        """Refuse names that are not configured (listing the ones that are) or given twice."""
        unknown = [name for name in names if name not in self._specs]
        if unknown:
            offered = ", ".join(sorted(self._specs))
            raise InvalidArgumentError(f"Unknown workspace {unknown[0]!r}. This server offers: {offered}.")
        if len(set(names)) != len(names):
            raise InvalidArgumentError("A workspace is named twice in workspaces.")

    # Building (in staging, in a thread) ------------------------------------------------------

    def assemble(self, session_dir: Path, names: Sequence[str], quota_disk: Path | None) -> None:
        """Mount the workspaces `names` under a (staging) session dir; BackendError if one cannot be (the
        caller removes the staging dir, which unmounts what was mounted)."""
        if not names:
            return
        (session_dir / WORKSPACE_MOUNTS).mkdir(mode=0o711)
        for name in names:
            try:
                self._mount(session_dir, name, quota_disk)
            except (OSError, subprocess.SubprocessError) as exc:
                raise BackendError(
                    f"Could not show workspace {name} ({self._specs[name].path}) in the session: {exc}"
                ) from exc

    def _mount(self, session_dir: Path, name: str, quota_disk: Path | None) -> None:
        spec = self._specs[name]
        here = session_dir / WORKSPACE_MOUNTS / name
        here.mkdir(mode=0o711)
        (here / "lower").mkdir(mode=0o700)
        swapped = f"{spec.path} is no longer the directory the server started with ({_SWAPPED})"
        source = open_no_links(str(spec.path))
        if source is None:
            raise OSError(swapped)
        try:
            if _identity_of(source) != self._identities[name]:
                raise OSError(swapped)
            self._mount_from(source, spec, here, quota_disk)
        finally:
            os.close(source)

    def _mount_from(self, source: int, spec: WorkspaceSpec, here: Path, quota_disk: Path | None) -> None:
        info = os.fstat(source)
        session_dir, name = here.parent.parent, spec.name
        layers = (quota_disk / WORKSPACE_MOUNTS / name) if quota_disk is not None else here
        state = {
            "mode": spec.mode,
            "path": str(spec.path),
            "uid": info.st_uid,
            "gid": info.st_gid,
            "started_ns": time.clock_gettime_ns(_COARSE),
            "identity": list(_identity_of(source)),
            "layers": str(layers.relative_to(session_dir)),
            "applied": {},
        }
        idmap.mount_idmapped(
            source, here / "lower", self._userns(info.st_uid, info.st_gid), read_only=spec.mode == "ro"
        )
        if spec.mode == "overlay":
            layers.mkdir(mode=0o700, parents=True, exist_ok=True)
            (layers / "upper").mkdir(mode=0o700)
            (layers / "work").mkdir(mode=0o700)
            os.chown(layers / "upper", self._uid, self._uid)
            os.chmod(layers / "upper", info.st_mode & 0o777)
            (here / "merged").mkdir(mode=0o700)
            idmap.mount_overlay(here / "lower", layers / "upper", layers / "work", here / "merged")
        _save(here, state)

    def _userns(self, uid: int, gid: int) -> int:
        """The user namespace mapping (uid, gid) to the sandbox uid: made once (a process spawn), then its fd
        is kept, which keeps it alive, for the server's life (one per owner of a workspace)."""
        key = (uid, gid)
        with self._userns_lock:
            if key not in self._namespaces:
                self._namespaces[key] = idmap.mapping_userns(uid, gid, self._uid)
            return self._namespaces[key]

    def binds(self, session_dir: Path) -> list[str]:
        """bwrap arguments showing the session's workspaces at /workspace/NAME (none: no /workspace)."""
        args: list[str] = []
        with contextlib.suppress(FileNotFoundError):
            for name in sorted(os.listdir(session_dir / WORKSPACE_MOUNTS)):
                state = _load(session_dir / WORKSPACE_MOUNTS / name)
                mode = state["mode"]
                source = session_dir / WORKSPACE_MOUNTS / name / ("merged" if mode == "overlay" else "lower")
                args += ["--ro-bind" if mode == "ro" else "--bind", str(source), f"{WORKSPACE_ROOT}/{name}"]
        return args

    # The protocol -----------------------------------------------------------------------------

    async def diff(self, session_id: str, name: str, max_bytes: int) -> WorkspaceDiff:
        """What the session changed in workspace `name`."""
        here = self._here(session_id, name)
        try:
            return await anyio.to_thread.run_sync(_diff, here, name, max_bytes)
        except FileNotFoundError:
            self._session_dir(session_id)  # SessionNotFoundError if it was deleted meanwhile
            raise

    async def apply(self, session_id: str, name: str, paths: Sequence[str] | None, overwrite: bool) -> WorkspaceApplied:
        """Write the session's changes (or those under `paths`) to the host directory."""
        wanted = None if paths is None else [_checked_path(path) for path in paths]
        here = self._here(session_id, name)
        spec = self._specs.get(name)  # (None for a session of an earlier server that offered other names)
        lock = self._locks.setdefault(str(spec.path) if spec is not None else name, anyio.Lock())
        async with lock:
            try:
                return await anyio.to_thread.run_sync(_apply, here, name, wanted, overwrite)
            except FileNotFoundError:
                self._session_dir(session_id)  # SessionNotFoundError if it was deleted meanwhile
                raise

    def _here(self, session_id: str, name: str) -> Path:
        top = self._session_dir(session_id) / WORKSPACE_MOUNTS
        here = top / name
        if not name or "/" in name or name.startswith(".") or not (here / "state.json").is_file():
            mine = sorted(os.listdir(top)) if top.is_dir() else []
            raise InvalidArgumentError(
                f"Session {session_id} has no workspace {name!r}"
                + (f" (it has: {', '.join(mine)})." if mine else " (it was created without workspaces).")
            )
        return here


_SWAPPED = "moved, removed, or a link along its path"


def _identity(path: str) -> tuple[int, int] | None:
    fd = open_no_links(path)
    if fd is None:
        return None
    try:
        return _identity_of(fd)
    finally:
        os.close(fd)


def _identity_of(fd: int) -> tuple[int, int]:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def _checked_path(path: str) -> str:
    try:
        return "/".join(split_path(path))
    except ValueError as exc:
        raise InvalidArgumentError(f"paths: {exc}.") from exc


def _save(here: Path, state: dict[str, object]) -> None:
    temp = here / ".state.json.tmp"
    temp.write_text(json.dumps(state))
    temp.replace(here / "state.json")


def _load(here: Path) -> dict[str, object]:
    state = json.loads((here / "state.json").read_text())
    if not isinstance(state, dict):
        raise BackendError(f"{here}/state.json is damaged")
    return state


class _Opened:
    """The fds of one workspace's host dir and upper dir, for one diff or apply."""

    def __init__(self, here: Path, state: dict[str, object]) -> None:
        host = open_no_links(str(state["path"]))
        # Moved or removed by its user while the session runs (which keeps its own mount of it), or a
        # link put along its path: said plainly, and nothing is read or written through it.
        if host is None or list(_identity_of(host)) != state.get("identity"):
            if host is not None:
                os.close(host)
            raise BackendError(
                f"The workspace {here.name}: its host directory {state['path']} is no longer the directory"
                f" the session started with ({_SWAPPED})."
            )
        self.host = host
        try:
            self.upper = os.open(here.parent.parent / str(state["layers"]) / "upper", O_DIR)
        except BaseException:
            os.close(self.host)
            raise

    def close(self) -> None:
        os.close(self.host)
        os.close(self.upper)


def _conflicts(opened: _Opened, found: Sequence[Found], state: dict[str, object]) -> set[str]:
    """Paths the host changed since the session started (other than by our own apply), or deleted
    while the session changed them (which looks like an addition)."""
    started, applied = int(state["started_ns"]), state.get("applied") or {}  # type: ignore[call-overload]
    assert isinstance(applied, dict)
    return {
        change.path
        for change in found
        if changed_since(
            opened.host, split_path(change.path.rstrip("/")), started, applied, below=change.kind == "deleted"
        )
        or (
            change.kind == "added"
            and change.what == "file"
            and origin_gone(opened.upper, split_path(change.path), opened.host)
        )
    }


def _diff(here: Path, name: str, max_bytes: int) -> WorkspaceDiff:
    state = _load(here)
    mode = state["mode"]
    if mode != "overlay":  # ro: nothing can change; rw: every change is on the host already
        return WorkspaceDiff(name=name, mode=mode, changes=(), diff="")
    opened = _Opened(here, state)
    try:
        found, truncated = walk_upper(opened.upper, opened.host)
        clashing = _conflicts(opened, found, state)
        changes, texts, size, listed, full = [], [], 0, 0, False
        for change in found:
            # The list has a cap of its own: a session's paths may be 4 KiB each, 200,000 of them.
            listed += len(change.path) + len(change.target or "")
            if listed > max_bytes:
                truncated = True
                break
            # Once a diff did not fit, no more are made (difflib's time grows with the square of the
            # lines: most of a second for a 300 KB file): only whether each file is binary.
            text, binary = ("", _binary(opened, change)) if full else _unified(opened, change)
            changes.append(
                WorkspaceChange(
                    path=_text(change.path),
                    kind=change.kind,
                    binary=binary,
                    conflict=change.path in clashing,
                    symlink=None if change.target is None else _text(change.target),
                )
            )
            if text and size + len(text) <= max_bytes:
                texts.append(text)
                size += len(text)
            elif text:
                truncated = full = True
        return WorkspaceDiff(
            name=name, mode="overlay", changes=tuple(changes), diff="".join(texts), truncated=truncated
        )
    finally:
        opened.close()


def _binary(opened: _Opened, change: Found) -> bool:
    """Whether a changed file is binary, told from its first bytes as git does (a NUL, or not UTF-8)."""
    if change.what != "file" or change.path.endswith("/"):
        return False
    side = opened.host if change.kind == "deleted" else opened.upper
    head = read_at(side, split_path(change.path), _SNIFF_BYTES)
    if head is None:
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)  # (a character cut at the end is fine)
    except UnicodeDecodeError:
        return True
    return b"\0" in head


def _unified(opened: _Opened, change: Found) -> tuple[str, bool]:
    """(the unified diff of a text file's change, whether the file is binary)."""
    if change.what != "file" or change.path.endswith("/"):
        return "", False
    parts = split_path(change.path)
    old = b"" if change.kind == "added" else read_at(opened.host, parts, MAX_TEXT_BYTES + 1)
    new = b"" if change.kind == "deleted" else read_at(opened.upper, parts, MAX_TEXT_BYTES + 1)
    if old is None or new is None:
        return "", False
    if len(old) > MAX_TEXT_BYTES or len(new) > MAX_TEXT_BYTES:
        return f"--- a/{shown(change.path)}\n+++ b/{shown(change.path)}\n(too large to show)\n", False
    try:
        if b"\0" in old or b"\0" in new:
            raise UnicodeDecodeError("utf-8", b"", 0, 1, "NUL")
        before, after = old.decode(), new.decode()
    except UnicodeDecodeError:
        return "", True
    lines = difflib.unified_diff(
        before.splitlines(keepends=True),
        after.splitlines(keepends=True),
        "/dev/null" if change.kind == "added" else f"a/{shown(change.path)}",
        "/dev/null" if change.kind == "deleted" else f"b/{shown(change.path)}",
    )
    return "".join(line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines), False


def _apply(here: Path, name: str, wanted: list[str] | None, overwrite: bool) -> WorkspaceApplied:
    state = _load(here)
    if state["mode"] != "overlay":
        raise InvalidArgumentError(
            f"Workspace {name} is {state['mode']}: "
            + ("the session cannot change it." if state["mode"] == "ro" else "its changes are on the host already.")
        )
    scope = None if wanted is None else _Wanted(wanted)
    opened = _Opened(here, state)
    try:
        found, truncated = walk_upper(opened.upper, opened.host, None if scope is None else scope.on_the_way)
        if scope is not None:
            found = [c for c in found if scope.covers(c.path.rstrip("/"))]
        clashing = set() if overwrite else _conflicts(opened, found, state)
        target = Target(opened.host, int(state["uid"]), int(state["gid"]))  # type: ignore[call-overload]
        outcome = apply_changes(target, opened.upper, [c for c in found if c.path not in clashing])
    finally:
        opened.close()
    if truncated:  # else a partial apply would look like a whole one
        outcome.refused.append(
            f"(the rest): the session changed more than one workspace_apply reads ({MAX_ENTRIES:,} entries or "
            f"{MAX_PATH_BYTES // 2**20} MiB of paths), and what lay past that was not applied: apply it "
            "by parts, naming directories in paths"
        )
    applied = dict(state.get("applied") or {})  # type: ignore[call-overload]
    applied.update(outcome.ctimes)
    # (Gone if the session was deleted while the apply ran: what reached the host is reported all the same.)
    with contextlib.suppress(FileNotFoundError):
        _save(here, {**state, "applied": applied})
    return WorkspaceApplied(
        name=name,
        applied=tuple(map(_text, sorted(outcome.applied))),
        conflicts=tuple(map(_text, sorted(clashing))),
        refused=tuple(map(_text, outcome.refused)),
    )


class _Wanted:
    """The `paths` of an apply: what they cover, and which directories lead to them (set lookups, so
    a wide tree costs its depth per entry, not the number of paths)."""

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = set(paths)
        self.ancestors = {path.rsplit("/", depth)[0] for path in paths for depth in range(1, path.count("/") + 1)}

    def covers(self, path: str) -> bool:
        """Whether `path` (or its shown form) is one of the paths or below one."""
        return any(self._covers(form) for form in {path, _text(path)})

    def on_the_way(self, path: str) -> bool:
        """Whether the walk enters directory `path`: covered, or leading to one of the paths."""
        return any(form in self.ancestors or self._covers(form) for form in {path, _text(path)})

    def _covers(self, path: str) -> bool:
        parts = path.split("/")
        return any("/".join(parts[:end]) in self.paths for end in range(1, len(parts) + 1))


def _text(path: str) -> str:
    """A session-made name as valid text for an answer: bytes that are not UTF-8 (which os functions
    give as surrogate escapes, and no answer can encode) become U+FFFD; `paths` accepts this form."""
    return path if path.isascii() else path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
