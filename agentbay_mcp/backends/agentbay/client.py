"""The AgentBay OpenAPI wire client: the envelope, retries and error mapping, all in this one place.

Every call is `POST <endpoint>/?Action=...&Version=2025-05-06&Format=json` with a form body that
carries `Authorization=Bearer <key>` (see shared/agentbay-wire.md). The key lives only in the form
body, never in the URL, so it cannot reach an exception, a log line or a tool result by way of a
request URL; any text that comes back is redacted before it is shown anyway.
"""

from __future__ import annotations

import json
import logging
import random
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import anyio
import httpx2

from agentbay_mcp.backends.agentbay.json_text import loads
from agentbay_mcp.errors import (
    AgentBayMCPError,
    AuthenticationError,
    BackendError,
    CloudAPIError,
    SessionNotFoundError,
    UnknownImageError,
)

logger = logging.getLogger(__name__)

API_VERSION = "2025-05-06"
KEY_HINT = (
    "Set AGENTBAY_API_KEY to an API key from the AgentBay console (https://agentbay.console.aliyun.com, "
    "API keys page), then restart the server."
)
#: Error codes (or their prefixes) that mean "try again later" rather than "you asked wrongly".
TRANSIENT_CODES = ("Throttling", "ServiceUnavailable", "InternalError", "ServiceBusy", "RequestTimeout")
_AUTH_CODES = ("InvalidApiKey", "ApiKey", "Unauthorized", "InvalidAuthorization", "Forbidden", "AccessDenied")
_jitter = random.SystemRandom()
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently transient failures are retried (full-jitter exponential backoff)."""

    attempts: int = 4
    base_seconds: float = 0.25
    max_seconds: float = 4.0

    def delay(self, retry: int) -> float:
        """Seconds to sleep before retry number `retry` (0-based)."""
        return _jitter.uniform(0, min(self.max_seconds, self.base_seconds * 2**retry))


@dataclass(frozen=True)
class ApiReply:
    """A successful API call: the request id, `Data`, and the whole body (ListSession pages at the top)."""

    request_id: str
    data: Any
    body: dict[str, Any]


class _TransientError(Exception):
    """A failure worth retrying on an idempotent call; carries the error to raise if retries run out."""

    def __init__(self, error: AgentBayMCPError, *, before_sending: bool = False) -> None:
        super().__init__(str(error))
        self.error = error
        self.before_sending = before_sending


def base_url(endpoint: str | None, region_id: str) -> str:
    """The API's base URL: an override (host[:port] means HTTPS) or agentbay.<region>.aliyuncs.com."""
    if endpoint:
        return endpoint.rstrip("/") if "://" in endpoint else f"https://{endpoint.strip('/')}"
    return f"https://agentbay.{region_id}.aliyuncs.com"


