"""The AgentBay context API's wire shapes: cloud names, mounts in labels, PersistenceDataList, task status.

Pure functions (no I/O), shared by sessions.py (which creates sessions with mounts and rebuilds their
records from labels) and contexts.py (the context actions). Everything read back from the cloud is
hostile until checked: sizes are bounded before parsing, shapes are checked after.

- Cloud names: context names are account-wide in the cloud, so (owner, name) becomes
  `amcp-<sha256(owner)[:12]>-<name>`: two principals never collide, and an owner lists only its prefix.
- Mounts: a session's contexts live in memory for the sessions this process made, and in the label
  `agentbay-mcp.contexts` (JSON `[[context_id, name, owner, path], ...]`) so that a restarted server
  (reaping orphans) or another process of the instance rebuilds them from the cloud.
- PersistenceDataList: `[{ContextId, Path, Policy}]`, `Policy` being the JSON text of the SDK's
  default `SyncPolicy` (auto upload before the resources are released, auto download at create).
- GetContextInfo: `Data.ContextStatus` is JSON text of `[{"type": "data", "data": "<JSON text of
  [{contextId, path, status, taskType, errorMessage, startTime, finishTime}]>"}]`.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from agentbay_mcp.backends.agentbay.json_text import loads
from agentbay_mcp.backends.common.labels import RESERVED_PREFIX
from agentbay_mcp.backends.records_contexts import CONTEXT_NAME, ContextMount, ContextRecord
from agentbay_mcp.errors import BackendError, InvalidArgumentError

logger = logging.getLogger(__name__)

LABEL_CONTEXTS = RESERVED_PREFIX + "contexts"
#: A context id as the cloud hands it out (e.g. SdkCtx-04bdwfj7u22a1s30g) is short; anything long is not one.
MAX_ID_CHARS = 128
#: Bounds on the mounts label (what this program writes is far below them).
MAX_MOUNTS = 32
MAX_LABEL_CHARS = 16_000
#: Bounds on a GetContextInfo answer before it is parsed.
MAX_STATUS_CHARS = 1_000_000
MAX_TASKS = 1000
#: The SDK's default SyncPolicy: upload before release (and on SyncContext), download at create.
SYNC_POLICY: dict[str, Any] = {
    "uploadPolicy": {"autoUpload": True, "uploadStrategy": "UploadBeforeResourceRelease", "uploadMode": "File"},
    "downloadPolicy": {"autoDownload": True, "downloadStrategy": "DownloadAsync"},
    "deletePolicy": {"syncLocalFile": True},
    "extractPolicy": {"extract": True, "deleteSrcFile": True, "extractToCurrentFolder": False},
    "recyclePolicy": {"lifecycle": "Lifecycle_Forever", "paths": [""]},
    "bwList": {"whiteLists": [{"path": "", "excludePaths": [], "isPathRegex": False, "isExcludeRegex": False}]},
}


def owner_prefix(owner: str) -> str:
    """The cloud-name prefix of every context of `owner`."""
    return f"amcp-{hashlib.sha256(owner.encode()).hexdigest()[:12]}-"


def cloud_name(owner: str, name: str) -> str:
    """The account-wide cloud name of the owner's context `name` (the name is checked first)."""
    if not CONTEXT_NAME.fullmatch(name):
        raise BackendError(f"Context name {name[:80]!r} is not one this backend can store.")
    return owner_prefix(owner) + name


def persistence_data_list(mounts: Sequence[ContextMount]) -> str:
    """CreateMcpSession's PersistenceDataList for `mounts` (Policy is itself JSON text, as the SDK sends it)."""
    policy = json.dumps(SYNC_POLICY)
    return json.dumps([{"ContextId": m.context_id, "Path": m.path, "Policy": policy} for m in mounts])


def mounts_label(mounts: Sequence[ContextMount]) -> str:
    """The mounts label's value. InvalidArgumentError if `mounts_from_label` could not read it back: a
    restarted server would find no mounts in it and never write that session's contexts back."""
    label = json.dumps([[m.context_id, m.name, m.owner, m.path] for m in mounts], separators=(",", ":"))
    if len(label) > MAX_LABEL_CHARS or len(mounts) > MAX_MOUNTS or not all(_a_path(m.path) for m in mounts):
        raise InvalidArgumentError(
            f"These {len(mounts)} contexts' paths are too long together ({len(label)} characters with their "
            f"names; at most {MAX_LABEL_CHARS}): use shorter paths, or fewer contexts."
        )
    return label


