"""The `agentbay-mcp` command: serve (default), doctor, sessions list|reap.

Each command imports what it needs when it runs (`# noqa: PLC0415` below): a stdio server's cold
start to its first `tools/list` must not pay for doctor's MCP client, the emulator, the token tools
or the HTTP stack (bench/bench_start.py; tests/unit/test_start_imports.py checks it).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agentbay_mcp import __version__
from agentbay_mcp.errors import AgentBayMCPError
from agentbay_mcp.settings import KNOWN_TOOLSETS, Settings, default_state_dir

COMMANDS = ("serve", "doctor", "sessions", "tokens", "emulator")


def _add_common(parser: argparse.ArgumentParser, default: object = None) -> None:
    # `sessions list|reap` repeat these with default=SUPPRESS, so they may come before or after the action.
    parser.add_argument("--state-dir", default=default, help="state directory (env AGENTBAY_MCP_STATE_DIR)")
    parser.add_argument(
        "--backend",
        default=default,
        choices=["local", "agentbay"],
        help="where sessions live (env AGENTBAY_MCP_BACKEND); agentbay reads AGENTBAY_API_KEY, AGENTBAY_REGION_ID, "
        "AGENTBAY_ENDPOINT and AGENTBAY_TIMEOUT_MS like Alibaba's SDK",
    )
    parser.add_argument(
        "--agentbay-endpoint", default=default, help="AgentBay endpoint, e.g. http://127.0.0.1:9876 (the emulator)"
    )
    parser.add_argument(
        "--agentbay-instance", default=default, help="ownership scope of cloud sessions for orphan reaping"
    )
    parser.add_argument(
        "--log-level",
        default=default,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="stderr log level (env AGENTBAY_MCP_LOG_LEVEL)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for the docs and tests)."""
    parser = argparse.ArgumentParser(
        prog="agentbay-mcp",
        description="MCP server giving AI assistants disposable sandbox sessions. "
        "With no command it serves MCP (stdio by default).",
    )
    parser.add_argument("--version", action="version", version=f"agentbay-mcp {__version__}")
    sub = parser.add_subparsers(dest="command")

    serve = sub.add_parser("serve", help="serve MCP (the default command)")
    _add_common(serve)
    serve.add_argument("--transport", choices=["stdio", "http"], help="env AGENTBAY_MCP_TRANSPORT (default stdio)")
    serve.add_argument("--host", help="HTTP bind address (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP port (default 8765)")
    serve.add_argument("--idle-lease", type=float, dest="idle_lease_seconds", help="session idle lease, seconds")
    serve.add_argument(
        "--http-idle-timeout",
        type=float,
        dest="http_idle_timeout_seconds",
        help="HTTP MCP session idle timeout, s",
    )
    serve.add_argument(
        "--http-disconnect-grace",
        type=float,
        dest="http_disconnect_grace_seconds",
        help="close an HTTP MCP session this many seconds after its client went away, s (default 60)",
    )
    serve.add_argument(
        "--max-sessions",
        type=int,
        dest="max_sessions_per_conversation",
        help="live sessions per conversation",
    )
    serve.add_argument("--toolsets", help=f"comma-separated subset of: {','.join(KNOWN_TOOLSETS)}")
    serve.add_argument("--isolation", choices=["bwrap", "none"], help="'none' runs commands unconfined (unsafe)")
    serve.add_argument("--network", choices=["off", "on-request", "on"], help="sandbox network policy")
    serve.add_argument("--network-allow", help="comma-separated domains/CIDRs sessions may reach (default: public)")
    serve.add_argument("--network-deny", help="comma-separated domains/CIDRs no session may reach")
    serve.add_argument("--output-cap", type=int, dest="output_cap_bytes", help="bytes of each output stream returned")
    serve.add_argument(
        "--pool-size", type=int, dest="pool_size", help="sessions kept pre-started (local backend; 0: none)"
    )
    serve.add_argument("--memory-limit-mb", type=int, dest="memory_limit_mb", help="memory per session")
    serve.add_argument("--process-limit", type=int, dest="process_limit", help="processes per session")
    serve.add_argument("--cpu-limit-seconds", type=int, dest="cpu_limit_seconds", help="CPU seconds per process")
    serve.add_argument("--open-files-limit", type=int, dest="open_files_limit", help="open files per process")
    serve.add_argument("--file-size-limit-mb", type=int, dest="file_size_limit_mb", help="largest file written")
    serve.add_argument(
        "--disk-limit-mb", type=int, dest="disk_limit_mb", help="disk per session: home, /tmp, output (0: none)"
    )
    serve.add_argument("--screen-width", type=int, dest="screen_width", help="desktop screen width (default 1280)")
    serve.add_argument("--screen-height", type=int, dest="screen_height", help="desktop screen height (default 800)")
    serve.add_argument("--window-manager", dest="window_manager", help="EWMH window manager (default openbox)")
    serve.add_argument("--app-wait-ms", type=int, dest="app_wait_ms", help="start_app's wait for a window")
    _add_storage(serve)
    _add_http_security(serve)

    doctor = sub.add_parser("doctor", help="check this host and run a short real conversation")
    _add_common(doctor)
    doctor.add_argument("--isolation", choices=["bwrap", "none"], help="check with this isolation")
    doctor.add_argument("--disk-limit-mb", type=int, dest="disk_limit_mb", help="check with this disk quota")
    doctor.add_argument("--network", choices=["off", "on-request", "on"], help="report this network policy")
    doctor.add_argument("--network-allow", help="report with this operator allow-list")
    doctor.add_argument("--network-deny", help="report with this operator deny-list")

    sessions = sub.add_parser("sessions", help="operator view of the sessions in a state dir")
    _add_common(sessions)
    actions = sessions.add_subparsers(dest="action", required=True)
    listing = actions.add_parser("list", help="every live session, from every server on this state dir")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    _add_common(listing, argparse.SUPPRESS)
    reap = actions.add_parser("reap", help="delete sessions whose server is gone (never a live server's)")
    _add_common(reap, argparse.SUPPRESS)

    _add_tokens(sub)
    _add_emulator(sub)
    return parser


