"""Where the local backend keeps contexts, and the file-system moves that keep them whole.

    <state_dir>/contexts/<owner-key>/            owner-key: sha256(owner principal), 16 hex digits
      .<name>.lock                               flock'ed by whoever works on the context (any server);
                                                 removed, still locked, with the context
      .~quota.lock                               flock'ed around a sync's quota check and commit
      <name>/meta.json                           context_id, name, owner, created_at, last_used_at, notice
      <name>/current -> v<N>                     the content in force; swapped by rename (atomic)
      <name>/v<N>/content/                       the files
      <name>/v<N>/version.json                   version, size_bytes, disk_bytes, file_count, synced_by, synced_at
      <name>/.sync-<random>/                     a version being written (litter if its writer died)
      .new~<name>~<random>/                      a context being created (litter if its creator died)
      .trash-<random>/                           a context being deleted (litter: removed at the owner's
                                                 next create or delete)

A version's files and its figures live together, so swapping `current` commits both at once: a crash
at any point leaves the old version or the new one whole, and the next locked use of the context
removes what is not current. Everything is 0700 and ours: sessions reach a context's files only
through the copy they are given, never a path into the store. Names are checked against CONTEXT_NAME
before any path is built from them.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from agentbay_mcp.backends.local.layout import remove_tree
from agentbay_mcp.backends.records_contexts import CONTEXT_NAME, ContextRecord
from agentbay_mcp.errors import InvalidArgumentError

CURRENT = "current"
SYNC_PREFIX = ".sync-"
TRASH_PREFIX = ".trash-"
NEW_PREFIX = ".new~"  # '~' is in no name, so one context's prefix never matches another's


def owner_key(owner: str) -> str:
    """The directory name of an owner (a principal name is not safe as a path)."""
    return hashlib.sha256(owner.encode()).hexdigest()[:16]


def check_name(name: str) -> str:
    """`name` if it is a valid context name, else InvalidArgumentError (it becomes a path part)."""
    if not CONTEXT_NAME.fullmatch(name):
        raise InvalidArgumentError(
            f"Invalid context name {name[:80]!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit."
        )
    return name


@dataclass(frozen=True)
class StoredContext:
    """A context as stored: its meta and the figures of its current version."""

    context_id: str
    name: str
    owner: str
    created_at: datetime
    last_used_at: datetime | None
    notice: str | None
    version: int
    size_bytes: int
    #: what its files take on a disk (holes take nothing): what showing it costs a session's disk quota
    disk_bytes: int
    file_count: int
    synced_by: str | None
    synced_at: datetime | None
    path: Path

    def record(self, in_use_by: tuple[str, ...] = ()) -> ContextRecord:
        """The protocol's record of it."""
        return ContextRecord(
            context_id=self.context_id,
            name=self.name,
            owner=self.owner,
            created_at=self.created_at,
            last_used_at=self.last_used_at,
            size_bytes=self.size_bytes,
            file_count=self.file_count,
            in_use_by=in_use_by,
            notice=self.notice,
        )

    def content(self) -> Path:
        """The current version's files."""
        return self.path / f"v{self.version}" / "content"


def _write_json(path: Path, document: Mapping[str, object]) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle)
    tmp.replace(path)


def _when(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) else None