def mounts_from_label(raw: str | None) -> tuple[ContextMount, ...]:
    """The mounts a label holds; a label this program did not write (bad shape, too big) holds none."""
    if not raw:
        return ()
    try:
        if len(raw) > MAX_LABEL_CHARS:
            raise ValueError("too long")
        items = loads(raw)
        if not isinstance(items, list) or len(items) > MAX_MOUNTS:
            raise ValueError("not a short list")
        mounts = []
        for item in items:
            if not (isinstance(item, list) and len(item) == 4 and all(isinstance(v, str) for v in item)):
                raise ValueError("not a mount")
            context_id, name, owner, path = item
            if not (_an_id(context_id) and CONTEXT_NAME.fullmatch(name) and _a_path(path)):
                raise ValueError("not a mount")
            mounts.append(ContextMount(context_id=context_id, name=name, owner=owner, path=path))
        return tuple(mounts)
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        logger.warning("ignoring a session's %s label that this program did not write (%s)", LABEL_CONTEXTS, exc)
        return ()


def _a_path(value: str) -> bool:
    return value.startswith("/") and len(value) <= 4096 and value.isprintable()


def _an_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_CHARS and value.isprintable() and " " not in value


def context_id_of(data: Any, action: str) -> str:
    """The `Id` of a GetContext answer's Data, checked."""
    context_id = data.get("Id") if isinstance(data, dict) else None
    if not _an_id(context_id):
        raise BackendError(f"AgentBay's {action} reply has no usable context Id.")
    return str(context_id)


def cloud_time(value: Any) -> datetime | None:
    """A CreateTime/LastUsedTime (ISO text, with or without zone; naive means UTC), else None."""
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def record_of(owner: str, item: Any, *, expect_name: str | None = None) -> ContextRecord | None:
    """The owner's context a GetContext/ListContexts item describes, or None when it is not the owner's
    (another prefix, a name this program never makes) or not a context at all."""
    if not isinstance(item, dict) or not _an_id(item.get("Id")):
        return None
    full = item.get("Name")
    prefix = owner_prefix(owner)
    if not isinstance(full, str) or not full.startswith(prefix):
        return None
    name = full[len(prefix) :]
    if not CONTEXT_NAME.fullmatch(name) or (expect_name is not None and name != expect_name):
        return None
    return ContextRecord(
        context_id=str(item["Id"]),
        name=name,
        owner=owner,
        created_at=cloud_time(item.get("CreateTime")) or datetime.fromtimestamp(0, UTC),
        last_used_at=cloud_time(item.get("LastUsedTime")),
    )


@dataclass(frozen=True)
class SyncTask:
    """One sync task of a session, as GetContextInfo reports it."""

    context_id: str
    path: str
    status: str
    task_type: str
    error: str


def sync_tasks(data: Any) -> list[SyncTask]:
    """The tasks of a GetContextInfo answer's Data (bounded, checked; the error text shortened and printable)."""
    raw = data.get("ContextStatus") if isinstance(data, dict) else None
    if raw is None or raw == "":
        return []
    if not isinstance(raw, str) or len(raw) > MAX_STATUS_CHARS:
        raise BackendError("AgentBay's GetContextInfo reply holds a ContextStatus that is not short JSON text.")
    try:
        outer = loads(raw)
        if not isinstance(outer, list) or len(outer) > MAX_TASKS:
            raise ValueError("not a short list")
        tasks: list[SyncTask] = []
        for entry in outer:
            if not isinstance(entry, dict) or entry.get("type") != "data":
                continue
            inner = entry.get("data", "[]")
            items = loads(inner) if isinstance(inner, str) else None
            if not isinstance(items, list) or len(tasks) + len(items) > MAX_TASKS:
                raise ValueError("not a short list")
            tasks.extend(_task(item) for item in items)
        return tasks
    except (ValueError, TypeError) as exc:
        raise BackendError(
            "AgentBay's GetContextInfo reply holds a ContextStatus that is not the expected JSON."
        ) from (exc)


def _task(item: Any) -> SyncTask:
    if not isinstance(item, dict):
        raise ValueError("not a task")
    fields = [item.get(k, "") for k in ("contextId", "path", "status", "taskType", "errorMessage")]
    texts = [v if isinstance(v, str) else "" for v in fields]
    error = "".join(c if c.isprintable() else " " for c in texts[4][:300])
    return SyncTask(texts[0][:MAX_ID_CHARS], texts[1][:4096], texts[2][:32], texts[3][:32], error)
