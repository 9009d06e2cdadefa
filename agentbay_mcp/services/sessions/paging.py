"""Opaque, tamper-evident pagination tokens.

A token names the last item of the previous page (keyset paging, so sessions created or deleted
between pages never make an item appear twice or be skipped) and is bound to the listing's filter.
It is signed with a per-process key: a token that was edited, made up, or issued for another
filter is refused with a clear error rather than silently restarting the listing.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping

from agentbay_mcp.errors import InvalidPageTokenError

_REFUSAL = (
    "next_token is not valid for this listing (it must be passed back exactly as list_sessions "
    "returned it, with the same labels filter, to the same server). Call list_sessions without "
    "next_token to start over."
)
_MAX_TOKEN_LENGTH = 1024


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageTokens:
    """Issues and checks page tokens for one server process."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    @staticmethod
    def _scope(listing: str, labels: Mapping[str, str]) -> str:
        canonical = json.dumps([listing, sorted(labels.items())], separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:16]

    def issue(self, listing: str, labels: Mapping[str, str], after: tuple[str, str]) -> str:
        """A token meaning "continue after `after`" for this listing and filter."""
        payload = json.dumps({"s": self._scope(listing, labels), "a": list(after)}, separators=(",", ":")).encode()
        return _b64(payload) + "." + _b64(self._sign(payload))

    def check(self, listing: str, labels: Mapping[str, str], token: str) -> tuple[str, str]:
        """The `after` key of a token this process issued for this listing and filter."""
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_LENGTH or token.count(".") != 1:
            raise InvalidPageTokenError(_REFUSAL)
        body, signature = token.split(".")
        try:
            payload, mac = _unb64(body), _unb64(signature)
        except ValueError as exc:
            raise InvalidPageTokenError(_REFUSAL) from exc
        if not hmac.compare_digest(mac, self._sign(payload)):
            raise InvalidPageTokenError(_REFUSAL)
        data = json.loads(payload)
        if data.get("s") != self._scope(listing, labels):
            raise InvalidPageTokenError(_REFUSAL)
        first, second = data["a"]
        return str(first), str(second)
