"""Every knob of agentbay-mcp in one place: CLI flags and `AGENTBAY_MCP_*` environment variables.

Precedence: a CLI flag beats an environment variable beats the default. The CLI passes only the
flags the user actually gave, so the environment still applies to everything else.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agentbay_mcp.backends.common.egress import parse_rules
from agentbay_mcp.backends.common.workspace_specs import check_workspaces

#: Toolsets an operator can expose; `server.py` maps each to its tools.
KNOWN_TOOLSETS: tuple[str, ...] = (
    "sessions",
    "commands",
    "files",
    "desktop",
    "network",
    "contexts",
    "workspaces",
)


def default_state_dir(euid: int | None = None) -> Path:
    """`$XDG_STATE_HOME/agentbay-mcp`, else `~/.local/state/agentbay-mcp` (XDG base dirs).

    Root without XDG_STATE_HOME gets /var/lib/agentbay-mcp: root's sandboxes run as an unprivileged
    uid that must be able to traverse to the session directories, which /root forbids.
    """
    base = os.environ.get("XDG_STATE_HOME") or ""
    if base and Path(base).is_absolute():
        return Path(base) / "agentbay-mcp"
    if (os.geteuid() if euid is None else euid) == 0:
        return Path("/var/lib/agentbay-mcp")
    return Path.home() / ".local" / "state" / "agentbay-mcp"


class Settings(BaseSettings):
    """Configuration of one server process."""

    model_config = SettingsConfigDict(env_prefix="AGENTBAY_MCP_", extra="forbid", frozen=True)

    backend: Literal["local", "agentbay"] = Field(
        default="local", description="Where sessions live: this host (local) or the AgentBay cloud (agentbay)."
    )
    state_dir: Path = Field(
        default_factory=default_state_dir,
        description="Directory holding session trees and server locks (shared by servers on one host).",
    )
    transport: Literal["stdio", "http"] = Field(default="stdio", description="MCP transport to serve.")
    host: str = Field(default="127.0.0.1", description="HTTP bind address.")
    port: int = Field(default=8765, ge=0, le=65535, description="HTTP port (0 picks a free one).")
    idle_lease_seconds: float = Field(
        default=1800.0,
        gt=0,
        le=7 * 24 * 3600,
        description="A session unused for this long is deleted; every tool call on it renews the lease.",
    )
    http_idle_timeout_seconds: float = Field(
        default=1800.0,
        gt=0,
        description="An HTTP MCP session (Mcp-Session-Id) with no request for this long is closed, "
        "releasing its sandboxes.",
    )
    http_disconnect_grace_seconds: float = Field(
        default=60.0,
        gt=0,
        le=24 * 3600,
        description="An HTTP MCP session whose client has gone away (it held a stream, and now has none "
        "open and sends no request) is closed after this long, releasing its sandboxes.",
    )
    max_sessions_per_conversation: int = Field(
        default=50, ge=1, le=10_000, description="Live sessions one conversation may hold at once."
    )
    max_sessions_per_principal: int = Field(
        default=100,
        ge=1,
        le=100_000,
        description="Live sessions one authenticated principal may hold at once, across its conversations.",
    )
    max_commands_per_principal: int = Field(
        default=16,
        ge=1,
        le=10_000,
        description="execute_command calls one authenticated principal may have running at once.",
    )
    max_contexts_per_principal: int = Field(
        default=50, ge=1, le=10_000, description="Contexts one principal may keep (every principal, anonymous too)."
    )
    context_quota_mb: int = Field(
        default=4096,
        ge=0,
        le=16 * 1024 * 1024,
        description="Local backend: MiB all of one principal's contexts may hold together (0: no limit).",
    )
    token_file: Path | None = Field(
        default=None, description="HTTP: static bearer tokens (hashed) mapped to principals and scopes."
    )
    jwt_issuer: str | None = Field(default=None, description="HTTP: accept JWTs from this issuer (`iss`).")
    jwt_jwks_file: Path | None = Field(default=None, description="HTTP: the issuer's public keys (JWKS JSON).")
    jwt_audience: str | None = Field(
        default=None, description="HTTP: the `aud` JWTs must carry (default: the public URL of /mcp)."
    )
    jwt_principal_claim: str = Field(default="sub", description="HTTP: the JWT claim naming the principal.")
    public_url: str | None = Field(
        default=None,
        description="HTTP: the URL clients use to reach this server (e.g. https://mcp.example.com); "
        "its host and origin are allowed and it is the OAuth resource identifier.",
    )
    allowed_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="HTTP: extra browser Origins allowed (DNS-rebinding protection)."
    )
    dns_rebinding_protection: bool = Field(
        default=True, description="HTTP: refuse requests whose Host or Origin is not allowed."
    )
    allow_unauthenticated: bool = Field(
        default=False,
        description="HTTP: serve without any authentication: no per-start token on loopback, and a non-loopback "
        "address allowed (unsafe).",
    )
    audit_log: str | None = Field(
        default=None, description="Write one JSON line per tool call to this file, or to 'stderr'."
    )
    public_metrics: bool = Field(default=False, description="HTTP: serve /metrics without authentication.")
    toolsets: Annotated[tuple[str, ...], NoDecode] = Field(
        default=KNOWN_TOOLSETS, description="Which groups of tools to expose."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO")
    isolation: Literal["bwrap", "none"] = Field(
        default="bwrap",
        description="How commands are confined: bubblewrap, or 'none' (unconfined, unsafe: development only).",
    )
    network: Literal["off", "on-request", "on"] = Field(
        default="off",
        description="Sandbox network: never (default), only for sessions that ask (create_session network=, "
        "set_session_network), or on by default. Each session has a network namespace of its own either way.",
    )
    network_allow: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Operator allow-list (domains such as pypi.org or *.github.com, and CIDRs): sessions reach "
        "only these, whatever they ask. Empty: the public internet. Naming a private range allows it.",
    )
    network_deny: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Operator deny-list (domains and CIDRs): never reachable from any session."
    )
    workspaces: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Host directories sessions may ask for, NAME=/host/path[:ro|rw|overlay] (default overlay), "
        "shown at /workspace/NAME (local backend, root with bwrap). Environment: comma-separated.",
    )
    output_cap_bytes: int = Field(
        default=64 * 1024, ge=1024, le=16 * 1024 * 1024, description="Bytes of each output stream returned."
    )
    read_cap_bytes: int = Field(
        default=256 * 1024, ge=4096, le=4 * 1024 * 1024, description="read_file's page without a length, or by lines."
    )
    read_max_bytes: int = Field(
        default=1024 * 1024, ge=4096, le=16 * 1024 * 1024, description="read_file's largest page, when a length asks."
    )
    pool_size: int = Field(
        default=1,
        ge=0,
        le=16,
        description="Local backend: sessions kept pre-started (a sandbox already answering), so create_session "
        "takes milliseconds; each costs an idle sandbox's memory. 0 turns the pool off.",
    )
    memory_limit_mb: int = Field(default=2048, ge=64, description="Memory per session (cgroup) / process (rlimit).")
    process_limit: int = Field(default=256, ge=8, description="Processes per session.")
    cpu_limit_seconds: int = Field(default=3600, ge=1, description="CPU seconds per process.")
    open_files_limit: int = Field(default=1024, ge=32, description="Open files per process.")
    file_size_limit_mb: int = Field(default=2048, ge=1, description="Largest file a session may write.")
    disk_limit_mb: int = Field(
        default=4096,
        ge=0,
        description="Disk space per session: home, /tmp and command output together (its own file system; "
        "needs root and loop devices). 0 turns it off.",
    )
    screen_width: int = Field(default=1280, ge=320, le=3840, description="Width of a desktop session's screen.")
    screen_height: int = Field(default=800, ge=200, le=2160, description="Height of a desktop session's screen.")
    window_manager: str = Field(
        default="openbox",
        pattern=r"^[A-Za-z0-9_.+-]{1,64}$",
        description="EWMH window manager run on each session's display (a command on PATH).",
    )
    app_wait_ms: int = Field(
        default=5000, ge=0, le=30000, description="How long start_app waits for the application's window."
    )

    # The AgentBay backend reads the variables Alibaba's own SDK reads, so existing users need nothing new.
    agentbay_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("agentbay_api_key", "AGENTBAY_API_KEY"),
        description="AgentBay API key (env AGENTBAY_API_KEY only: a flag would show it in ps).",
    )
    agentbay_region_id: str = Field(
        default="cn-hangzhou",
        validation_alias=AliasChoices("agentbay_region_id", "AGENTBAY_REGION_ID"),
        description="AgentBay region; the endpoint is agentbay.<region>.aliyuncs.com.",
    )
    agentbay_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("agentbay_endpoint", "AGENTBAY_ENDPOINT"),
        description="AgentBay endpoint override: host[:port] (HTTPS) or a full http(s):// URL, e.g. the emulator.",
    )
    agentbay_timeout_ms: int = Field(
        default=60000,
        ge=1000,
        le=600_000,
        validation_alias=AliasChoices("agentbay_timeout_ms", "AGENTBAY_TIMEOUT_MS"),
        description="HTTP timeout of one AgentBay API call (a command's call also gets its timeout_ms).",
    )
    agentbay_instance: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Ownership scope of cloud sessions (label agentbay-mcp.instance): servers with the same "
        "instance reap each other's orphans. Default: derived from this host and the state dir.",
    )

    @field_validator("toolsets", "allowed_origins", "network_allow", "network_deny", "workspaces", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("network_allow", "network_deny")
    @classmethod
    def _network_rules(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(parse_rules(value, what="operator network rule").as_strings())

    @field_validator("public_url", "jwt_issuer")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/") if value else value

    @property
    def auth_enabled(self) -> bool:
        """Whether HTTP requests must carry a bearer token."""
        return self.token_file is not None or self.jwt_issuer is not None

    @field_validator("toolsets")
    @classmethod
    def _known_toolsets(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = sorted(set(value) - set(KNOWN_TOOLSETS))
        if unknown:
            raise ValueError(f"unknown toolset(s) {', '.join(unknown)}; choose from {', '.join(KNOWN_TOOLSETS)}")
        if not value:
            raise ValueError("at least one toolset must be exposed")
        if "sessions" not in value:
            # Without session tools nothing else can be reached: every other tool takes a session id.
            raise ValueError("the 'sessions' toolset is required: every other tool needs a session")
        return tuple(dict.fromkeys(value))

    @field_validator("disk_limit_mb")
    @classmethod
    def _disk_limit_fits_ext4(cls, value: int) -> int:
        if 0 < value < 16:
            raise ValueError("must be 0 (no quota) or at least 16 MB (the file system needs some for itself)")
        return value

    @field_validator("state_dir")
    @classmethod
    def _absolute_state_dir(cls, value: Path) -> Path:
        return value.expanduser().absolute()

    @model_validator(mode="after")
    def _workspaces_exist(self) -> Self:
        check_workspaces(self.workspaces, self.state_dir)  # ValueError saying which and why
        return self

    @model_validator(mode="after")
    def _jwt_needs_both(self) -> Self:
        if (self.jwt_issuer is None) != (self.jwt_jwks_file is None):
            raise ValueError("JWT authentication needs both jwt_issuer and jwt_jwks_file")
        return self
