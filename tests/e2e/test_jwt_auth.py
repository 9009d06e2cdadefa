"""JWT authentication against an issuer's JWKS file, on a real HTTP server on 127.0.0.1.

The test is its own identity provider: it makes an RSA key pair, publishes the public half as a
JWKS file, and signs tokens that are valid, expired, for another audience, from another issuer,
or signed with the wrong key.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from agentbay_mcp.testing.calls import call, call_error
from agentbay_mcp.testing.servers import HttpServer, session_dirs

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(90)]

ISSUER = "https://idp.example.com"
KID = "test-key-1"


class Idp:
    """A signing key and its published JWKS."""

    def __init__(self, jwks_file: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwks_file.write_text(json.dumps({"keys": [{**public, "kid": KID, "alg": "RS256", "use": "sig"}]}))

    def token(self, audience: str, *, key: Any = None, **claims: Any) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": audience, "sub": "carol", "iat": now, "exp": now + 600, **claims}
        return jwt.encode(payload, key or self.key, algorithm="RS256", headers={"kid": KID})


@pytest.fixture
def idp_server(state_dir: Path) -> Iterator[tuple[Idp, HttpServer]]:
    state_dir.parent.mkdir(parents=True, exist_ok=True)
    jwks = state_dir.parent / "jwks.json"
    idp = Idp(jwks)
    server = HttpServer(state_dir, "--jwt-issuer", ISSUER, "--jwt-jwks-file", str(jwks), "--public-metrics")
    yield idp, server
    server.stop()


def audience(server: HttpServer) -> str:
    return f"http://127.0.0.1:{server.port}/mcp"


async def test_a_valid_jwt_works_and_its_scopes_apply(idp_server: tuple[Idp, HttpServer], state_dir: Path) -> None:
    idp, server = idp_server
    full = idp.token(audience(server), scope="sessions commands")
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {full}"}, timeout=30) as http,
        Client(streamable_http_client(server.url, http_client=http), cache=None) as client,
    ):
        session_id = (await call(client, "create_session", image_id="code_latest"))["session_id"]
        ran = await call(client, "execute_command", session_id=session_id, command="echo jwt")
        assert ran["stdout"] == "jwt\n"
        denied = await call_error(client, "write_file", session_id=session_id, path="a", content="x")
        assert "principal 'carol' may not call write_file" in denied
        assert session_dirs(state_dir) == [session_id]
        await call(client, "delete_session", session_id=session_id)

    read_only = idp.token(audience(server), scp=["read"], sub="dave")
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {read_only}"}, timeout=30) as http,
        Client(streamable_http_client(server.url, http_client=http), cache=None) as client,
    ):
        assert "Access denied" in await call_error(client, "create_session")
        assert (await call(client, "list_sessions"))["total_count"] == 0


async def test_bad_jwts_get_401(idp_server: tuple[Idp, HttpServer], state_dir: Path) -> None:
    idp, server = idp_server
    aud = audience(server)
    hour_ago = int(time.time()) - 3600
    bad = {
        "expired": idp.token(aud, exp=hour_ago, iat=hour_ago - 60),
        "wrong audience": idp.token("https://other.example.com/mcp"),
        "wrong issuer": idp.token(aud, iss="https://evil.example.com"),
        "bad signature": idp.token(aud, key=idp.other_key),
        "no subject": jwt.encode(
            {"iss": ISSUER, "aud": aud, "exp": int(time.time()) + 600}, idp.key, algorithm="RS256", headers={"kid": KID}
        ),
        "HS256 with the public key as secret": jwt.encode(
            {"iss": ISSUER, "aud": aud, "sub": "x", "exp": int(time.time()) + 600},
            "not-the-key-but-a-shared-secret-of-32-bytes",
            algorithm="HS256",
            headers={"kid": KID},
        ),
        "garbage": "eyJhbGciOiJSUzI1NiJ9.e30.AAAA",
    }
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
    }
    async with httpx2.AsyncClient(timeout=10) as http:
        for why, token in bad.items():
            response = await http.post(
                server.url,
                json=init,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Accept": "application/json, text/event-stream",
                    "Content-Type": "application/json",
                },
            )
            assert response.status_code == 401, why
            assert response.json()["error_description"] == "Authentication required", why
    assert session_dirs(state_dir) == []
    log = server.log.read_text()
    assert all(token not in log for token in bad.values())


async def test_protected_resource_metadata_and_public_metrics(idp_server: tuple[Idp, HttpServer]) -> None:
    _, server = idp_server
    async with httpx2.AsyncClient(timeout=10) as http:
        base = server.url.removesuffix("/mcp")
        metadata = await http.get(base + "/.well-known/oauth-protected-resource/mcp")
        challenge = await http.post(server.url, json={})
        metrics = await http.get(base + "/metrics")  # --public-metrics: no token needed
    assert metadata.status_code == 200
    body = metadata.json()
    assert body["resource"] == audience(server)
    assert body["authorization_servers"] == [ISSUER]
    assert challenge.status_code == 401
    assert "resource_metadata=" in challenge.headers["www-authenticate"]
    assert metrics.status_code == 200
    assert "agentbay_mcp_live_sessions 0" in metrics.text
