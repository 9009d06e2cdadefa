"""The emulator's context API: GetContext, ListContexts, ModifyContext, DeleteContext, SyncContext,
GetContextInfo, and PersistenceDataList on CreateMcpSession, served by the local backend's contexts.

Shapes follow the official SDK's request and response models (agentbay/api/models/_*context*):
contexts are `{Id, Name, State, CreateTime, LastUsedTime, OsType}`; ListContexts pages with
MaxResults/NextToken/TotalCount beside Data; GetContextInfo answers `Data.ContextStatus`, JSON text
of `[{"type": "data", "data": "<JSON text of [{contextId, path, status, taskType, errorMessage,
startTime, finishTime}]>"}]`. The cloud's code for an unknown context is not documented: the
emulator answers `InvalidContext.NotFound` (HTTP 400).

The content lives in the local backend's context store, under one owner for the whole emulated
account (`ACCOUNT`). Cloud names are free text, local names are not, so each cloud name maps to a
local name derived from it (`e<sha256(cloud name)[:40]>`); the map (cloud name <-> local name) is
the emulator's own, kept in `<state dir>/emulator-contexts.json`, and is what ModifyContext renames.
Cloud Ids are the local contexts' ids. Emulated sessions are local sessions, so a mount is copied in
at create and written back when the session ends (as the cloud's UploadBeforeResourceRelease does),
and SyncContext(upload) is the local sync, run in the background as a task GetContextInfo reports.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from anyio.abc import TaskGroup
from starlette.requests import Request

from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.records_contexts import ContextMount, ContextRecord
from agentbay_mcp.emulator.sessions import ApiFaultError, Paged, Sessions
from agentbay_mcp.errors import AgentBayMCPError, ContextNotFoundError, InvalidArgumentError

#: The one principal every context of the emulated account belongs to, in the local backend.
ACCOUNT = "emulator-account"
MAX_NAME_CHARS = 256
MAX_MOUNTS = 32


def _not_found(what: str) -> ApiFaultError:
    return ApiFaultError(400, "InvalidContext.NotFound", f"Context {what[:80]!r} not found")


def _when(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


class EmulatorContexts:
    """The emulated account's contexts (names map, sync tasks) over the local backend's."""

    def __init__(self, backend: LocalBackend, state_dir: Path, task_group: TaskGroup) -> None:
        self.local = backend.contexts
        self._task_group = task_group
        self._names_file = state_dir / "emulator-contexts.json"
        try:
            loaded = json.loads(self._names_file.read_text())
        except (OSError, ValueError):
            loaded = {}
        self.names: dict[str, str] = {str(k): str(v) for k, v in loaded.items()} if isinstance(loaded, dict) else {}
        #: session id -> its sync tasks, as GetContextInfo reports them
        self.tasks: dict[str, list[dict[str, Any]]] = {}

    def save(self) -> None:
        temporary = self._names_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.names))
        os.replace(temporary, self._names_file)

    def cloud_name(self, local_name: str) -> str | None:
        return next((cloud for cloud, local in self.names.items() if local == local_name), None)

    def item(self, record: ContextRecord) -> dict[str, Any]:
        """A context as the cloud describes it."""
        return {
            "Id": record.context_id,
            "Name": self.cloud_name(record.name) or record.name,
            "State": "available",
            "CreateTime": _when(record.created_at),
            "LastUsedTime": _when(record.last_used_at),
            "OsType": "linux",
        }

    async def by_id(self, context_id: str) -> ContextRecord:
        for record in await self.local.list_contexts(ACCOUNT):
            if record.context_id == context_id and self.cloud_name(record.name) is not None:
                return record
        raise _not_found(context_id)

    async def by_name(self, name: str, *, create: bool) -> ContextRecord:
        if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
            raise ApiFaultError(400, "InvalidParameter.Name", "Name must be 1-256 printable characters")
        local_name = self.names.get(name) or "e" + hashlib.sha256(name.encode()).hexdigest()[:40]
        if name not in self.names and not create:
            raise _not_found(name)
        try:
            record = await self.local.get_context(ACCOUNT, local_name, create=create)
        except ContextNotFoundError as exc:
            raise _not_found(name) from exc
        if name not in self.names:
            self.names[name] = local_name
            self.save()
        return record

    def mounts(self, raw: str) -> list[ContextMount]:
        """A CreateMcpSession's PersistenceDataList, checked; each Id must be an existing context (resolved
        by the caller, `resolve_mounts`)."""
        try:
            items = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ApiFaultError(400, "InvalidParameter.PersistenceDataList", "PersistenceDataList is not JSON") from exc
        if not isinstance(items, list) or len(items) > MAX_MOUNTS:
            raise ApiFaultError(400, "InvalidParameter.PersistenceDataList", "PersistenceDataList must be a list")
        mounts = []
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("ContextId"), str):
                raise ApiFaultError(400, "InvalidParameter.ContextId", "Each item needs a ContextId")
            path = item.get("Path")
            if not isinstance(path, str) or not path.startswith("/"):
                raise ApiFaultError(400, "InvalidParameter.Path", "Each item needs an absolute Path")
            policy = item.get("Policy")
            if policy is not None:
                try:
                    if not isinstance(policy, str) or not isinstance(json.loads(policy), dict):
                        raise ValueError("not an object")
                except ValueError as exc:
                    raise ApiFaultError(400, "InvalidParameter.Policy", "Policy must be a JSON object's text") from exc
            mounts.append(ContextMount(context_id=item["ContextId"], name="-", owner=ACCOUNT, path=path))
        return mounts

    async def resolve_mounts(self, mounts: list[ContextMount]) -> list[ContextMount]:
        """The mounts with their local names (an unknown Id is the NotFound fault)."""
        return [m.model_copy(update={"name": (await self.by_id(m.context_id)).name}) for m in mounts]

    def downloaded(self, session_id: str, mounts: list[ContextMount]) -> None:
        """The create-time copies are done: one finished download task per mount."""
        now = int(time.time() * 1000)
        self.tasks[session_id] = [_task(m, "download", "Success", now) for m in mounts]

    def start_upload(self, session_id: str, mount: ContextMount) -> None:
        """An upload task, Running until the local sync (in the background) ends."""
        tasks = self.tasks.setdefault(session_id, [])
        tasks[:] = [
            t
            for t in tasks
            if not (t["contextId"] == mount.context_id and t["path"] == mount.path and t["taskType"] == "upload")
        ]
        task = _task(mount, "upload", "Running", int(time.time() * 1000))
        tasks.append(task)
        self._task_group.start_soon(self._upload, session_id, mount, task)

    async def _upload(self, session_id: str, mount: ContextMount, task: dict[str, Any]) -> None:
        try:
            await self.local.sync_context(session_id, mount.name)
            task["status"] = "Success"
        except (AgentBayMCPError, ApiFaultError) as exc:
            task.update(status="Failed", errorMessage=str(exc)[:300])
        task["finishTime"] = int(time.time() * 1000)


def _task(mount: ContextMount, task_type: str, status: str, now: int) -> dict[str, Any]:
    finish = now if status in ("Success", "Failed") else 0
    return {
        "contextId": mount.context_id,
        "path": mount.path,
        "status": status,
        "taskType": task_type,
        "errorMessage": "",
        "startTime": now,
        "finishTime": finish,
    }


def _state(sessions: Sessions) -> EmulatorContexts:
    if sessions.contexts is None:
        raise ApiFaultError(501, "NotImplemented", "This emulator serves no contexts.")
    return sessions.contexts


async def get_context(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """GetContext: by Name (AllowCreate makes it) or by ContextId."""
    state = _state(sessions)
    create = form.get("AllowCreate", "false").lower() == "true"
    if form.get("ContextId"):
        if create:
            raise ApiFaultError(400, "InvalidParameter", "AllowCreate needs a Name, not a ContextId")
        return state.item(await state.by_id(form["ContextId"]))
    return state.item(await state.by_name(form.get("Name", ""), create=create))


async def list_contexts(sessions: Sessions, form: dict[str, str], request: Request) -> Paged:
    """ListContexts: every context (or a session's, with SessionId), MaxResults (1-100), NextToken."""
    state = _state(sessions)
    try:
        limit = int(form.get("MaxResults") or 10)
        start = int(form.get("NextToken") or 0)
    except ValueError as exc:
        raise ApiFaultError(400, "InvalidParameter", "MaxResults and NextToken must be numbers") from exc
    if not 1 <= limit <= 100 or start < 0:
        raise ApiFaultError(400, "InvalidParameter.MaxResults", "MaxResults must be 1..100")
    records = [r for r in await state.local.list_contexts(ACCOUNT) if state.cloud_name(r.name) is not None]
    if form.get("SessionId"):
        mounted = {m.context_id for m in sessions.get(form["SessionId"]).mounts}
        records = [r for r in records if r.context_id in mounted]
    records.sort(key=lambda r: (r.created_at, r.context_id))
    page = records[start : start + limit]
    token = str(start + limit) if start + limit < len(records) else ""
    return Paged([state.item(r) for r in page], {"NextToken": token, "MaxResults": limit, "TotalCount": len(records)})


async def modify_context(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """ModifyContext: rename (the emulator's name map changes; the content stays where it is)."""
    state = _state(sessions)
    record = await state.by_id(form.get("Id", ""))
    new = form.get("Name", "")
    if not new or len(new) > MAX_NAME_CHARS or not new.isprintable():
        raise ApiFaultError(400, "InvalidParameter.Name", "Name must be 1-256 printable characters")
    old = state.cloud_name(record.name)
    if new != old:
        if new in state.names:
            raise ApiFaultError(400, "InvalidParameter.Name", f"A context named {new[:80]!r} exists")
        state.names[new] = state.names.pop(old or "")
        state.save()
    return None


async def delete_context(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """DeleteContext: refused while a session has it mounted."""
    state = _state(sessions)
    record = await state.by_id(form.get("Id", ""))
    try:
        await state.local.delete_context(ACCOUNT, record.name)
    except ContextNotFoundError as exc:
        raise _not_found(form.get("Id", "")) from exc
    except InvalidArgumentError as exc:
        raise ApiFaultError(400, "OperationDenied.ContextInUse", "The context is in use by a session") from exc
    state.names.pop(state.cloud_name(record.name) or "", None)
    state.save()
    return None


async def sync_context(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """SyncContext: Mode upload (the default) writes the session's mounts (or one ContextId/Path) back."""
    state = _state(sessions)
    session = sessions.get(form.get("SessionId", ""))
    mode = form.get("Mode") or "upload"
    if mode != "upload":
        raise ApiFaultError(400, "InvalidParameter.Mode", "The emulator syncs Mode upload only")
    chosen = [
        m
        for m in session.mounts
        if (not form.get("ContextId") or m.context_id == form["ContextId"])
        and (not form.get("Path") or m.path == form["Path"])
    ]
    if (form.get("ContextId") or form.get("Path")) and not chosen:
        raise ApiFaultError(400, "InvalidParameter.ContextId", "The session has no such context mounted")
    for mount in chosen:
        state.start_upload(session.session_id, mount)
    return None


async def get_context_info(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """GetContextInfo: the session's sync tasks, filtered by ContextId, Path and TaskType."""
    state = _state(sessions)
    session = sessions.get(form.get("SessionId", ""), deleting_too=True)
    wanted = {"contextId": form.get("ContextId"), "path": form.get("Path"), "taskType": form.get("TaskType")}
    tasks = [
        dict(t)
        for t in state.tasks.get(session.session_id, [])
        if all(not value or t[key] == value for key, value in wanted.items())
    ]
    return {"ContextStatus": json.dumps([{"type": "data", "data": json.dumps(tasks)}])}


async def session_mounts(sessions: Sessions, form: dict[str, str]) -> list[ContextMount]:
    """CreateMcpSession's PersistenceDataList as local mounts (none without it)."""
    raw = form.get("PersistenceDataList")
    if not raw:
        return []
    state = _state(sessions)
    return await state.resolve_mounts(state.mounts(raw))
