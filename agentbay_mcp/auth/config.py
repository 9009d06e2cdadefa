"""From settings to the SDK's own auth hooks: `AuthSettings`, a `TokenVerifier`, `TransportSecuritySettings`.

It also holds the start-up rules for HTTP: without authentication only loopback is served (unless
the operator insists with `--allow-unauthenticated`), and then with a per-start token
(start_token.py) unless `--allow-unauthenticated` again; Host/Origin allow-lists are always on
unless switched off explicitly.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass
from urllib.parse import urlsplit

from mcp.server.auth.provider import AccessToken, TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.transport_security import TransportSecuritySettings

from agentbay_mcp.auth.jwt_verifier import JwtVerifier
from agentbay_mcp.auth.start_token import StartTokenVerifier
from agentbay_mcp.auth.token_file import TOKEN_PREFIX, TokenFileVerifier
from agentbay_mcp.errors import UnsafeConfigurationError
from agentbay_mcp.settings import Settings

logger = logging.getLogger(__name__)

MCP_PATH = "/mcp"
_LOOPBACK_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*"]
_LOOPBACK_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]


def is_loopback(host: str) -> bool:
    """Whether `host` names only this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class EitherVerifier:
    """Static tokens (recognised by their prefix) and JWTs on one server, sharing one namespace of principals."""

    def __init__(self, tokens: TokenFileVerifier, jwts: JwtVerifier) -> None:
        self.tokens = tokens
        self.jwts = jwts

    async def verify_token(self, token: str) -> AccessToken | None:
        """Ask whichever verifier the token's shape belongs to."""
        if token.startswith(TOKEN_PREFIX):
            return await self.tokens.verify_token(token)
        found = await self.jwts.verify_token(token)
        if found is not None and found.subject in self.tokens.principals():
            # A JWT subject equal to a token-file principal would own that principal's sessions.
            logger.error("JWT refused: its principal %r is also a token-file principal; rename one", found.subject)
            return None
        return found


@dataclass(frozen=True)
class HttpAuth:
    """What `MCPServer` needs to require bearer tokens."""

    settings: AuthSettings
    verifier: TokenVerifier


def base_url(settings: Settings, port: int | None = None) -> str:
    """The URL clients reach this server at: `--public-url`, else the bind address (on `port` once bound)."""
    if settings.public_url:
        return settings.public_url
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port if port is None else port}"


def build_auth(settings: Settings, start_token: str | None = None) -> HttpAuth | None:
    """The SDK auth configuration: the token file and/or JWT issuer configured, else the per-start token
    when there is one, else None (an unauthenticated server).

    Raises AuthConfigurationError when a token or JWKS file is unusable: refusing to start beats
    serving with no (or the wrong) credentials.
    """
    if not settings.auth_enabled:
        if start_token is None:
            return None
        # Like static tokens, the per-start token has no authorization server to point clients at.
        auth = AuthSettings(issuer_url=base_url(settings), resource_server_url=None, validate_token_resource=False)
        return HttpAuth(auth, StartTokenVerifier(start_token))
    resource = base_url(settings) + MCP_PATH
    tokens = TokenFileVerifier(settings.token_file) if settings.token_file else None
    jwts = None
    if settings.jwt_issuer and settings.jwt_jwks_file:
        jwts = JwtVerifier(
            issuer=settings.jwt_issuer,
            jwks_file=settings.jwt_jwks_file,
            audience=settings.jwt_audience or resource,
            principal_claim=settings.jwt_principal_claim,
        )
    verifier: TokenVerifier
    if tokens and jwts:
        verifier = EitherVerifier(tokens, jwts)
    elif tokens:
        verifier = tokens
    else:
        assert jwts is not None  # auth_enabled: one of the two is configured
        verifier = jwts
    # Protected-resource metadata (RFC 9728) points clients at an authorization server, so it is
    # served only with a JWT issuer; static tokens have none to point at.
    auth = AuthSettings(
        issuer_url=settings.jwt_issuer or base_url(settings),
        resource_server_url=resource if jwts else None,
        validate_token_resource=False,  # the JWT verifier checks `aud` itself
    )
    return HttpAuth(auth, verifier)


def transport_security(settings: Settings) -> TransportSecuritySettings:
    """Host and Origin allow-lists (DNS-rebinding protection), from the bind address and public URL."""
    if not settings.dns_rebinding_protection:
        return TransportSecuritySettings(enable_dns_rebinding_protection=False)
    hosts: list[str] = []
    origins: list[str] = list(settings.allowed_origins)
    if is_loopback(settings.host):
        hosts += _LOOPBACK_HOSTS
        origins += _LOOPBACK_ORIGINS
    elif settings.host not in ("0.0.0.0", "::"):  # noqa: S104  # a wildcard names no host to allow
        bind = f"[{settings.host}]" if ":" in settings.host else settings.host
        hosts.append(f"{bind}:*")
    if settings.public_url:
        parts = urlsplit(settings.public_url)
        hosts.append(parts.netloc)
        origins.append(f"{parts.scheme}://{parts.netloc}")
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def check_http_safety(settings: Settings) -> list[str]:
    """Refuse unsafe HTTP settings (UnsafeConfigurationError); returns warnings to log on every start."""
    warnings: list[str] = []
    if not is_loopback(settings.host) and not settings.auth_enabled:
        if not settings.allow_unauthenticated:
            raise UnsafeConfigurationError(
                f"refusing to serve HTTP on {settings.host} without authentication: anyone who reaches the "
                "port could run sandboxes as this user. Configure --token-file (see `agentbay-mcp tokens add`) "
                "or --jwt-issuer/--jwt-jwks-file, bind 127.0.0.1, or pass --allow-unauthenticated if a proxy "
                "in front authenticates every request."
            )
        warnings.append(
            f"serving HTTP on {settings.host} WITHOUT authentication (--allow-unauthenticated): every client "
            "is the same anonymous principal and can run sandboxes; make sure a proxy authenticates them"
        )
    elif not settings.auth_enabled and settings.allow_unauthenticated:
        warnings.append(
            f"serving HTTP on {settings.host} WITHOUT authentication (--allow-unauthenticated): no per-start "
            "token, so every process on this host can drive this server as the anonymous principal (sessions "
            "cannot: each has a network namespace of its own)"
        )
    if settings.dns_rebinding_protection and not transport_security(settings).allowed_hosts:
        raise UnsafeConfigurationError(
            f"binding {settings.host} allows no Host header: pass --public-url with the URL clients use "
            "(e.g. https://mcp.example.com), or turn DNS-rebinding protection off with "
            "--no-dns-rebinding-protection if a proxy checks Host and Origin"
        )
    if not settings.dns_rebinding_protection:
        warnings.append("DNS-rebinding protection is off: Host and Origin headers are not checked")
    return warnings