def _add_tokens(sub: Any) -> None:
    tokens = sub.add_parser("tokens", help="manage the HTTP bearer-token file (stores only hashes)")
    token_actions = tokens.add_subparsers(dest="action", required=True)
    for name, what in (
        ("add", "create a token for a principal; prints it once"),
        ("list", "principals, scopes and hash prefixes"),
        ("remove", "delete every token of a principal"),
    ):
        action = token_actions.add_parser(name, help=what)
        action.add_argument("--token-file", type=Path, help="the token file (env AGENTBAY_MCP_TOKEN_FILE)")
        if name != "list":
            action.add_argument("--principal", required=True, help="user or service name, e.g. alice")
        if name == "add":
            action.add_argument("--scopes", help="comma-separated: all (default), read, <toolset>, <toolset>:read")


def _add_emulator(sub: Any) -> None:
    emulator = sub.add_parser("emulator", help="serve the offline AgentBay API emulator (local sandboxes)")
    emulator.add_argument("--host", default="127.0.0.1", help="bind address (loopback only)")
    emulator.add_argument("--port", type=int, default=9876, help="port (default 9876)")
    emulator.add_argument("--state-dir", help="where its sessions live (default <state dir>/emulator)")
    emulator.add_argument("--no-link-url", action="store_true", help="offer no LinkUrl: every tool via CallMcpTool")
    emulator.add_argument("--isolation", choices=["bwrap", "none"], default="bwrap", help="'none' is unsafe")
    emulator.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"], default="INFO")


def _add_storage(serve: argparse.ArgumentParser) -> None:
    """Contexts (kept between sessions) and workspaces (the operator's host directories)."""
    serve.add_argument(
        "--max-contexts-per-principal", type=int, dest="max_contexts_per_principal", help="contexts one principal keeps"
    )
    serve.add_argument(
        "--context-quota-mb", type=int, dest="context_quota_mb", help="MiB of one principal's contexts (0: no limit)"
    )
    serve.add_argument(
        "--workspace",
        action="append",
        dest="workspaces",
        metavar="NAME=/host/path[:ro|rw|overlay]",
        help="a host directory sessions may show at /workspace/NAME (repeatable; env AGENTBAY_MCP_WORKSPACES, "
        "comma-separated)",
    )


def _add_http_security(serve: argparse.ArgumentParser) -> None:
    group = serve.add_argument_group("HTTP authentication and safety")
    group.add_argument("--token-file", help="static bearer tokens (create with `agentbay-mcp tokens add`)")
    group.add_argument("--jwt-issuer", help="accept JWTs from this issuer (needs --jwt-jwks-file)")
    group.add_argument("--jwt-jwks-file", help="the issuer's public keys (JWKS JSON)")
    group.add_argument("--jwt-audience", help="required JWT aud (default: <public URL>/mcp)")
    group.add_argument("--jwt-principal-claim", help="JWT claim naming the principal (default sub)")
    group.add_argument("--public-url", help="URL clients use, e.g. https://mcp.example.com (allowed Host/Origin)")
    group.add_argument(
        "--allowed-origin", action="append", dest="allowed_origins", help="extra allowed Origin (repeatable)"
    )
    group.add_argument(
        "--no-dns-rebinding-protection",
        action="store_false",
        default=None,
        dest="dns_rebinding_protection",
        help="do not check Host/Origin (only behind a proxy that does)",
    )
    group.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        default=None,
        help="serve without any authentication: no per-start token on loopback, and a non-loopback address "
        "allowed (unsafe; warns on every start)",
    )
    group.add_argument("--audit-log", help="JSON lines per tool call to this file, or 'stderr'")
    group.add_argument(
        "--public-metrics", action="store_true", default=None, help="serve /metrics without authentication"
    )
    group.add_argument("--max-sessions-per-principal", type=int, help="live sessions per principal")
    group.add_argument("--max-commands-per-principal", type=int, help="concurrent execute_command per principal")


