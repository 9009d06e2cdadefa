"""A network session attacking the server's own HTTP endpoint, now that it needs the per-start token.

test_sandbox_security.py's strict xfail runs the same attack against a server started with
--allow-unauthenticated, where only network isolation could stop it. Here the server runs as
`serve --transport http` does by default: the attacker reaches the port (the sandbox shares the
host's network) but holds no token, cannot read the token file, and gets 401.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from agentbay_mcp.testing.calls import unwrapped
from agentbay_mcp.testing.http_clients import sessionless
from agentbay_mcp.testing.servers import HttpServer
from tests.security.sandbox_attacks import new_session, python, run
from tests.security.test_sandbox_security import HTTP_ATTACK

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(120)]


async def test_a_network_session_without_the_token_cannot_use_the_servers_http_endpoint(state_dir: Path) -> None:
    server = HttpServer(state_dir, "--network", "on-request", start_token=True)
    assert server.token is not None
    try:
        with unwrapped():
            async with sessionless(server) as client:
                victim = await new_session(client)
                secret = secrets.token_hex(16)
                assert (await run(client, victim, f"echo {secret} > secret.txt"))["exit_code"] == 0
                online = await new_session(client, network=True)
                # The port is reachable from the sandbox: what stops the attack is the token alone.
                reach = f"import socket; socket.create_connection(('127.0.0.1', {server.port}), 5); print('reached')"
                assert (await run(client, online, python(reach)))["stdout"].strip() == "reached"
                attack = await run(client, online, f"{python(HTTP_ATTACK)} {server.url}")
                assert secret not in attack["stdout"], f"session {online} read session {victim}: {attack['stdout']}"
                assert attack["exit_code"] != 0
                assert "HTTP Error 401" in attack["stderr"], attack
                # Nor can it take the token from the server's state dir, by any path it could guess.
                stolen = await run(client, online, f"cat {server.token_file}; ls -a {state_dir}")
                assert server.token not in stolen["stdout"]
                assert server.token_file.name not in stolen["stdout"], stolen
    finally:
        server.stop()
