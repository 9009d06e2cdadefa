"""MCPServer wiring: the lifespan that owns the service, the toolsets, the prompts, and transports.

What only some servers need is imported or built when it is needed, so that a stdio server on the
local backend starts fast (bench/bench_start.py): the agentbay backend and its HTTP client only for
`--backend agentbay`, the HTTP authentication only for type checking (http_app.py builds it).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import TYPE_CHECKING, Any

import anyio
import httpx2
from mcp.server.mcpserver import MCPServer

from agentbay_mcp import __version__
from agentbay_mcp.auth.scopes import ToolsetServer
from agentbay_mcp.backends.common.egress import parse_rules
from agentbay_mcp.backends.common.workspace_specs import check_workspaces
from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.backends.local.network import NetworkBounds
from agentbay_mcp.backends.local.sandbox import DesktopOptions, SandboxOptions, SessionLimits
from agentbay_mcp.backends.protocols import SandboxBackend
from agentbay_mcp.observability.audit import AuditLog
from agentbay_mcp.observability.metrics import Metrics
from agentbay_mcp.server import prompts, resources
from agentbay_mcp.server.call_guard import CallGuard
from agentbay_mcp.services.commands.service import CommandService
from agentbay_mcp.services.contexts.service import ContextService
from agentbay_mcp.services.desktop.service import DesktopService
from agentbay_mcp.services.files.service import FileService
from agentbay_mcp.services.network.service import NetworkService
from agentbay_mcp.services.sessions.registry import Registry
from agentbay_mcp.services.sessions.service import SessionService
from agentbay_mcp.services.workspaces.service import WorkspaceService
from agentbay_mcp.settings import Settings
from agentbay_mcp.tools import commands, contexts, desktop, files, network, sessions, workspaces
from agentbay_mcp.tools.common import AppState

if TYPE_CHECKING:
    from agentbay_mcp.auth.config import HttpAuth

logger = logging.getLogger(__name__)

BackendFactory = Callable[[Settings], SandboxBackend]


class Running:
    """The service of the lifespan now running, for the transports' stop-signal handling.

    A stop signal must release the sessions *first*, while the transport is still up: calls in
    flight then end at once (their sandboxes are gone) and their answers go out, so closing the
    transport afterwards waits for nothing. The lifespan's own release at exit finds nothing left.
    """

    def __init__(self) -> None:
        self.service: SessionService | None = None
        #: The live network service (the HTTP app serves its public links).
        self.network: NetworkService | None = None

    async def release(self) -> None:
        """Release every session of every conversation now (bounded; no-op outside a lifespan)."""
        if self.service is not None:
            with anyio.CancelScope(shield=True):
                await self.service.release_all()


INSTRUCTIONS = """\
agentbay-mcp gives you disposable sandbox sessions. Call create_session first and pass its
session_id to the other tools. Sessions belong to this conversation only and are deleted when it
ends or after they sit idle past their lease; delete_session releases one early. Label sessions
(create_session labels, set_session_labels) to find them again with list_sessions. To keep data
between sessions (a cache, a checkout), put it in a context: create_session contexts=[...].
"""

#: toolset name -> function adding its tools.
TOOLSETS: dict[str, Callable[[ToolsetServer[Any]], None]] = {
    "sessions": sessions.register,
    "commands": commands.register,
    "files": files.register,
    "desktop": desktop.register,
    "network": network.register,
    "contexts": contexts.register,
    "workspaces": workspaces.register,
}


def sandbox_options(settings: Settings) -> SandboxOptions:
    """How the local backend confines sessions, from the settings."""
    mib = 1024 * 1024
    limits = SessionLimits(
        memory_bytes=settings.memory_limit_mb * mib,
        processes=settings.process_limit,
        open_files=settings.open_files_limit,
        cpu_seconds=settings.cpu_limit_seconds,
        file_size_bytes=settings.file_size_limit_mb * mib,
        disk_bytes=settings.disk_limit_mb * mib,
    )
    screen = DesktopOptions(
        width=settings.screen_width, height=settings.screen_height, window_manager=settings.window_manager
    )
    return SandboxOptions(isolation=settings.isolation, limits=limits, desktop=screen)


def network_bounds(settings: Settings) -> NetworkBounds:
    """The operator's allow- and deny-lists, as the local backend enforces them."""
    return NetworkBounds(allow=parse_rules(settings.network_allow), deny=parse_rules(settings.network_deny))


def default_backend(settings: Settings, http: httpx2.AsyncClient | None = None) -> SandboxBackend:
    """The backend named in the settings; the agentbay backend needs the server's HTTP client."""
    if settings.backend == "agentbay":
        if http is None:
            raise ValueError("the agentbay backend needs the server's httpx2.AsyncClient")
        from agentbay_mcp.backends import agentbay  # noqa: PLC0415 - see the module docstring

        return agentbay.from_settings(settings, http)
    # Installing the agent and preparing the disk quota wait for no request: in the background.
    return LocalBackend(
        settings.state_dir,
        sandbox=sandbox_options(settings),
        pool_size=settings.pool_size,
        network_bounds=network_bounds(settings),
        context_quota_bytes=settings.context_quota_mb * 1024 * 1024 or None,
        prepare_in_background=True,
        workspaces=check_workspaces(settings.workspaces, settings.state_dir),
    )