def _emulator(args: argparse.Namespace) -> int:
    from agentbay_mcp.auth.config import is_loopback  # noqa: PLC0415 - see the module docstring
    from agentbay_mcp.emulator import run_emulator  # noqa: PLC0415

    if not is_loopback(args.host):
        print(f"agentbay-mcp emulator: refusing to bind {args.host}: loopback addresses only", file=sys.stderr)
        return 2
    state_dir = Path(args.state_dir).expanduser().absolute() if args.state_dir else default_state_dir() / "emulator"
    return run_emulator(args.host, args.port, state_dir, link_url=not args.no_link_url, isolation=args.isolation)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Settings from the flags given; the environment and defaults fill the rest."""
    names = set(Settings.model_fields)
    given: dict[str, Any] = {k: v for k, v in vars(args).items() if k in names and v is not None}
    return Settings(**given)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `agentbay-mcp` command."""
    # A server's cold start allocates some 150k objects that live as long as it does, and little
    # garbage: the cyclic collector's passes over them while importing and building the server are
    # about 15% of the start (bench/bench_start.py). So collection pauses until the server is built
    # (transport/serve.py: resume_collection) or, for every other command, its arguments are read.
    gc.disable()
    try:
        return _main(argv)
    finally:
        gc.enable()


def _main(argv: Sequence[str] | None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or (arguments[0] not in COMMANDS and arguments[0] not in ("-h", "--help", "--version")):
        arguments.insert(0, "serve")
    args = build_parser().parse_args(arguments)
    if args.command != "serve":
        gc.enable()
    if args.command == "emulator":
        logging.basicConfig(
            stream=sys.stderr, level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        return _emulator(args)
    try:
        settings = settings_from_args(args)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            print(f"agentbay-mcp: invalid {where}: {error['msg']}", file=sys.stderr)
        return 2
    # stdout may be the MCP transport: logs go to stderr only.
    logging.basicConfig(
        stream=sys.stderr, level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return _command(args, settings)
    except Exception as exc:
        # The one place the CLI reports agentbay-mcp errors: a line on stderr, exit status 1.
        known = _find_known_error(exc)
        if known is None:
            raise
        command = "" if args.command in (None, "serve") else f" {args.command}"
        print(f"agentbay-mcp{command}: {known}", file=sys.stderr)
        return 1


def _command(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "tokens":
        from agentbay_mcp.cli.tokens import run_tokens  # noqa: PLC0415 - see the module docstring

        path = args.token_file or settings.token_file
        return run_tokens(args.action, path, getattr(args, "principal", None), getattr(args, "scopes", None))
    if args.command in ("doctor", "sessions"):
        return _local_tool(args, settings)
    from agentbay_mcp.transport.serve import run  # noqa: PLC0415 - see the module docstring

    with contextlib.suppress(KeyboardInterrupt):
        run(settings)
    return 0


def _local_tool(args: argparse.Namespace, settings: Settings) -> int:
    """doctor and sessions list|reap: both inspect this host's state dir, so the local backend only."""
    if settings.backend != "local":
        print(
            f"agentbay-mcp {args.command}: only the local backend is supported so far; for AgentBay, use the "
            "AgentBay console, or run the server (it reaps its instance's orphans at start-up).",
            file=sys.stderr,
        )
        return 2
    if args.command == "doctor":
        from agentbay_mcp.cli.doctor import run_doctor  # noqa: PLC0415 - see the module docstring

        return run_doctor(settings)
    from agentbay_mcp.cli.sessions import list_sessions, reap_sessions  # noqa: PLC0415

    return list_sessions(settings, as_json=args.json) if args.action == "list" else reap_sessions(settings)


def _find_known_error(exc: BaseException) -> AgentBayMCPError | None:
    """The agentbay-mcp error inside `exc` (task groups wrap start-up failures in groups)."""
    if isinstance(exc, AgentBayMCPError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _find_known_error(inner)
            if found is not None:
                return found
    return _find_known_error(exc.__cause__) if exc.__cause__ is not None else None
