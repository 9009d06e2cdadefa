"""The local backend: sessions as directory trees under the state dir, each with its own sandbox.

A session is born in a staging directory and renamed into `sessions/` only when whole, and leaves
by being renamed into the trash first, so a crash at any point leaves either a whole session or
litter the reaper recognises, never half a session that looks live. Its sandbox (bubblewrap plus
the in-sandbox agent, see sandbox.py) starts with the session and is restarted on the next call if
something killed it; the session's files live on the host and survive that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import anyio
from anyio.abc import TaskGroup

from agentbay_mcp.backends.common.server_lock import ServerLock, new_server_id
from agentbay_mcp.backends.common.unsupported import unsupported_mounts
from agentbay_mcp.backends.common.workspace_specs import WorkspaceSpec
from agentbay_mcp.backends.local.agent import install_agent
from agentbay_mcp.backends.local.agent_client import AgentClient
from agentbay_mcp.backends.local.capabilities import LocalDesktop, LocalFiles, LocalProcesses
from agentbay_mcp.backends.local.cgroups import CgroupLimits, Cgroups
from agentbay_mcp.backends.local.contexts import LocalContexts
from agentbay_mcp.backends.local.disk_quota import (
    DiskQuota,
    DiskQuotaError,
    on_quota_disk,
    prepare_quota,
    provision_home,
)
from agentbay_mcp.backends.local.layout import (
    StateDir,
    check_reachable,
    discard,
    is_session_id,
    new_session_id,
    read_record,
    remove_tree,
    save_network,
    write_record,
)
from agentbay_mcp.backends.local.leftovers import write_sandbox_pids
from agentbay_mcp.backends.local.network import LocalNetwork, NetworkBounds, capabilities_for
from agentbay_mcp.backends.local.offer import CAPABILITIES, IMAGES
from agentbay_mcp.backends.local.pool import POOL_OWNER, SessionPool
from agentbay_mcp.backends.local.reaping import reap_orphans_sync, unmount_own
from agentbay_mcp.backends.local.restarts import RestartBudget, loss_report
from agentbay_mcp.backends.local.sandbox import (
    INSTALL_BWRAP_HINT,
    UNPRIVILEGED_UID,
    Sandbox,
    SandboxOptions,
    find_bwrap,
    launch,
)
from agentbay_mcp.backends.local.workspaces import offer_workspaces
from agentbay_mcp.backends.records import ImageInfo, NetworkPolicy, SessionRecord
from agentbay_mcp.backends.records_contexts import ContextMount
from agentbay_mcp.errors import (
    BackendError,
    BackendUnavailableError,
    SandboxLostError,
    SessionNotFoundError,
    UnknownImageError,
)

logger = logging.getLogger(__name__)


class LocalBackend:
    """Sessions on this host. One instance per server process."""

    def __init__(
        self,
        state_dir: Path,
        *,
        server_id: str | None = None,
        sandbox: SandboxOptions | None = None,
        use_cgroups: bool = True,
        pool_size: int = 0,
        network_bounds: NetworkBounds | None = None,
        prepare_in_background: bool = False,
        context_quota_bytes: int | None = None,
        workspaces: Sequence[WorkspaceSpec] = (),
    ) -> None:
        self._state = StateDir(state_dir)
        self._server_id = server_id or new_server_id()
        self._lock = ServerLock(self._state.servers, self._server_id)
        self._images = {image.image_id: image for image in IMAGES}
        options = sandbox or SandboxOptions()
        if options.isolation == "bwrap" and options.bwrap_path is None:
            options = dataclasses.replace(options, bwrap_path=find_bwrap())
        self._options = options
        self._use_cgroups = use_cgroups
        self._cgroups: Cgroups | None = None
        self._disk: DiskQuota | None = None
        self._sandboxes: dict[str, Sandbox] = {}
        self._sandbox_locks: dict[str, anyio.Lock] = {}
        # Background processes believed running, per session: what to report if the sandbox dies.
        self._background: dict[str, dict[str, str]] = {}
        # Sessions whose sandbox died and whose owner has not been told yet: the report.
        self._lost: dict[str, str] = {}
        #: Sessions whose sandbox has had its desktop started (a restart loses its windows and apps).
        self._desktop_used: set[str] = set()
        self._restarts = RestartBudget()  # of sandboxes that broke the protocol
        self._task_group: TaskGroup | None = None
        self.pool: Final = SessionPool(  # pre-started sessions for create_session, see pool.py
            pool_size,
            make=lambda: self._create(IMAGES[0].image_id, {}, POOL_OWNER, NetworkPolicy()),
            usable=lambda session_id: self._live_agent(session_id) is not None,
            delete=self.delete_session,
        )
        self._prepare_in_background = prepare_in_background
        #: Set once the agent is installed and the disk quota prepared (see start); None before start.
        self._prepared: anyio.Event | None = None
        #: Why that preparation failed, if it did: every create_session says so.
        self._unprepared: BackendUnavailableError | None = None
        # What it can do (everything), and its capability objects (see backends/protocols.py).
        confined, root = options.isolation == "bwrap", os.geteuid() == 0
        self._ws = offer_workspaces(workspaces, confined and root, self._state.session_dir, self._read)
        self.capabilities: Final = self._ws.declare(capabilities_for(CAPABILITIES, confined=confined, root=root))
        self.network: Final = LocalNetwork(  # its slirp4netns counts against the session's cgroups
            network_bounds or NetworkBounds(),
            confined=confined,
            enterable=root,
            saved=functools.partial(save_network, self._state),
            place=lambda session_id, pid: None if self._cgroups is None else self._cgroups.add(session_id, pid),
        )
        self.processes: Final = LocalProcesses(self._agent, self._live_agent, self._background)
        self.process_handles: Final = self.processes
        self.files: Final = LocalFiles(self._agent, self._quota_mb_for)
        screen = (options.desktop.width, options.desktop.height)
        self.desktop: Final = LocalDesktop(self._desktop_agent, self._agent, self.processes, screen)
        uid, disk = UNPRIVILEGED_UID if confined and root else None, lambda: self._disk and self._disk.size_bytes
        self.contexts: Final = LocalContexts(self._state, quota=context_quota_bytes, session_uid=uid, disk_bytes=disk)
        self.workspaces: Final = self._ws.usable

    @property
    def sandbox_options(self) -> SandboxOptions:
        """How this backend builds sandboxes."""
        return self._options

    @property
    def cgroups(self) -> Cgroups | None:
        """The cgroups in use, if the host allows them."""
        return self._cgroups

    @property
    def disk_quota(self) -> DiskQuota | None:
        """The per-session disk quota in force, if the host allows one (see disk_quota.py)."""
        return self._disk

    @property
    def name(self) -> str:
        """Backend name."""
        return "local"

    @property
    def server_id(self) -> str:
        """This server instance's id."""
        return self._server_id

    @property
    def state_dir(self) -> Path:
        """The state dir this backend works in."""
        return self._state.root

    def images(self) -> list[ImageInfo]:
        """Images the local backend offers."""
        return list(IMAGES)

    async def start(self, task_group: TaskGroup) -> list[str]:
        """Claim this server's lock and reap what dead servers left behind, then prepare for sandboxes
        (install the agent, prepare the disk quota): with `prepare_in_background` (the server's choice)
        in `task_group`, so that a server answers its first requests sooner; create_session waits for it."""
        self._task_group = task_group
        self.network.start(task_group)
        prepared = self._prepared = anyio.Event()
        await self._detect_cgroups()
        try:
            self._state.ensure()
            if os.geteuid() == 0 and self._options.isolation == "bwrap":
                # bwrap runs as an unprivileged uid that must reach the session dirs (but not list them).
                for path in (self._state.root, self._state.sessions):
                    path.chmod(0o711)
                check_reachable(self._state.root)
            self._lock.acquire()
        except OSError as exc:
            raise self._state.unusable(exc) from exc
        reaped = await self.reap_orphans()
        if self._prepare_in_background:
            task_group.start_soon(self._prepare, prepared)
        else:
            await self._prepare(prepared)
            if self._unprepared is not None:
                raise self._unprepared
        return reaped

    async def _prepare(self, prepared: anyio.Event) -> None:
        """Install the agent and prepare the disk quota, then fill the pool. A failure is kept, logged and
        raised by every create_session (not by the task group: in the background it would end the server)."""
        try:
            if self._options.isolation == "bwrap":
                try:
                    agent_dir = await anyio.to_thread.run_sync(install_agent, self._state.root)
                except OSError as exc:
                    raise self._state.unusable(exc) from exc
                self._options = dataclasses.replace(self._options, agent_dir=agent_dir)
            disk_bytes = self._options.limits.disk_bytes
            bwrap = self._options.isolation == "bwrap" and bool(self._options.bwrap_path)
            self._disk = await anyio.to_thread.run_sync(prepare_quota, self._state.root, disk_bytes, bwrap)
        except BackendUnavailableError as exc:
            logger.error("sessions cannot start: %s", exc)
            self._unprepared = exc
            return
        finally:
            prepared.set()
        if self._task_group is not None and (self._options.isolation == "none" or self._options.bwrap_path):
            self.pool.start(self._task_group)  # fills in the background, once sandboxes can start

    async def _detect_cgroups(self) -> None:
        if (
            self._cgroups is None
            and self._use_cgroups
            and self._options.isolation == "bwrap"
            and bool(self._options.bwrap_path)
        ):
            self._cgroups = await anyio.to_thread.run_sync(Cgroups.detect_for, self._state.root)

    async def close(self) -> None:
        """Delete the pool, stop any sandbox still running and give up the server lock."""
        with anyio.CancelScope(shield=True):
            await self.pool.close()
            for session_id in list(self._sandboxes):
                await self._stop_sandbox(session_id)
            if self._disk is not None or self.workspaces is not None:
                await anyio.to_thread.run_sync(unmount_own, self._state, self._server_id)
        self._lock.release()

    async def create_session(
        self,
        *,
        image_id: str,
        labels: dict[str, str],
        owner: str,
        network: NetworkPolicy | None = None,
        contexts: Sequence[ContextMount] = (),
        workspaces: Sequence[str] = (),
    ) -> SessionRecord:
        """Hand out a pooled session (any image: a desktop's display starts on first use; the network is
        switched on if asked), else build one."""
        if image_id not in self._images:
            raise UnknownImageError(
                f"Unknown image_id {image_id!r}. The local backend offers: {', '.join(self._images)}."
            )
        unsupported_mounts(self.capabilities, contexts, workspaces)
        self._ws.check(workspaces)
        network = network or NetworkPolicy()
        if network.enabled and not self.capabilities.egress_rules:
            raise BackendUnavailableError(self.capabilities.unsupported["egress_rules"])
        if not workspaces and (pooled := self.pool.take()) is not None:
            record = SessionRecord.new(
                pooled, image_id=image_id, labels=labels, owner=owner, server_id=self._server_id, network=network
            )
            try:
                write_record(self._state.meta_path(pooled), record)
                if network.enabled:
                    await self.network.set_egress(pooled, network)
            except OSError:  # the slow path says what is wrong with the state dir
                await self.delete_session(pooled)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self.delete_session(pooled)
                raise
            else:
                return await self._with_contexts(record, contexts)
        return await self._with_contexts(await self._create(image_id, labels, owner, network, workspaces), contexts)

    async def _with_contexts(self, record: SessionRecord, contexts: Sequence[ContextMount]) -> SessionRecord:
        """The session with its contexts copied in before it runs any command, or no session."""
        try:
            return await self.contexts.mount(record, self._state.session_dir(record.session_id), contexts)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.delete_session(record.session_id)
            raise

    async def _create(
        self, image_id: str, labels: dict[str, str], owner: str, network: NetworkPolicy, workspaces: Sequence[str] = ()
    ) -> SessionRecord:
        """Assemble a session in staging, publish it with one rename, then start its sandbox."""
        if self._prepared is not None:  # the agent is installed in the background at start
            await self._prepared.wait()
        if self._unprepared is not None:
            raise BackendUnavailableError(str(self._unprepared))
        session_id = new_session_id()
        record = SessionRecord.new(
            session_id, image_id=image_id, labels=labels, owner=owner, server_id=self._server_id, network=network,
            workspaces=workspaces,
        )  # fmt: skip
        staging = self._state.staging_dir(self._server_id, session_id)
        try:
            # In a thread: with a disk quota this mounts a file system (a few ms of kernel work).
            await anyio.to_thread.run_sync(self._assemble, staging, record)
        except DiskQuotaError as exc:
            await anyio.to_thread.run_sync(remove_tree, staging)
            raise BackendUnavailableError(
                f"Could not give the session its disk quota: {exc.strerror or exc}. Try again; if it keeps "
                "failing, run 'agentbay-mcp doctor', or set --disk-limit-mb 0 to run sessions without one."
            ) from exc
        except BackendError:  # a workspace that cannot be mounted: says which
            await anyio.to_thread.run_sync(remove_tree, staging)
            raise
        except OSError as exc:
            await anyio.to_thread.run_sync(remove_tree, staging)
            raise BackendUnavailableError(
                f"Could not create the session's directory under {self._state.sessions} "
                f"({exc.strerror or exc}). Check the state dir is writable and the disk is not full."
            ) from exc
        if self._options.isolation == "none" or self._options.bwrap_path:
            try:
                await self._start_sandbox(record)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    await self.delete_session(session_id)
                raise
        return record

    def _assemble(self, staging: Path, record: SessionRecord) -> None:
        """Build the session in staging, then publish it with one rename (a mount inside moves along)."""
        staging.mkdir(mode=0o711 if os.geteuid() == 0 else 0o700)
        confined_root = os.geteuid() == 0 and self._options.isolation == "bwrap"
        provision_home(staging, self._disk, UNPRIVILEGED_UID, chown_plain=confined_root)
        self._ws.assemble(staging, record.workspaces, staging / "disk" if self._disk is not None else None)
        write_record(staging / "meta.json", record)
        staging.rename(self._state.session_dir(record.session_id))

    async def get_session(self, session_id: str) -> SessionRecord:
        """Read the session's record; a sandbox that died says so (without restarting it)."""
        record = self._read(session_id)
        sandbox = self._sandboxes.get(session_id)
        if session_id in self._lost or (sandbox is not None and not sandbox.agent.alive):
            notice = self._lost.get(session_id) or self._loss_report(session_id)
            return record.model_copy(update={"status": "SANDBOX_DIED", "notice": notice})
        return record

    def _loss_report(self, session_id: str) -> str:
        return loss_report(session_id, self._background.get(session_id, {}), session_id in self._desktop_used)

    async def set_labels(self, session_id: str, labels: dict[str, str]) -> SessionRecord:
        """Rewrite the record with the new label map."""
        record = self._read(session_id).model_copy(update={"labels": dict(labels)})
        try:
            write_record(self._state.meta_path(session_id), record)
        except FileNotFoundError as exc:
            raise SessionNotFoundError(session_id) from exc
        except OSError as exc:
            raise BackendError(f"Could not save labels of {session_id}: {exc.strerror or exc}") from exc
        return record

    async def keep_alive(self, session_id: str) -> None:
        """Record a use: the record's mtime is the last-use time operators see."""
        if is_session_id(session_id):
            with contextlib.suppress(OSError):
                os.utime(self._state.meta_path(session_id))

    async def delete_session(self, session_id: str) -> None:
        """Stop the sandbox and remove the session's tree; unknown ids are fine (idempotent)."""
        if not is_session_id(session_id):
            return
        with anyio.CancelScope(shield=True):
            await self._stop_sandbox(session_id)
            await self.contexts.sync_ending(session_id)  # nothing runs in the session now
            await self.network.forget(session_id)
            self._background.pop(session_id, None)
            self._lost.pop(session_id, None)
            self._desktop_used.discard(session_id)
            self._restarts.forget(session_id)
            if self._cgroups is not None:  # also after a launch that failed half-way
                await anyio.to_thread.run_sync(self._cgroups.remove, session_id)
            try:
                await anyio.to_thread.run_sync(discard, self._state, self._state.session_dir(session_id), session_id)
            except OSError as exc:
                # The sandbox is stopped; the files stay, and so does the session (the caller may retry).
                raise BackendError(
                    f"Could not delete session {session_id}: its directory under {self._state.sessions} "
                    f"cannot be removed ({exc.strerror or exc}). Its sandbox is stopped and the session is "
                    "kept: retry delete_session once the state dir is writable again."
                ) from exc

    # Sandboxes ------------------------------------------------------------------------------

    async def _start_sandbox(self, record: SessionRecord) -> Sandbox:
        assert self._task_group is not None, "LocalBackend.start() was not called"
        session_id = record.session_id
        if self._cgroups is not None:
            limits = self._options.limits
            await anyio.to_thread.run_sync(
                self._cgroups.create, session_id, CgroupLimits(limits.processes, limits.memory_bytes)
            )
        session_dir = self._state.session_dir(session_id)
        options, tg = self._options, self._task_group
        binds = self._ws.binds(session_dir)  # the session's workspaces, if any
        sandbox = await launch(session_id, session_dir, options, task_group=tg, cgroups=self._cgroups, binds=binds)
        self._sandboxes[session_id] = sandbox
        # The proxy in its namespace, and slirp with the routes if its policy has any (a restart: again).
        try:
            await self.network.attach(session_id, sandbox.netns, record.network, session_dir / "sandbox.log")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._stop_sandbox(session_id)
            raise
        if self._options.isolation == "none":  # bwrap sandboxes record theirs before they start
            write_sandbox_pids(self._state.session_dir(session_id), sandbox.child_pid)
        return sandbox

    async def _stop_sandbox(self, session_id: str) -> None:
        sandbox = self._sandboxes.pop(session_id, None)
        if sandbox is not None:
            await self.network.detach(session_id)
            await sandbox.stop()

    async def _agent(self, session_id: str) -> AgentClient:
        """The session's live agent; restarts the sandbox if something killed it."""
        sandbox = self._sandboxes.get(session_id)
        if sandbox is not None and sandbox.agent.alive:
            return sandbox.agent
        record = self._read(session_id)
        if self._options.isolation == "bwrap" and not self._options.bwrap_path:
            raise BackendUnavailableError(
                f"Commands cannot run: bubblewrap (bwrap) is not installed. {INSTALL_BWRAP_HINT}"
            )
        lock = self._sandbox_locks.setdefault(session_id, anyio.Lock())
        async with lock:
            sandbox = self._sandboxes.get(session_id)
            if sandbox is None or not sandbox.agent.alive:
                self._restarts.check(session_id, sandbox)
                if sandbox is not None:
                    logger.info("session %s: sandbox died; restarting it", session_id)
                    if self._background.get(session_id) or session_id in self._desktop_used:
                        self._lost.setdefault(session_id, self._loss_report(session_id))
                    # else nothing but files, which are kept: the restart can be transparent
                    self._background.pop(session_id, None)
                    self._desktop_used.discard(session_id)
                    await self._stop_sandbox(session_id)
                sandbox = await self._start_sandbox(record)
            report = self._lost.pop(session_id, None)
        if report is not None:  # told once, by this call, which did not run: the model retries it
            raise SandboxLostError(report)
        return sandbox.agent

    def _live_agent(self, session_id: str) -> AgentClient | None:
        """The session's agent if its sandbox runs (never starts one)."""
        sandbox = self._sandboxes.get(session_id)
        return sandbox.agent if sandbox is not None and sandbox.agent.alive else None

    def _quota_mb_for(self, path: str) -> int | None:
        """The quota to name when a write to `path` finds no space (not for /dev/shm, a tmpfs of its own)."""
        return self._disk.size_mb if self._disk is not None and on_quota_disk(path) else None

    async def _desktop_agent(self, session_id: str) -> AgentClient:
        """The agent, for a desktop call: a later sandbox death then reports the desktop as lost."""
        agent = await self._agent(session_id)
        self._desktop_used.add(session_id)
        return agent

    async def reap_orphans(self) -> list[str]:
        """Delete sessions (and staging/trash litter) whose server is no longer alive, with their cgroups.

        Works on a backend that was never started too (`agentbay-mcp sessions reap`)."""
        await self._detect_cgroups()
        reap = functools.partial(reap_orphans_sync, sync=self.contexts.sync_orphan)
        return await anyio.to_thread.run_sync(reap, self._state, self._server_id, self._cgroups)

    async def list_all(self) -> list[SessionRecord]:
        """Every readable session record in the state dir, any server's."""
        records: list[SessionRecord] = []
        for session_id in self._state.session_ids():
            with contextlib.suppress(SessionNotFoundError):
                records.append(self._read(session_id))
        return records

    def _read(self, session_id: str) -> SessionRecord:
        if not is_session_id(session_id):
            raise SessionNotFoundError(session_id)
        try:
            return read_record(self._state.meta_path(session_id))
        except (OSError, ValueError) as exc:
            raise SessionNotFoundError(session_id) from exc
