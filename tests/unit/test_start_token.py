"""The per-start token's rules, without a server: when it is wanted, what it accepts, its file.

Through a real server (401s, the file, the logs, real clients): tests/e2e/test_http_start_token.py.
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from agentbay_mcp.auth.config import build_auth, check_http_safety
from agentbay_mcp.auth.start_token import (
    announcement,
    remove_token,
    token_path,
    wanted,
    write_token,
)
from agentbay_mcp.auth.token_file import new_token
from agentbay_mcp.settings import Settings

pytestmark = pytest.mark.anyio


def test_the_token_is_wanted_only_when_nothing_else_authenticates(tmp_path: Path) -> None:
    assert wanted(Settings(state_dir=tmp_path))
    assert not wanted(Settings(state_dir=tmp_path, allow_unauthenticated=True))
    assert not wanted(Settings(state_dir=tmp_path, token_file=tmp_path / "tokens.json"))
    jwt = Settings(state_dir=tmp_path, jwt_issuer="https://idp.example.com", jwt_jwks_file=tmp_path / "jwks.json")
    assert not wanted(jwt)


def test_serving_loopback_without_the_token_warns_on_every_start(tmp_path: Path) -> None:
    (warning,) = check_http_safety(Settings(state_dir=tmp_path, allow_unauthenticated=True))
    assert "WITHOUT authentication" in warning
    assert "every process on this host" in warning
    assert check_http_safety(Settings(state_dir=tmp_path)) == []  # the token: nothing to warn about


async def test_the_verifier_accepts_exactly_the_token_as_the_anonymous_principal(tmp_path: Path) -> None:
    token = new_token()
    auth = build_auth(Settings(state_dir=tmp_path), token)
    assert auth is not None
    assert auth.settings.resource_server_url is None  # no authorization server to point clients at
    found = await auth.verifier.verify_token(token)
    assert found is not None
    # The former unauthenticated client: per-conversation ownership, no per-principal quota, every scope.
    assert (found.subject, found.client_id, found.scopes) == ("anonymous", "anonymous", ["all"])
    for wrong in (new_token(), token[:-1], token + "x", "", token.upper(), token + "\u00e9", "\udcff"):
        assert await auth.verifier.verify_token(wrong) is None, wrong
    assert build_auth(Settings(state_dir=tmp_path)) is None  # --allow-unauthenticated: open, as before


def test_the_token_file_is_private_holds_only_the_token_and_is_replaced(tmp_path: Path) -> None:
    path = token_path(tmp_path, 8765)
    assert path == tmp_path / "http-token-8765"
    path.write_text("stale")
    path.chmod(0o644)
    token = new_token()
    write_token(path, token)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == token
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left behind


def test_a_clean_stop_removes_only_its_own_token_file(tmp_path: Path) -> None:
    path = token_path(tmp_path, 8765)
    mine, newer = new_token(), new_token()
    write_token(path, newer)  # a newer server on the same port replaced it
    remove_token(path, mine)
    assert path.read_text() == newer
    remove_token(path, newer)
    assert not path.exists()
    remove_token(path, newer)  # already gone: nothing to do, nothing raised


def test_the_announcement_gives_the_header_and_a_client_configuration() -> None:
    token, url, path = new_token(), "http://127.0.0.1:8765/mcp", Path("/state/http-token-8765")
    text = announcement(token, url, path)
    assert f"Authorization: Bearer {token}" in text
    assert '{"mcpServers": {"agentbay": {"type": "http", "url": "http://127.0.0.1:8765/mcp", "headers": ' in text
    assert str(path) in text
    assert "--allow-unauthenticated" in text
    assert "$(cat /state/http-token-8765)" in text
    unfiled = announcement(token, url, None)
    assert "the token file could not be written" in unfiled
    assert f"Authorization: Bearer {token}" in unfiled
    assert "$(cat" not in unfiled