def build_service(settings: Settings, backend: SandboxBackend) -> SessionService:
    """A service over `backend` with the settings' limits."""
    return SessionService(
        backend,
        Registry(),
        lease_seconds=settings.idle_lease_seconds,
        max_sessions_per_conversation=settings.max_sessions_per_conversation,
        network_policy=settings.network,
        max_sessions_per_principal=settings.max_sessions_per_principal,
        max_commands_per_principal=settings.max_commands_per_principal,
    )


@asynccontextmanager
async def _serving(
    settings: Settings, backend: SandboxBackend, service: SessionService, tool_kinds: Any
) -> AsyncIterator[AppState]:
    """Run the service (start-up reaping, lease expiry) for the server's life; release all at the end."""
    processes, capabilities = backend.processes, backend.capabilities
    commands = CommandService(
        service, processes, backend.process_handles, capabilities, output_cap_bytes=settings.output_cap_bytes
    )
    desktop = DesktopService(service, backend.desktop, processes, capabilities, app_wait_ms=settings.app_wait_ms)
    async with anyio.create_task_group() as tg:
        await service.start(tg)
        tg.start_soon(service.run_lease_expiry)
        try:
            yield AppState(
                service=service,
                commands=commands,
                files=FileService(
                    service,
                    backend.files,
                    read_cap_bytes=settings.read_cap_bytes,
                    read_max_bytes=settings.read_max_bytes,
                ),
                desktop=desktop,
                network=NetworkService(
                    service,
                    backend.network,
                    capabilities,
                    settings.network,
                    public_url=settings.public_url if settings.transport == "http" else None,
                ),
                contexts=ContextService(
                    service,
                    backend.contexts,
                    capabilities,
                    max_contexts_per_principal=settings.max_contexts_per_principal,
                ),
                workspaces=WorkspaceService(service, backend.workspaces, capabilities),
                settings=settings,
                tool_kinds=tool_kinds,
            )
        finally:
            await service.close()  # shielded: releases every session before the tasks are cancelled
            tg.cancel_scope.cancel()


def _http_client(
    settings: Settings, backend_factory: BackendFactory | None, transport: httpx2.AsyncBaseTransport | None
) -> AbstractAsyncContextManager[httpx2.AsyncClient | None]:
    """The server's HTTP client, when the default factory builds the agentbay backend (it alone uses
    one); None otherwise: building one loads TLS certificates, tens of ms of a local server's start."""
    if backend_factory is None and settings.backend == "agentbay":
        return httpx2.AsyncClient(transport=transport, follow_redirects=False)
    return nullcontext(None)


def build_server(
    settings: Settings,
    backend_factory: BackendFactory | None = None,
    *,
    auth: HttpAuth | None = None,
    metrics: Metrics | None = None,
    http_transport: httpx2.AsyncBaseTransport | None = None,
    running: Running | None = None,
) -> MCPServer[AppState]:
    """The MCP server. Each lifespan (one per stdio process, HTTP app or in-memory client) gets its
    own backend and service, built by `backend_factory` (tests inject theirs here), and, when the
    default factory builds the agentbay backend, one `httpx2.AsyncClient` handed to it (tests
    inject its transport with `http_transport`). With `auth` (HTTP only) every request needs a
    bearer token; `metrics` collects what /metrics serves; `running` is told the live service."""
    audit = AuditLog(settings.audit_log)
    metrics = metrics or Metrics()
    exposed = {name: TOOLSETS[name] for name in settings.toolsets}
    prompt_files = prompts.load()

    @asynccontextmanager
    async def lifespan(_: MCPServer[AppState]) -> AsyncIterator[AppState]:
        async with _http_client(settings, backend_factory, http_transport) as http:
            backend = backend_factory(settings) if backend_factory else default_backend(settings, http)
            service = build_service(settings, backend)
            audit.open()
            metrics.count_sessions_with(service.live_sessions)
            try:
                async with _serving(settings, backend, service, mcp.tool_kinds) as state:
                    if running is not None:
                        running.service, running.network = service, state.network
                    try:
                        yield state
                    finally:
                        if running is not None:
                            running.service = running.network = None
            finally:
                audit.close()

    mcp: ToolsetServer[AppState] = ToolsetServer(
        "agentbay-mcp",
        title="AgentBay sandbox sessions",
        instructions=INSTRUCTIONS,
        version=__version__,
        lifespan=lifespan,
        log_level=settings.log_level,
        auth=auth.settings if auth else None,
        token_verifier=auth.verifier if auth else None,
        middleware=[CallGuard(audit, metrics), prompts.PromptCheck(prompt_files)],
    )
    for name, register in exposed.items():
        mcp.add_toolset(name, register)
    resources.register(mcp)
    prompts.register(mcp, prompt_files)
    return mcp
