"""JWT access tokens from an organisation's identity provider, checked against a JWKS file.

PyJWT (which `mcp` already depends on, with its `crypto` extra) does the cryptography and the
registered-claim checks; this module only decides policy: asymmetric keys only, `exp`, `iss`,
`aud` and the principal claim required, the key chosen by `kid`. The JWKS file is re-read when it
changes, so keys can be rotated without a restart.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jwt
from mcp.server.auth.provider import AccessToken

from agentbay_mcp.auth.token_file import PRINCIPAL
from agentbay_mcp.auth.watched_file import WatchedFile
from agentbay_mcp.errors import AuthConfigurationError

logger = logging.getLogger(__name__)

#: Public-key algorithms only: a shared-secret (HS*) or `none` token is never accepted.
ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY_SECONDS = 30


def load_jwks(path: Path) -> dict[str, jwt.PyJWK]:
    """kid -> key of a JWKS file (a key without `kid` is stored under ""), or AuthConfigurationError."""
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AuthConfigurationError(f"cannot read JWKS file {path}: {exc.strerror or exc}") from None
    except ValueError:
        raise AuthConfigurationError(f"JWKS file {path} is not valid JSON") from None
    raw_keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(raw_keys, list) or not raw_keys:
        raise AuthConfigurationError(f"JWKS file {path} must be an object with a non-empty 'keys' list")
    keys: dict[str, jwt.PyJWK] = {}
    for number, raw in enumerate(raw_keys, 1):
        if not isinstance(raw, dict) or raw.get("kty") == "oct" or "d" in raw:
            raise AuthConfigurationError(
                f"JWKS file {path}, key {number}: only public keys (RSA, EC, OKP) belong here, never a "
                "shared secret or a private key"
            )
        try:
            key = jwt.PyJWK.from_dict(raw)
        except jwt.PyJWTError as exc:
            raise AuthConfigurationError(f"JWKS file {path}, key {number} is not usable: {exc}") from None
        if key.algorithm_name not in ALGORITHMS:
            raise AuthConfigurationError(f"JWKS file {path}, key {number}: algorithm {key.algorithm_name} refused")
        keys[str(raw.get("kid", ""))] = key
    return keys


def _scopes(claims: dict[str, Any]) -> list[str]:
    value = claims.get("scope", claims.get("scp", ""))
    parts = value.split() if isinstance(value, str) else value if isinstance(value, list) else []
    return [p for p in parts if isinstance(p, str) and p]


class JwtVerifier:
    """The SDK's `TokenVerifier` for JWTs signed by one issuer's keys, for one audience."""

    def __init__(
        self,
        *,
        issuer: str,
        jwks_file: Path,
        audience: str,
        principal_claim: str = "sub",
        recheck_seconds: float = 5.0,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.jwks_file = jwks_file
        self.principal_claim = principal_claim
        self._watch = WatchedFile(jwks_file, recheck_seconds)
        self._keys = load_jwks(jwks_file)  # raises on start-up

    def _refresh(self) -> None:
        if not self._watch.changed():
            return
        try:
            self._keys = load_jwks(self.jwks_file)
            logger.info("JWKS file %s reloaded: %d key(s)", self.jwks_file, len(self._keys))
        except AuthConfigurationError as exc:
            # Keys are public and only ever added or rotated: keep verifying with the last good set.
            logger.error("JWKS file %s: %s; keeping the previous keys", self.jwks_file, exc)

    def _key_for(self, token: str) -> jwt.PyJWK | None:
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        if isinstance(kid, str) and kid in self._keys:
            return self._keys[kid]
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        return None

    async def verify_token(self, token: str) -> AccessToken | None:
        """The token's principal and scopes if it is a valid, current JWT for this server, else None."""
        self._refresh()
        try:
            key = self._key_for(token)
            if key is None:
                return None
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[key.algorithm_name],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud", self.principal_claim]},
            )
        except jwt.PyJWTError as exc:
            # Only the reason class: the token itself is a credential and never logged.
            logger.info("JWT refused: %s", type(exc).__name__)
            return None
        principal = claims.get(self.principal_claim)
        if not isinstance(principal, str) or not PRINCIPAL.match(principal):
            logger.info("JWT refused: claim %r is not a usable principal name", self.principal_claim)
            return None
        client = claims.get("client_id", claims.get("azp", principal))
        return AccessToken(
            token=token,
            client_id=str(client),
            scopes=_scopes(claims),
            expires_at=int(claims["exp"]),
            resource=self.audience,
            subject=principal,
            claims={"iss": self.issuer},
        )
