"""The emulator's HTTP side: AgentBay's RPC actions and the direct LinkUrl tool path, on Starlette.

Wire details follow shared/agentbay-wire.md and Alibaba's SDK: `POST /?Action=...&Version=2025-05-06`
with a form body carrying `Authorization=Bearer <key>`, answered with the envelope
`{RequestId, Success, Code, Message, HttpStatusCode, Data}`. Errors carry HTTP 4xx/5xx and a code.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.local.sandbox import SandboxOptions
from agentbay_mcp.emulator import contexts, tools
from agentbay_mcp.emulator.links import get_link
from agentbay_mcp.emulator.sessions import ApiFaultError, Paged, Sessions

logger = logging.getLogger(__name__)

API_VERSION = "2025-05-06"
#: Without LinkUrl, AgentBay limits a tool message to about 63 KB; the emulator enforces it.
MESSAGE_LIMIT = 63 * 1024

Handler = Callable[[Sessions, dict[str, str], Request], Awaitable[Any]]


def envelope(request_id: str, data: Any = None, **top: Any) -> dict[str, Any]:
    """A successful reply."""
    return {
        "RequestId": request_id,
        "Success": True,
        "Code": "ok",
        "Message": "",
        "HttpStatusCode": 200,
        "Data": data,
        **top,
    }


def _labels_param(form: dict[str, str], required: bool = False) -> dict[str, str]:
    raw = form.get("Labels")
    if not raw:
        if required:
            raise ApiFaultError(400, "InvalidParameter.Labels", "Labels is required")
        return {}
    try:
        labels = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ApiFaultError(400, "InvalidParameter.Labels", "Labels must be a JSON object") from exc
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in labels.items()
    ):
        raise ApiFaultError(400, "InvalidParameter.Labels", "Labels keys and values must be non-empty strings")
    return labels


def _session_data(sessions: Sessions, session_id: str, request: Request) -> dict[str, Any]:
    session = sessions.get(session_id)
    data: dict[str, Any] = {
        "SessionId": session.session_id,
        "ResourceUrl": "",
        "AppInstanceId": "ai-" + session.session_id[-12:],
        "ResourceId": "r-" + session.session_id[-12:],
        "ImageId": session.image_id,
        "Status": session.status,
        "ToolList": json.dumps(tools.tool_list()),
    }
    if sessions.link_url:
        data["LinkUrl"] = f"{str(request.base_url).rstrip('/')}/link/{session.session_id}"
        data["Token"] = session.token
    return data


async def create_session(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """CreateMcpSession (PersistenceDataList: contexts copied in before it answers)."""
    mounts = await contexts.session_mounts(sessions, form)
    session = await sessions.create(form.get("ImageId") or "linux_latest", _labels_param(form), mounts)
    return _session_data(sessions, session.session_id, request)


async def get_session(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """GetSession."""
    return _session_data(sessions, form.get("SessionId", ""), request)


async def get_session_detail(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """GetSessionDetail (SessionId in the query, as the SDK sends it)."""
    session_id = request.query_params.get("SessionId") or form.get("SessionId", "")
    session = sessions.get(session_id, deleting_too=True)
    return {"SessionId": session_id, "Status": session.status, "ImageId": session.image_id, "RegionId": "emulator"}


async def list_sessions(sessions: Sessions, form: dict[str, str], request: Request) -> Paged:
    """ListSession: label filter (every pair must match), MaxResults, NextToken."""
    try:
        limit = int(form.get("MaxResults") or 10)
    except ValueError as exc:
        raise ApiFaultError(400, "InvalidParameter.MaxResults", "MaxResults must be a number") from exc
    page, token, total = sessions.page(_labels_param(form), limit, form.get("NextToken") or "", form.get("ImageId"))
    items = [
        {
            "SessionId": s.session_id,
            "SessionStatus": s.status,
            "AppInstanceId": "ai-" + s.session_id[-12:],
            "ImageId": s.image_id,
        }
        for s in page
    ]
    return Paged(items, {"NextToken": token, "MaxResults": limit, "TotalCount": total})


async def delete_async(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """DeleteSessionAsync: DELETING at once, gone a moment later."""
    sessions.delete_soon(form.get("SessionId", ""))
    return None


async def release(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """ReleaseMcpSession: the legacy synchronous delete."""
    await sessions.delete(form.get("SessionId", ""))
    return None


async def set_label(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """SetLabel: replaces the whole map."""
    sessions.get(form.get("SessionId", "")).labels = _labels_param(form, required=True)
    return None


async def get_label(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """GetLabel."""
    return {"Labels": json.dumps(sessions.get(form.get("SessionId", "")).labels)}


async def refresh(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """RefreshSessionIdleTime."""
    sessions.get(form.get("SessionId", ""))
    return None


async def get_resource(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """GetMcpResource."""
    session = sessions.get(form.get("SessionId", ""))
    return {"SessionId": session.session_id, "ResourceUrl": "", "DesktopInfo": {}}


async def list_tools(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """ListMcpTools."""
    return json.dumps(tools.tool_list())


async def call_tool(sessions: Sessions, form: dict[str, str], request: Request) -> Any:
    """CallMcpTool: the message size limit applies on this path."""
    session = sessions.get(form.get("SessionId", ""))
    raw_args = form.get("Args") or "{}"
    if len(raw_args.encode()) > MESSAGE_LIMIT:
        raise ApiFaultError(400, "InvalidParameter.Args", f"Args is over the {MESSAGE_LIMIT}-byte message limit")
    try:
        args = json.loads(raw_args)
    except json.JSONDecodeError as exc:
        raise ApiFaultError(400, "InvalidParameter.Args", "Args must be a JSON object") from exc
    if not isinstance(args, dict):
        raise ApiFaultError(400, "InvalidParameter.Args", "Args must be a JSON object")
    desk = sessions.desktop
    desk.base_url = str(request.base_url)
    reply = await tools.call_tool(sessions.backend, session.session_id, form.get("Name", ""), args, desk)
    if len(json.dumps(reply, ensure_ascii=False).encode()) > MESSAGE_LIMIT:
        return tools.result(f"The result is over the {MESSAGE_LIMIT}-byte message limit: read in pieces.", True)
    return reply


ACTIONS: dict[str, Handler] = {
    "CreateMcpSession": create_session,
    "GetSession": get_session,
    "GetSessionDetail": get_session_detail,
    "ListSession": list_sessions,
    "DeleteSessionAsync": delete_async,
    "ReleaseMcpSession": release,
    "SetLabel": set_label,
    "GetLabel": get_label,
    "RefreshSessionIdleTime": refresh,
    "GetMcpResource": get_resource,
    "ListMcpTools": list_tools,
    "CallMcpTool": call_tool,
    "GetLink": get_link,
    "GetContext": contexts.get_context,
    "ListContexts": contexts.list_contexts,
    "ModifyContext": contexts.modify_context,
    "DeleteContext": contexts.delete_context,
    "SyncContext": contexts.sync_context,
    "GetContextInfo": contexts.get_context_info,
}


def _fault(request_id: str, fault: ApiFaultError) -> JSONResponse:
    body = {
        "RequestId": request_id,
        "Success": False,
        "Code": fault.code,
        "Message": fault.message,
        "HttpStatusCode": fault.status,
    }
    return JSONResponse(body, status_code=fault.status)


def _capture_route(holder: dict[str, Sessions]) -> Callable[[Request], Awaitable[Response]]:
    async def capture(request: Request) -> Response:
        """A system_screenshot image: served once, then gone (like a short-lived signed URL)."""
        token = request.path_params["name"].removesuffix(".png")
        data = holder["sessions"].desktop.captures.pop(token, None) if "sessions" in holder else None
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="image/png")

    return capture


def build_app(
    state_dir: Path, api_key: str, *, link_url: bool = True, sandbox: SandboxOptions | None = None
) -> Starlette:
    """The emulator as an ASGI app; its lifespan owns a LocalBackend on `state_dir`."""
    holder: dict[str, Sessions] = {}

    async def rpc(request: Request) -> JSONResponse:
        request_id = str(uuid.uuid4()).upper()
        form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
        try:
            # SyncContext's key travels in the query (the SDK puts it there); every other action's in the form.
            supplied = form.pop("Authorization", "") or request.query_params.get("Authorization", "")
            if not secrets.compare_digest(supplied.encode(), f"Bearer {api_key}".encode()):
                raise ApiFaultError(401, "InvalidApiKey.NotFound", "The API key is missing or not valid.")
            action = request.query_params.get("Action", "")
            if request.query_params.get("Version") != API_VERSION:
                raise ApiFaultError(400, "InvalidVersion", f"Version must be {API_VERSION}")
            handler = ACTIONS.get(action)
            if handler is None:
                raise ApiFaultError(400, "InvalidAction.NotFound", f"Unknown action {action[:60]!r}")
            data = await handler(holder["sessions"], form, request)
        except ApiFaultError as fault:
            return _fault(request_id, fault)
        if isinstance(data, Paged):  # ListSession, ListContexts: paging fields sit beside Data, at the top
            return JSONResponse(envelope(request_id, data.data, **data.top))
        return JSONResponse(envelope(request_id, data))

    async def link_call(request: Request) -> JSONResponse:
        sessions = holder["sessions"]
        try:
            payload = await request.json()
        except json.JSONDecodeError:
            return JSONResponse({"code": "InvalidJSON", "message": "body must be JSON"}, status_code=400)
        try:
            session = sessions.get(request.path_params["session_id"])
        except ApiFaultError as fault:
            return JSONResponse({"code": fault.code, "message": fault.message}, status_code=404)
        token = request.headers.get("x-access-token", "")
        if not isinstance(payload, dict) or not secrets.compare_digest(token.encode(), session.token.encode()):
            return JSONResponse({"code": "InvalidToken", "message": "bad or missing X-Access-Token"}, status_code=401)
        raw_args = payload.get("args")
        args: dict[str, Any] = raw_args if isinstance(raw_args, dict) else {}
        sessions.desktop.base_url = str(request.base_url)
        tool = str(payload.get("tool", ""))
        reply = await tools.call_tool(sessions.backend, session.session_id, tool, args, sessions.desktop)
        return JSONResponse({"data": {"result": reply}, "requestId": payload.get("requestId", "")})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        backend = LocalBackend(state_dir, sandbox=sandbox)
        async with anyio.create_task_group() as tg:
            await backend.start(tg)
            account = contexts.EmulatorContexts(backend, state_dir, tg)
            holder["sessions"] = Sessions(backend, tg, link_url=link_url, contexts=account)
            try:
                yield
            finally:
                with anyio.CancelScope(shield=True):
                    await holder["sessions"].close()
                    await backend.close()
                tg.cancel_scope.cancel()

    routes = [
        Route("/", rpc, methods=["POST"]),
        Route("/link/{session_id}/callTool", link_call, methods=["POST"]),
        Route("/captures/{name}", _capture_route(holder), methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)
