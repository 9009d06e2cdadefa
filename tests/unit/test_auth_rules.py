"""The rules behind HTTP auth, without a server: token file, scopes, start-up safety, audit arguments.

The tokens command and the audit log through a server are in tests/e2e (test_cli.py, test_seams.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jwt as pyjwt
import pytest
from mcp.server.mcpserver import MCPServer

from agentbay_mcp.auth.config import build_auth, check_http_safety, transport_security
from agentbay_mcp.auth.scopes import ToolKind, ToolsetServer, allows, parse_scopes
from agentbay_mcp.auth.token_file import TokenFileVerifier, add_token, hash_token, read_entries, remove_tokens
from agentbay_mcp.errors import AuthConfigurationError, InvalidArgumentError, UnsafeConfigurationError
from agentbay_mcp.observability.audit import safe_arguments
from agentbay_mcp.settings import Settings
from agentbay_mcp.tools.common import CREATES, READ_ONLY

pytestmark = pytest.mark.anyio


# Token file ---------------------------------------------------------------------------------


async def test_token_file_stores_only_hashes_and_follows_edits(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    alice = add_token(path, "alice", ("all",))
    assert alice not in path.read_text()
    assert hash_token(alice) in path.read_text()
    assert path.stat().st_mode & 0o777 == 0o600
    verifier = TokenFileVerifier(path, recheck_seconds=0)
    token = await verifier.verify_token(alice)
    assert token is not None
    assert (token.subject, token.scopes) == ("alice", ["all"])
    assert await verifier.verify_token(alice + "x") is None

    bob = add_token(path, "bob", ("read",))  # picked up without a restart
    found = await verifier.verify_token(bob)
    assert found is not None
    assert found.scopes == ["read"]
    assert remove_tokens(path, "alice") == 1
    assert await verifier.verify_token(alice) is None
    assert await verifier.verify_token(bob) is not None


async def test_a_token_file_broken_after_start_fails_closed(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    alice = add_token(path, "alice", ("all",))
    verifier = TokenFileVerifier(path, recheck_seconds=0)
    assert await verifier.verify_token(alice) is not None
    path.write_text(path.read_text().replace('"tokens"', '"tokenz"'))
    assert await verifier.verify_token(alice) is None  # a botched edit never keeps old tokens alive
    path.write_text(path.read_text().replace('"tokenz"', '"tokens"'))
    assert await verifier.verify_token(alice) is not None


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"tokens": [{"principal": "a", "token": "abm_x"}]}, "plain-text token"),
        ({"tokens": [{"principal": "a", "sha256": "abm_plain"}]}, "64 lowercase hex digits"),
        ({"tokens": [{"principal": "a b", "sha256": "0" * 64}]}, "principal 'a b' is not valid"),
        ({"tokens": [{"principal": "a", "sha256": "0" * 64, "scopes": ["ALL!"]}]}, "is not valid"),
        ({"keys": []}, "'tokens' list"),
    ],
)
def test_bad_token_files_are_refused(tmp_path: Path, content: dict[str, Any], message: str) -> None:
    path = tmp_path / "tokens.json"
    path.write_text(json.dumps(content))
    path.chmod(0o600)
    with pytest.raises(AuthConfigurationError, match=message):
        read_entries(path)


# Scopes -------------------------------------------------------------------------------------

READ_FILE = ToolKind("files", read_only=True)
WRITE_FILE = ToolKind("files", read_only=False)
SCREENSHOT = ToolKind("desktop", read_only=True)
CLICK = ToolKind("desktop", read_only=False)


@pytest.mark.parametrize(
    ("scopes", "allowed"),
    [
        (None, {READ_FILE, WRITE_FILE, SCREENSHOT, CLICK}),  # unauthenticated (stdio, loopback)
        (("all",), {READ_FILE, WRITE_FILE, SCREENSHOT, CLICK}),
        (("read",), {READ_FILE, SCREENSHOT}),
        (("files",), {READ_FILE, WRITE_FILE}),
        (("files:read",), {READ_FILE}),
        (("desktop",), {SCREENSHOT, CLICK}),
        (("read", "desktop"), {READ_FILE, SCREENSHOT, CLICK}),
        ((), set()),
    ],
)
def test_scopes_follow_toolset_and_read_only_hint(scopes: tuple[str, ...] | None, allowed: set[ToolKind]) -> None:
    for kind in (READ_FILE, WRITE_FILE, SCREENSHOT, CLICK):
        assert allows(scopes, kind) == (kind in allowed), (scopes, kind)


def test_a_new_toolset_is_classified_from_its_annotations() -> None:
    """What the desktop toolset will get when it lands: no list of tool names to update."""

    def register_desktop(mcp: MCPServer[Any]) -> None:
        @mcp.tool(annotations=READ_ONLY)
        def list_windows() -> str:
            return ""

        @mcp.tool(annotations=CREATES, name="start_app")
        def start(name: str) -> str:
            return name

    server: ToolsetServer[Any] = ToolsetServer("probe")
    server.add_toolset("desktop", register_desktop)

    @server.tool()
    def stray() -> str:
        return ""

    assert server.tool_kinds == {
        "list_windows": SCREENSHOT,
        "start_app": CLICK,
        "stray": ToolKind("unclassified", read_only=False),
    }
    assert not allows(("read", "desktop", "sessions"), server.tool_kinds["stray"])


def test_scope_strings_are_parsed_and_checked() -> None:
    assert parse_scopes("read, commands files:read") == ("read", "commands", "files:read")
    with pytest.raises(InvalidArgumentError):
        parse_scopes("admin;rm")


# Start-up safety ----------------------------------------------------------------------------


def test_unauthenticated_non_loopback_http_is_refused_unless_insisted(tmp_path: Path) -> None:
    with pytest.raises(UnsafeConfigurationError, match="without authentication"):
        check_http_safety(Settings(state_dir=tmp_path, host="192.0.2.10"))
    warnings = check_http_safety(Settings(state_dir=tmp_path, host="192.0.2.10", allow_unauthenticated=True))
    assert any("WITHOUT authentication" in w for w in warnings)
    assert check_http_safety(Settings(state_dir=tmp_path)) == []  # loopback, the default


def test_a_wildcard_bind_needs_a_public_url_for_host_checks(tmp_path: Path) -> None:
    tokens = tmp_path / "t.json"
    with pytest.raises(UnsafeConfigurationError, match="--public-url"):
        check_http_safety(Settings(state_dir=tmp_path, host="0.0.0.0", token_file=tokens))
    settings = Settings(
        state_dir=tmp_path,
        host="0.0.0.0",
        token_file=tokens,
        public_url="https://mcp.example.com",
        allowed_origins="https://app.example.com",  # type: ignore[arg-type]  # env-style string
    )
    assert check_http_safety(settings) == []
    security = transport_security(settings)
    assert security.allowed_hosts == ["mcp.example.com"]
    assert security.allowed_origins == ["https://app.example.com", "https://mcp.example.com"]


# Audit --------------------------------------------------------------------------------------


def test_audit_keeps_commands_and_paths_but_never_values_contents_or_input() -> None:
    kept = safe_arguments(
        {
            "session_id": "s",
            "command": "make test",
            "envs": {"TOKEN": "secret-value"},
            "content": "file body",
            "edits": [{"old_text": "a", "new_text": "b"}],
            "data": "stdin text",
            "labels": {"owner": "private"},
            "path": "/home/user/x",
        }
    )
    assert kept == {"command": "make test", "path": "/home/user/x", "envs_names": ["TOKEN"], "labels_names": ["owner"]}


async def test_a_jwt_cannot_take_the_name_of_a_token_file_principal(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    tokens = tmp_path / "tokens.json"
    add_token(tokens, "alice", ("all",))
    key = ec.generate_private_key(ec.SECP256R1())
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [json.loads(ECAlgorithm.to_jwk(key.public_key()))]}))
    settings = Settings(state_dir=tmp_path, token_file=tokens, jwt_issuer="https://idp.example.com", jwt_jwks_file=jwks)
    auth = build_auth(settings)
    assert auth is not None
    assert str(auth.settings.resource_server_url) == "http://127.0.0.1:8765/mcp"

    def signed(sub: str) -> str:
        claims = {"iss": "https://idp.example.com", "aud": "http://127.0.0.1:8765/mcp", "sub": sub, "exp": 2**31}
        return pyjwt.encode(claims, key, algorithm="ES256")

    carol = await auth.verifier.verify_token(signed("carol"))
    assert carol is not None
    assert carol.subject == "carol"
    assert carol.scopes == []  # no scope claim: no tools
    assert await auth.verifier.verify_token(signed("alice")) is None