class ContextStore:
    """The contexts of one state dir (all owners). Methods are blocking: call them in a thread."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def owner_dir(self, owner: str) -> Path:
        """Where an owner's contexts live."""
        return self.root / owner_key(owner)

    def context_dir(self, owner: str, name: str) -> Path:
        """The directory of a (checked) context name."""
        return self.owner_dir(owner) / check_name(name)

    @contextlib.contextmanager
    def locked(self, owner: str, name: str) -> Iterator[Path]:
        """Hold the context's cross-process lock (blocking); tidies litter first. Yields its directory."""
        directory = self.context_dir(owner, name)
        for path in (self.root, directory.parent):
            path.mkdir(mode=0o700, exist_ok=True)
        lock = _lock_file(directory)
        while True:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            # A delete removes the lock file while holding it: whoever waited on that file holds a lock
            # nobody else will take, and must take the file now at that path instead.
            try:
                held = os.fstat(fd)
                current = os.stat(lock)
                if (held.st_dev, held.st_ino) == (current.st_dev, current.st_ino):
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        try:
            self._tidy(directory)
            yield directory
        finally:
            os.close(fd)  # drops the flock

    @contextlib.contextmanager
    def owner_locked(self, owner: str) -> Iterator[None]:
        """Hold the owner's cross-process quota lock (blocking). Syncs of different contexts run in
        parallel, each measuring the others: this makes "measure the others, then commit" one step, so
        two syncs cannot both count the other as it was and together pass the quota. Taken after a
        context's lock, never before one ('~' is in no context name: no context's lock is this file)."""
        directory = self.owner_dir(owner)
        for path in (self.root, directory):
            path.mkdir(mode=0o700, exist_ok=True)
        fd = os.open(directory / ".~quota.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # drops the flock

    def _tidy(self, directory: Path) -> None:
        """Remove versions that are not current, and syncs and creations whose writer died (we hold the lock)."""
        for entry in os.listdir(directory.parent):
            if entry.startswith(f"{NEW_PREFIX}{directory.name}~"):
                remove_tree(directory.parent / entry)
        try:
            current = os.readlink(directory / CURRENT)
            names = os.listdir(directory)
        except FileNotFoundError:
            return
        for entry in names:
            if entry.startswith(SYNC_PREFIX) or (entry.startswith("v") and entry != current):
                remove_tree(directory / entry)
            elif entry.startswith(f".{CURRENT}."):  # a symlink swap cut short
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(directory / entry)

    def read(self, owner: str, name: str) -> StoredContext | None:
        """The context, or None if it does not exist (or is being deleted). Needs no lock."""
        directory = self.context_dir(owner, name)
        for _ in range(3):  # a sync may swap `current` and remove the old version between two reads
            try:
                meta = json.loads((directory / "meta.json").read_bytes())
                current = os.readlink(directory / CURRENT)
                figures = json.loads((directory / current / "version.json").read_bytes())
            except FileNotFoundError:
                if not directory.exists():
                    return None
                continue
            if meta.get("owner") != owner:  # two principals whose keys collide never share a context
                return None
            return StoredContext(
                context_id=str(meta["context_id"]),
                name=name,
                owner=str(meta["owner"]),
                created_at=_when(meta["created_at"]) or datetime.now(UTC),
                last_used_at=_when(meta.get("last_used_at")),
                notice=meta.get("notice"),
                version=int(figures["version"]),
                size_bytes=int(figures["size_bytes"]),
                disk_bytes=int(figures.get("disk_bytes", figures["size_bytes"])),  # saved before it was kept
                file_count=int(figures["file_count"]),
                synced_by=figures.get("synced_by"),
                synced_at=_when(figures.get("synced_at")),
                path=directory,
            )
        return None

    def names(self, owner: str) -> list[str]:
        """The owner's context names, sorted."""
        try:
            entries = os.listdir(self.owner_dir(owner))
        except FileNotFoundError:
            return []
        return sorted(entry for entry in entries if CONTEXT_NAME.fullmatch(entry))

    def create(self, owner: str, name: str, directory: Path) -> StoredContext:
        """Make the empty context (under its lock): assembled aside, then renamed into place."""
        self.tidy_owner(directory.parent)
        staging = directory.parent / f"{NEW_PREFIX}{name}~{secrets.token_hex(4)}"
        staging.mkdir(mode=0o700)
        try:
            now = datetime.now(UTC).isoformat()
            meta = {"context_id": "ctx-" + secrets.token_hex(8), "name": name, "owner": owner, "created_at": now}
            _write_json(staging / "meta.json", {**meta, "last_used_at": None, "notice": None})
            (staging / "v0").mkdir(mode=0o700)
            (staging / "v0" / "content").mkdir(mode=0o700)
            figures = {
                "version": 0, "size_bytes": 0, "disk_bytes": 0, "file_count": 0, "synced_by": None, "synced_at": None,
            }  # fmt: skip
            _write_json(staging / "v0" / "version.json", figures)
            os.symlink("v0", staging / CURRENT)
            staging.rename(directory)
        except BaseException:
            remove_tree(staging)
            raise
        made = self.read(owner, name)
        assert made is not None
        return made

    def update_meta(self, context: StoredContext, **changes: object) -> StoredContext:
        """Rewrite meta.json with `changes` (last_used_at, notice) applied (under the lock)."""
        updated = replace(context, **changes)  # type: ignore[arg-type]
        _write_json(
            context.path / "meta.json",
            {
                "context_id": updated.context_id,
                "name": updated.name,
                "owner": updated.owner,
                "created_at": updated.created_at.isoformat(),
                "last_used_at": updated.last_used_at.isoformat() if updated.last_used_at else None,
                "notice": updated.notice,
            },
        )
        return updated

    def new_version_dir(self, context: StoredContext) -> Path:
        """An empty directory to write the next version in (litter until `commit`)."""
        staging = context.path / f"{SYNC_PREFIX}{secrets.token_hex(6)}"
        staging.mkdir(mode=0o700)
        (staging / "content").mkdir(mode=0o700)
        return staging

    def commit(
        self, context: StoredContext, staging: Path, size: int, disk: int, files: int, session_id: str
    ) -> StoredContext:
        """Make `staging` the current version (one rename of a symlink), then drop the old one."""
        version = context.version + 1
        now = datetime.now(UTC)
        figures = {
            "version": version, "size_bytes": size, "disk_bytes": disk, "file_count": files,
            "synced_by": session_id, "synced_at": now.isoformat(),
        }  # fmt: skip
        _write_json(staging / "version.json", figures)
        staging.rename(context.path / f"v{version}")
        link = context.path / f".{CURRENT}.{secrets.token_hex(4)}"
        os.symlink(f"v{version}", link)
        os.replace(link, context.path / CURRENT)  # the commit point
        remove_tree(context.path / f"v{context.version}")
        committed = replace(
            context,
            version=version,
            size_bytes=size,
            disk_bytes=disk,
            file_count=files,
            synced_by=session_id,
            synced_at=now,
        )
        return self.update_meta(committed, last_used_at=now, notice=None)

    def delete(self, directory: Path) -> bool:
        """Remove the context (under its lock): renamed out of sight first, then its lock file, so that a
        principal creating and deleting contexts under new names leaves nothing behind. False if it did
        not exist."""
        trash = directory.parent / f"{TRASH_PREFIX}{secrets.token_hex(6)}"
        try:
            directory.rename(trash)
        except FileNotFoundError:
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(_lock_file(directory))  # still held: see `locked`
        remove_tree(trash)
        self.tidy_owner(directory.parent)
        return True

    def used_bytes(self, owner: str, *, besides: str) -> int:
        """The bytes of the owner's contexts other than `besides` (for the owner's byte quota): each counts
        what its files show or what it takes on disk (directories and small files' blocks), the greater."""
        total = 0
        for name in self.names(owner):
            if name != besides and (other := self.read(owner, name)) is not None:
                total += max(other.size_bytes, other.disk_bytes)
        return total

    def tidy_owner(self, owner_dir: Path) -> None:
        """Remove deletions and creations cut short (at the owner's next create or delete). A context being
        created is assembled under a name nobody else uses while its creator holds the context's lock."""
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(owner_dir):
                if entry.startswith(TRASH_PREFIX):
                    remove_tree(owner_dir / entry)


def _lock_file(directory: Path) -> Path:
    """A context's lock file: beside its directory, as it guards the directory's creation too."""
    return directory.parent / f".{directory.name}.lock"
