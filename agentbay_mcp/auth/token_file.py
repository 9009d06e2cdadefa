"""A static bearer-token file for small teams: each token stored only as its SHA-256, with a principal and scopes.

    {"version": 1, "tokens": [
      {"principal": "alice", "sha256": "<64 hex digits>", "scopes": ["all"], "created_at": "2026-..."}
    ]}

Tokens are 256-bit random strings made by `agentbay-mcp tokens add`, which prints one once and
stores its hash. A plain SHA-256 (not a slow password hash) is right for them: they are never
guessable, so there is nothing for a slow hash to protect, and it keeps checking a token cheap.
The file is re-read when it changes, so adding or removing a token needs no restart.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mcp.server.auth.provider import AccessToken

from agentbay_mcp.auth.private_file import write_private
from agentbay_mcp.auth.scopes import ALL, parse_scopes
from agentbay_mcp.auth.watched_file import WatchedFile
from agentbay_mcp.errors import AuthConfigurationError, InvalidArgumentError

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "abm_"  # noqa: S105  # a marker telling token-file tokens from JWTs, not a secret
_HASH = re.compile(r"^[0-9a-f]{64}$")
PRINCIPAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$")


@dataclass(frozen=True)
class TokenEntry:
    """One token of the file: whose it is and what it may do (the token itself is never kept)."""

    principal: str
    sha256: str
    scopes: tuple[str, ...]
    created_at: str = ""


def new_token() -> str:
    """A fresh bearer token (256 random bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    """The hex SHA-256 under which a token is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_principal(name: str) -> str:
    """`name` if it is a usable principal name (letters, digits, `._@+-`), else InvalidArgumentError."""
    if not PRINCIPAL.match(name):
        raise InvalidArgumentError(
            f"principal {name[:40]!r} is not valid: 1-128 letters, digits or ._@+- starting with a letter or digit"
        )
    return name


def _entry(number: int, raw: object) -> TokenEntry:
    where = f"token entry {number}"
    if not isinstance(raw, dict):
        raise AuthConfigurationError(f"{where} is not an object")
    if "token" in raw or "secret" in raw:
        raise AuthConfigurationError(
            f"{where} holds a plain-text token; tokens must be stored hashed. Remove it and create "
            "tokens with `agentbay-mcp tokens add`, which stores only their SHA-256."
        )
    digest = raw.get("sha256")
    if not isinstance(digest, str) or not _HASH.match(digest):
        raise AuthConfigurationError(
            f"{where}: 'sha256' must be 64 lowercase hex digits (a hash, never the token itself); "
            "create entries with `agentbay-mcp tokens add`"
        )
    principal = raw.get("principal")
    if not isinstance(principal, str):
        raise AuthConfigurationError(f"{where}: 'principal' must be a string")
    try:
        check_principal(principal)
        scopes = parse_scopes(raw.get("scopes", [ALL]))
    except InvalidArgumentError as exc:
        raise AuthConfigurationError(f"{where}: {exc}") from None
    return TokenEntry(principal, digest, scopes, str(raw.get("created_at", "")))


def read_entries(path: Path) -> list[TokenEntry]:
    """The entries of a token file, or AuthConfigurationError saying what is wrong with it."""
    try:
        info = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise AuthConfigurationError(f"cannot read token file {path}: {exc.strerror or exc}") from None
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise AuthConfigurationError(
            f"token file {path} is writable by group or others, who could add tokens: chmod 600 {path}"
        )
    try:
        data: Any = json.loads(text) if text.strip() else {"tokens": []}
    except ValueError as exc:
        raise AuthConfigurationError(
            f"token file {path} is not valid JSON (line {getattr(exc, 'lineno', '?')})"
        ) from None
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, list):
        raise AuthConfigurationError(f"token file {path} must be an object with a 'tokens' list")
    return [_entry(n, raw) for n, raw in enumerate(tokens, 1)]


def write_entries(path: Path, entries: list[TokenEntry]) -> None:
    """Replace the token file atomically, readable and writable by its owner only."""
    data = {
        "version": 1,
        "tokens": [
            {"principal": e.principal, "sha256": e.sha256, "scopes": list(e.scopes), "created_at": e.created_at}
            for e in entries
        ],
    }
    write_private(path, json.dumps(data, indent=2) + "\n")


def add_token(path: Path, principal: str, scopes: tuple[str, ...]) -> str:
    """Create a token for `principal` with `scopes`; stores its hash and returns the token (shown once)."""
    check_principal(principal)
    entries = read_entries(path) if path.exists() else []
    token = new_token()
    created = datetime.now(UTC).replace(microsecond=0).isoformat()
    entries.append(TokenEntry(principal, hash_token(token), scopes, created))
    write_entries(path, entries)
    return token


def remove_tokens(path: Path, principal: str) -> int:
    """Delete every token of `principal`; returns how many there were."""
    entries = read_entries(path)
    kept = [e for e in entries if e.principal != principal]
    write_entries(path, kept)
    return len(entries) - len(kept)


class TokenFileVerifier:
    """The SDK's `TokenVerifier` over a token file, re-read whenever the file changes.

    A file that becomes unusable after start-up fails closed: every token is refused (and the
    error logged) until it is fixed, so a botched edit can never keep a removed token alive.
    """

    def __init__(self, path: Path, *, recheck_seconds: float = 1.0) -> None:
        self.path = path
        self._watch = WatchedFile(path, recheck_seconds)
        self._by_hash = self._load()  # raises on start-up: a server must not run on a broken token file

    def _load(self) -> dict[str, TokenEntry]:
        entries = read_entries(self.path)
        logger.info("token file %s: %d token(s)", self.path, len(entries))
        return {e.sha256: e for e in entries}

    def _refresh(self) -> None:
        if not self._watch.changed():
            return
        try:
            self._by_hash = self._load()
        except AuthConfigurationError as exc:
            logger.error("%s; refusing every token until it is fixed", exc)
            self._by_hash = {}

    def principals(self) -> set[str]:
        """The principal names that currently have a token."""
        self._refresh()
        return {entry.principal for entry in self._by_hash.values()}

    async def verify_token(self, token: str) -> AccessToken | None:
        """The principal and scopes of `token`, or None if it is not in the file."""
        if not token.startswith(TOKEN_PREFIX):
            return None
        self._refresh()
        # A dict lookup by the hash leaks nothing useful through timing: the hash of a guess
        # says nothing about which hashes are stored.
        entry = self._by_hash.get(hash_token(token))
        if entry is None:
            return None
        return AccessToken(token=token, client_id=entry.principal, scopes=list(entry.scopes), subject=entry.principal)