class AgentBayClient:
    """Calls AgentBay actions and in-session tools over one shared `httpx2.AsyncClient`."""

    def __init__(
        self,
        http: httpx2.AsyncClient,
        *,
        api_key: str,
        endpoint: str,
        timeout_ms: int,
        retry: RetryPolicy | None = None,
    ) -> None:
        self._http = http
        self._api_key = api_key
        self.endpoint = endpoint
        self.timeout_seconds = timeout_ms / 1000
        self.retry = retry or RetryPolicy()

    def redact(self, text: str) -> str:
        """`text` with the API key (should a server ever echo it) blotted out."""
        return text.replace(self._api_key, "***") if self._api_key else text

    async def call(
        self,
        action: str,
        params: Mapping[str, str | int | bool | None],
        *,
        idempotent: bool,
        timeout_seconds: float | None = None,
        query: Mapping[str, str] | None = None,
    ) -> ApiReply:
        """Call `action`; transient failures are retried only when `idempotent` (or nothing was sent).

        `query` goes in the URL (GetSessionDetail wants SessionId there); never put secrets in it.
        """
        if not self._api_key:
            raise AuthenticationError(f"No AgentBay API key is configured. {KEY_HINT}")
        form = {"Authorization": f"Bearer {self._api_key}"}
        for key, value in params.items():
            if value is not None:
                form[key] = str(value).lower() if isinstance(value, bool) else str(value)
        timeout = timeout_seconds or self.timeout_seconds
        merged = {**params, **(query or {})}
        return await self._retrying(
            f"AgentBay {action}", idempotent, lambda: self._once(action, form, merged, timeout, query or {})
        )

    async def _retrying(self, what: str, idempotent: bool, attempt: Callable[[], Awaitable[T]]) -> T:
        """Run `attempt`, retrying transient failures with backoff: any call if nothing was sent,
        otherwise only idempotent ones, at most `retry.attempts` times in all."""
        retry = 0
        while True:
            try:
                return await attempt()
            except _TransientError as failure:
                if retry + 1 >= self.retry.attempts or not (idempotent or failure.before_sending):
                    raise failure.error from failure.__cause__
                delay = self.retry.delay(retry)
                logger.info("%s: %s; retrying in %.2f s", what, failure.error, delay)
                retry += 1
                await anyio.sleep(delay)

    async def _post(self, what: str, url: str, timeout: float, **request: Any) -> httpx2.Response:
        """One POST; transport failures become transient errors that say what failed, never with the key."""
        try:
            return await self._http.post(url, timeout=timeout, **request)
        except (httpx2.ConnectError, httpx2.ConnectTimeout, httpx2.PoolTimeout) as exc:
            # Nothing reached the server: safe to retry even a create.
            error = BackendError(f"Could not connect to {what} ({type(exc).__name__}). {_NET}")
            raise _TransientError(error, before_sending=True) from exc
        except httpx2.TimeoutException as exc:
            raise _TransientError(BackendError(f"No answer from {what} within {timeout:g} s. {_NET}")) from exc
        except httpx2.TransportError as exc:
            error = BackendError(f"The connection to {what} broke ({type(exc).__name__}). {_NET}")
            raise _TransientError(error) from exc

    async def _once(
        self, action: str, form: dict[str, str], params: Mapping[str, object], timeout: float, extra: Mapping[str, str]
    ) -> ApiReply:
        query = {
            **extra,
            "Action": action,
            "Version": API_VERSION,
            "Format": "json",
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "SignatureNonce": secrets.token_hex(16),
        }
        headers = {"x-acs-action": action, "x-acs-version": API_VERSION, "accept": "application/json"}
        what = f"AgentBay at {self.endpoint} ({action})"
        response = await self._post(what, self.endpoint + "/", timeout, params=query, data=form, headers=headers)
        return self._reply(action, response, params)

    def _reply(self, action: str, response: httpx2.Response, params: Mapping[str, object]) -> ApiReply:
        status = response.status_code
        try:
            body = loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if not isinstance(body, dict):
            raise _TransientError(
                CloudAPIError(
                    f"AgentBay sent a malformed reply to {action} (HTTP {status}, not a JSON object). {_NET}",
                    status=status,
                )
            )
        request_id = str(body.get("RequestId") or response.headers.get("x-acs-request-id") or "")
        code = str(body.get("Code") or "")
        failed = status >= 400 or body.get("Success") is False
        if not failed:
            return ApiReply(request_id=request_id, data=body.get("Data"), body=body)
        message = self.redact(str(body.get("Message") or ""))[:500]
        mapped = map_error(action, status, code, message, request_id, params)
        if status >= 500 or status == 429 or code.startswith(TRANSIENT_CODES):
            raise _TransientError(mapped)
        raise mapped

    async def call_link(
        self,
        link_url: str,
        token: str,
        *,
        server: str,
        tool: str,
        args: Mapping[str, Any],
        idempotent: bool,
        timeout_seconds: float | None = None,
    ) -> Any:
        """Call an in-session tool directly on the session's LinkUrl; returns the reply's `data`."""
        payload = {
            "args": dict(args),
            "server": server,
            "requestId": secrets.token_hex(12),
            "tool": tool,
            "token": token,
        }
        timeout = timeout_seconds or self.timeout_seconds
        where = f"the session's direct tool endpoint ({tool})"
        url = link_url.rstrip("/") + "/callTool"

        async def attempt() -> Any:
            response = await self._post(where, url, timeout, json=payload, headers={"X-Access-Token": token})
            return self._link_data(where, response)

        return await self._retrying(where, idempotent, attempt)

    async def fetch(self, url: str, *, max_bytes: int) -> bytes:
        """GET a file the service handed out (a screenshot URL): no credentials sent, size bounded."""
        if not url.startswith(("https://", "http://")):
            raise BackendError("AgentBay returned a screenshot location that is not an http(s) URL.")
        where = "the screenshot download"

        async def attempt() -> bytes:
            try:
                async with self._http.stream("GET", url, timeout=self.timeout_seconds) as response:
                    if response.status_code != 200:
                        status = response.status_code
                        error = CloudAPIError(f"{where} failed (HTTP {status}).", status=status)
                        if response.status_code >= 500:
                            raise _TransientError(error)
                        raise error
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > max_bytes:
                            raise BackendError(f"{where} is larger than {max_bytes} bytes; refused.")
                    return bytes(body)
            except httpx2.TransportError as exc:
                raise _TransientError(BackendError(f"{where} failed ({type(exc).__name__}). {_NET}")) from exc

        return await self._retrying(where, True, attempt)

    def _link_data(self, where: str, response: httpx2.Response) -> Any:
        status = response.status_code
        if status in (401, 403):
            raise CloudAPIError(f"{where} refused the session token (HTTP {status})", status=status)
        try:
            body = loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        if status >= 500 or status == 429:
            raise _TransientError(CloudAPIError(f"{where} failed (HTTP {status}). {_NET}", status=status))
        if not isinstance(body, dict) or "data" not in body:
            raise _TransientError(
                CloudAPIError(f"{where} sent a malformed reply (HTTP {status}). {_NET}", status=status)
            )
        if status >= 400:
            raise CloudAPIError(f"{where} failed (HTTP {status}): {self.redact(str(body))[:300]}", status=status)
        return body["data"]


_NET = "This is usually transient (network, throttling or the service); try again in a moment."


def map_error(
    action: str, status: int, code: str, message: str, request_id: str, params: Mapping[str, object]
) -> AgentBayMCPError:
    """An API error as the project's exception: the one place AgentBay codes are interpreted."""
    support = f" (AgentBay request id {request_id})" if request_id else ""
    if status in (401, 403) or any(marker in code for marker in _AUTH_CODES):
        return AuthenticationError(f"AgentBay rejected the API key: [{code or status}] {message}{support}. {KEY_HINT}")
    if "NotFound" in code and "Session" in code:
        return SessionNotFoundError(str(params.get("SessionId") or ""))
    if "Image" in code and action == "CreateMcpSession":
        return UnknownImageError(
            f"AgentBay does not offer image_id {str(params.get('ImageId'))!r}: [{code}] {message}{support}. "
            "Standard images: linux_latest, code_latest, browser_latest, windows_latest, mobile_latest "
            "(or a custom imgc-... image of your account)."
        )
    if code.startswith("Throttling") or status == 429:
        return CloudAPIError(
            f"AgentBay is throttling requests ({code or status}) and still was after retries{support}. "
            "Wait a little and try again.",
            code=code,
            request_id=request_id,
            status=status,
        )
    return CloudAPIError(
        f"AgentBay {action} failed: [{code or 'HTTP ' + str(status)}] {message}{support}",
        code=code,
        request_id=request_id,
        status=status,
    )
