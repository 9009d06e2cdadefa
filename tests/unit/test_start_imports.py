"""A stdio server on the local backend imports only what it needs (issue 14, "Fast start").

Each check runs in a fresh interpreter: it takes the path `python -m agentbay_mcp` takes up to its
first `tools/list` (the CLI, the stdio transport, the server with every toolset, the local backend,
constructed but not started) and lists what ended up in `sys.modules`. What only another transport,
backend or command needs must not be there: it is imported when that is chosen.
bench/bench_start.py measures what this buys.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agentbay_mcp.cli import main
from agentbay_mcp.transport.serve import resume_collection

REPO = Path(__file__).resolve().parents[2]

#: Modules a stdio server on the local backend must not import before it serves. (The SDK itself
#: imports starlette, uvicorn and httpx2 for every server, so those are not ours to avoid.)
NOT_FOR_STDIO_LOCAL = {
    # the HTTP transport and its authentication
    "agentbay_mcp.transport.http_serve": "the HTTP transport",
    "agentbay_mcp.transport.http_app": "the HTTP transport",
    "agentbay_mcp.transport.client_presence": "the HTTP transport",
    "agentbay_mcp.auth.config": "HTTP authentication",
    "agentbay_mcp.auth.token_file": "HTTP authentication",
    "agentbay_mcp.auth.jwt_verifier": "HTTP authentication",
    "jwt": "HTTP authentication (PyJWT)",
    # the agentbay backend
    "agentbay_mcp.backends.agentbay": "the agentbay backend",
    "agentbay_mcp.backends.agentbay.client": "the agentbay backend",
    "agentbay_mcp.backends.agentbay.backend": "the agentbay backend",
    # other commands, and what only a first screenshot needs
    "agentbay_mcp.emulator": "the emulator command",
    "agentbay_mcp.cli.doctor": "the doctor command",
    "agentbay_mcp.cli.tokens": "the tokens command",
    "agentbay_mcp.services.desktop.screenshot_encoding": "the first screenshot",
    "PIL": "the first screenshot (Pillow)",
}

PROBE = """
import json
import sys

from agentbay_mcp.cli import build_parser, settings_from_args
from agentbay_mcp.transport import serve  # what `run` imports for stdio
from agentbay_mcp.server.wiring import build_server, default_backend

settings = settings_from_args(build_parser().parse_args(["serve", *sys.argv[2:]]))
assert settings.transport == "stdio", settings.transport
server = build_server(settings)
backend = default_backend(settings)
assert type(backend).__name__ == "LocalBackend", type(backend)
with open(sys.argv[1], "w") as out:
    json.dump(sorted(sys.modules), out)
"""


def modules_after_start(tmp_path: Path, *args: str) -> set[str]:
    listing = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTBAY_MCP_")}
    env |= {"AGENTBAY_MCP_STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-P", "-c", PROBE, str(listing), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(listing.read_text()))


@pytest.mark.parametrize("args", [(), ("--toolsets", "sessions,desktop")], ids=["all-toolsets", "desktop"])
def test_stdio_start_on_the_local_backend_imports_no_http_stack_and_no_agentbay_backend(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    loaded = modules_after_start(tmp_path, *args)
    assert "agentbay_mcp.backends.local.backend" in loaded, "the probe did not build the local backend"
    unwanted = {name: why for name, why in NOT_FOR_STDIO_LOCAL.items() if name in loaded}
    assert unwanted == {}, "imported before a stdio server on the local backend needs them"


def test_the_list_names_real_modules() -> None:
    """A misspelt name would never be imported, so the check above would pass for nothing."""
    missing = [name for name in NOT_FOR_STDIO_LOCAL if importlib.util.find_spec(name) is None]
    assert missing == []


def test_collection_pauses_for_the_start_only(tmp_path: Path) -> None:
    """The CLI pauses the cyclic collector for a server's start; serving turns it back on, and every
    other command runs with it on (cli.main, transport/serve.py)."""
    assert gc.isenabled()
    gc.disable()
    try:
        resume_collection()
        assert gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()
    assert main(["tokens", "list", "--token-file", str(tmp_path / "missing.json")]) == 1  # runs, then fails
    assert gc.isenabled()
    with pytest.raises(SystemExit):
        main(["--version"])
    assert gc.isenabled()
