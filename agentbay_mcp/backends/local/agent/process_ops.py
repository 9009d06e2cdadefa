"""The agent's process operations: commands started through keepers, their output, their ends.

Standard library only (see sandbox_agent.py). Processes are forked with their stdout/stderr on
pipes; proc_state.py keeps each stream's output within bounds. Every command runs under its own
keeper (keeper.py), so the whole tree a command started can be signalled, and nothing it leaves
behind escapes: orphans that fall to the agent are killed (sweep_orphans).

Operations take the request and return the reply's result, or None when the request waits
(`wait_ms`) for the process: the event loop (agent_loop.py) parks it and asks again.
"""

from __future__ import annotations

import base64
import json
import os
import select
import selectors
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the type checker sees the package; the sandbox runs these files as top-level modules
    from agentbay_mcp.backends.local.agent import error_names, keeper, proc_table
    from agentbay_mcp.backends.local.agent.error_names import AgentError
    from agentbay_mcp.backends.local.agent.proc_state import READ_CHUNK, Proc, Stream, _now
else:
    import error_names
    import keeper
    import proc_table
    from error_names import AgentError
    from proc_state import READ_CHUNK, Proc, Stream, _now

MAX_BACKGROUND = 32
Request = dict[str, object]
Reply = dict[str, object]


class Processes:
    """The session's commands: by id, by keeper pid, and those whose keeper was killed."""

    def __init__(self, config: Request, sel: selectors.BaseSelector) -> None:
        self.config = config
        self.sel = sel  # the event loop's: pipes and keeper reports are registered on it
        self.output_dir = str(config.get("output_dir") or "/tmp/.agentbay")
        self.procs: dict[str, Proc] = {}
        self.by_keeper: dict[int, Proc] = {}  # keeper pid -> its command, until the keeper is reaped
        self.adopted: dict[int, Proc] = {}  # command pid -> command, for commands whose keeper was killed
        self.spare: keeper.Spare | None = None  # the next command's keeper, forked while idle
        self.counter = 0
        # Ids and output files of a restarted sandbox must not collide with its predecessor's.
        self.generation = os.urandom(3).hex()

    # ---- operations -------------------------------------------------------------------------

    def _proc(self, request: Request) -> Proc:
        proc = self.procs.get(str(request.get("proc_id")))
        if proc is None:
            raise AgentError(error_names.NOT_FOUND, f"no process {request.get('proc_id')!r}")
        return proc

    def op_spawn(self, request: Request) -> Reply:
        command = request["command"]
        if not isinstance(command, str):
            raise AgentError(error_names.BAD_REQUEST, "command must be a string")
        env = request.get("env") or {}
        cwd = request.get("cwd") or self.config["home"]
        if not isinstance(env, dict) or not isinstance(cwd, str):
            raise AgentError(error_names.BAD_REQUEST, "env must be an object, cwd a string")
        if not request.get("foreground"):
            background = [p for p in self.procs.values() if not p.foreground]
            if len(background) >= MAX_BACKGROUND:
                finished = [p for p in background if not p.running]
                if not finished:
                    raise AgentError(
                        error_names.BAD_REQUEST, f"{MAX_BACKGROUND} background processes are running; kill some first"
                    )
                self.op_forget({"proc_id": min(finished, key=lambda p: p.started).id})
        self.counter += 1
        proc_id = f"p{self.generation}-{self.counter}"
        full_env = dict(self.config["env"])  # type: ignore[call-overload]
        full_env.update({str(k): str(v) for k, v in env.items()})
        out_r, out_w = os.pipe2(os.O_CLOEXEC)
        err_r, err_w = os.pipe2(os.O_CLOEXEC)
        in_r, in_w = os.pipe2(os.O_CLOEXEC) if request.get("stdin") == "pipe" else (None, None)
        foreground = bool(request.get("foreground"))
        try:
            keeper_pid, pid, status_fd, reported = keeper.spawn(
                command,
                cwd=cwd,
                env=full_env,
                stdin_fd=in_r,
                stdout_fd=out_w,
                stderr_fd=err_w,
                foreground=foreground,
                cpu_seconds=int(self.config.get("cpu_seconds") or 0),  # type: ignore[call-overload]
                spare=self.take_spare(),
            )
        except (AgentError, OSError) as exc:
            for fd in (out_r, out_w, err_r, err_w, in_r, in_w):
                if fd is not None:
                    os.close(fd)
            if isinstance(exc, AgentError):
                raise
            raise AgentError(error_names.SPAWN_FAILED, f"could not start the command: {exc.strerror or exc}") from None
        for fd in (out_w, err_w, in_r):
            if fd is not None:
                os.close(fd)
        keep = bool(request.get("keep_full_output", True))
        streams = {}
        for name in ("stdout", "stderr"):
            streams[name] = Stream(
                name,
                head_size=int(request.get("head_bytes", 16384)),  # type: ignore[call-overload]
                ring_size=int(request.get("ring_bytes", 1 << 20)),  # type: ignore[call-overload]
                spill_path=f"{self.output_dir}/{proc_id}.{name}" if keep else None,
                spill_after=int(request.get("spill_after", 65536)),  # type: ignore[call-overload]
                spill_limit=int(self.config.get("output_file_limit", 1 << 30)),  # type: ignore[call-overload]
            )
        pipes = {"stdout": out_r, "stderr": err_r}
        proc = Proc(proc_id, pid, keeper_pid, status_fd, pipes, in_w, command, streams, foreground=foreground)
        self.procs[proc_id] = proc
        self.by_keeper[keeper_pid] = proc
        for name, fd in pipes.items():
            os.set_blocking(fd, False)
            self.sel.register(fd, selectors.EVENT_READ, ("pipe", (proc, name)))
        self.sel.register(status_fd, selectors.EVENT_READ, ("status", proc))
        if reported:
            self.on_status(proc, reported)
        if in_w is not None:
            os.set_blocking(in_w, False)
        return {"proc_id": proc_id, "pid": proc.pid}

    def op_run(self, request: Request) -> Reply | None:
        """spawn + finish in one round trip: most commands end before the first wait runs out."""
        spawned = self.op_spawn(request)
        request["op"] = "finish"  # a parked request is re-checked through op_finish, not spawned again
        request["proc_id"] = spawned["proc_id"]
        return self.op_finish(request)

    def op_finish(self, request: Request) -> Reply | None:
        """Wait up to wait_ms; if the process ended, also return its summary and forget it."""
        proc = self._proc(request)
        if proc.running and request.get("wait_ms"):
            return None
        if proc.running:
            return {"info": proc.info()}
        cap = int(request.get("cap", 65536))  # type: ignore[call-overload]
        summary = {n: s.summary(cap) for n, s in proc.streams.items()}
        info = proc.info()
        self.op_forget(request)
        return {"info": info, "summary": summary}

    def op_wait(self, request: Request) -> Reply | None:
        proc = self._proc(request)
        if proc.running and request.get("wait_ms"):
            return None
        return proc.info()

    def op_read(self, request: Request) -> Reply | None:
        proc = self._proc(request)
        cursors = request.get("cursors") or {}
        assert isinstance(cursors, dict)
        fresh = any(proc.streams[n].total > int(cursors.get(n, 0)) for n in proc.streams)
        if not fresh and proc.running and request.get("wait_ms"):
            return None
        limit = int(request.get("max_bytes", 65536))  # type: ignore[call-overload]
        return {
            "info": proc.info(),
            "streams": {n: s.read_from(int(cursors.get(n, 0)), limit) for n, s in proc.streams.items()},
        }

    def op_summary(self, request: Request) -> Reply:
        proc = self._proc(request)
        cap = int(request.get("cap", 65536))  # type: ignore[call-overload]
        return {"info": proc.info(), "streams": {n: s.summary(cap) for n, s in proc.streams.items()}}

    def op_tail(self, request: Request) -> Reply:
        """The last few lines of each stream (for progress messages)."""
        proc = self._proc(request)
        lines = int(request.get("lines", 3))  # type: ignore[call-overload]
        out = {}
        for name, stream in proc.streams.items():
            text = bytes(stream.ring[-4096:]).decode("utf-8", "replace")
            out[name] = text.splitlines()[-lines:]
        return {"info": proc.info(), "lines": out}

    def op_write(self, request: Request) -> Reply:
        proc = self._proc(request)
        if proc.stdin_fd is None:
            raise AgentError(error_names.BAD_REQUEST, "the process's stdin is closed")
        data = base64.b64decode(str(request.get("data", "")))
        written = 0
        deadline = _now() + 5.0
        while written < len(data):
            try:
                written += os.write(proc.stdin_fd, data[written:])
            except BlockingIOError:
                if _now() > deadline:
                    break
                select.select([], [proc.stdin_fd], [], 0.05)
            except BrokenPipeError:
                self._close_stdin(proc)
                raise AgentError(error_names.BAD_REQUEST, "the process closed its stdin") from None
        if request.get("eof"):
            self._close_stdin(proc)
        return {"written": written, "stdin_open": proc.stdin_fd is not None}

    def _close_stdin(self, proc: Proc) -> None:
        if proc.stdin_fd is not None:
            try:
                os.close(proc.stdin_fd)
            except OSError:
                pass
        proc.stdin_fd = None

    def op_kill(self, request: Request) -> Reply:
        proc = self._proc(request)
        sig = int(request.get("signal", signal.SIGTERM))  # type: ignore[call-overload]
        grace_ms = int(request.get("grace_ms", 0))  # type: ignore[call-overload]
        reason = str(request.get("reason", "kill"))
        if proc.running:
            proc.killed_by = proc.killed_by or reason
        if proc.keeper_alive or proc.pid in self.adopted:  # the command, or the tree it left running
            self._signal_tree(proc, sig)
            if grace_ms and sig != signal.SIGKILL:
                proc.kill_at = _now() + grace_ms / 1000
        return proc.info()

    def op_forget(self, request: Request) -> Reply:
        proc = self._proc(request)
        if proc.keeper_alive or proc.pid in self.adopted:
            self._signal_tree(proc, signal.SIGKILL)
        self._close_streams(proc)
        self._close_status(proc)
        self.procs.pop(proc.id, None)
        return {"forgotten": proc.id}

    def op_list(self, request: Request) -> Reply:
        return {"procs": [p.info() for p in self.procs.values() if not p.foreground]}

    # ---- the commands' lives ----------------------------------------------------------------

    def _signal_tree(self, proc: Proc, sig: int) -> None:
        """Signal everything the command started: its keeper's whole subtree (not the keeper)."""
        if proc.pid in self.adopted:  # its keeper is gone: the command's own tree is what we know
            if sig == signal.SIGKILL:
                keeper.kill_below({proc.pid}, include_roots=True)
            else:
                keeper.signal_below(proc.pid, sig, include_root=True)
            return
        if sig == signal.SIGKILL:
            keeper.kill_below({proc.keeper_pid})
            try:  # a keeper stopped by the session would never report: let it go on
                os.kill(proc.keeper_pid, signal.SIGCONT)
            except OSError:
                pass
        else:
            keeper.signal_below(proc.keeper_pid, sig)

    def on_pipe(self, proc: Proc, name: str, fd: int) -> None:
        if proc.pipes.get(name) != fd:  # closed earlier in this round of events
            return
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            proc.streams[name].feed(data)
            return
        self._close_pipe(proc, name)

    def _close_pipe(self, proc: Proc, name: str) -> None:
        proc.streams[name].eof = True
        fd = proc.pipes.pop(name, None)
        if fd is None:
            return
        try:
            self.sel.unregister(fd)
        except (KeyError, ValueError):
            pass
        os.close(fd)
        if not proc.pipes:
            for stream in proc.streams.values():
                stream.close_spill()

    def drain(self, proc: Proc) -> None:
        """Read what is already in the pipes of a finished process, then close them."""
        for name, fd in list(proc.pipes.items()):
            for _ in range(4096):
                try:
                    data = os.read(fd, READ_CHUNK)
                except OSError:
                    break
                if not data:
                    break
                proc.streams[name].feed(data)
            self._close_pipe(proc, name)

    def _close_streams(self, proc: Proc) -> None:
        self.drain(proc)
        self._close_stdin(proc)
        for stream in proc.streams.values():
            stream.close_spill()

    def _close_status(self, proc: Proc) -> None:
        if proc.status_fd is not None:
            try:
                self.sel.unregister(proc.status_fd)
            except (KeyError, ValueError):
                pass
            os.close(proc.status_fd)
            proc.status_fd = None

    def on_status(self, proc: Proc, data: bytes | None = None) -> None:
        """Read the keeper's reports (or take `data` already read): the command's exit status."""
        if proc.status_fd is None:
            return
        if data is None:
            try:
                data = os.read(proc.status_fd, 4096)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self._close_status(proc)
                return
        proc.status_buffer = (proc.status_buffer + data)[-65536:]
        while b"\n" in proc.status_buffer:
            line, proc.status_buffer = proc.status_buffer.split(b"\n", 1)
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if isinstance(message, dict) and isinstance(message.get("exit"), int) and proc.running:
                proc.exited(message["exit"])
                if proc.foreground:  # the keeper killed the rest of the tree: the pipes are at EOF
                    self._close_streams(proc)

    def reap(self) -> tuple[list[int], bool]:
        """Collect every exited child: keepers, commands, and others (the desktop's processes,
        orphans that fell to us). Returns those others' pids, and whether orphans may be left."""
        others: list[int] = []
        sweep = False
        for pid, status in keeper.exited_children():
            adopted = self.adopted.pop(pid, None)
            if adopted is not None:  # a command whose keeper was killed: we are its parent now
                self._command_exited(adopted, status)
                sweep = True  # what it left running fell to us too
                continue
            proc = self.by_keeper.pop(pid, None)
            if proc is None and self.spare is not None and pid == self.spare.pid:
                self.spare.close()  # something killed it: the next command forks one itself
                self.spare = None
                continue
            if proc is None:
                others.append(pid)
                sweep = True
                continue
            proc.keeper_alive = False
            self.on_status(proc)  # its last report may still be in the pipe
            self._close_status(proc)
            if os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0:
                if proc.foreground or proc.id not in self.procs:
                    self._close_streams(proc)
                continue
            # The session killed the keeper (kill -9 -1 does): its children fell to us. The command
            # itself carries on as our child; what it had detached can no longer be told apart.
            sweep = True
            if proc.running and proc_table.alive(proc.pid):
                self.adopted[proc.pid] = proc
            elif proc.running:
                proc.killed_by = proc.killed_by or "lost"
                proc.exited(signal.SIGKILL)
                self._close_streams(proc)
        return others, sweep

    def _command_exited(self, proc: Proc, status: int) -> None:
        if proc.running:
            proc.exited(status)
        if proc.foreground or proc.id not in self.procs:
            self._close_streams(proc)

    def keeper_pids(self) -> set[int]:
        return set(self.by_keeper) | ({self.spare.pid} if self.spare is not None else set())

    def take_spare(self) -> keeper.Spare | None:
        spare, self.spare = self.spare, None
        return spare

    def ensure_spare(self) -> None:
        """Fork the next command's keeper now, while nothing waits on us."""
        if self.spare is None:
            try:
                self.spare = keeper.Spare()
            except OSError:  # the process limit: commands then fork their keeper themselves
                self.spare = None

    def sweep_orphans(self, also_known: set[int]) -> None:
        """Kill every child of ours that is not a keeper, an adopted command or in `also_known` (the desktop's)."""
        known = self.keeper_pids() | set(self.adopted) | also_known
        strays = set(proc_table.children_of_self()) - known
        if strays:
            keeper.kill_below(strays, include_roots=True)

    def kill_overdue(self, now: float) -> None:
        """SIGKILL the trees of commands whose grace after a kill (`grace_ms`) is over."""
        for proc in self.procs.values():
            if (proc.keeper_alive or proc.pid in self.adopted) and proc.kill_at is not None and now >= proc.kill_at:
                proc.kill_at = None
                self._signal_tree(proc, signal.SIGKILL)

    def deadlines(self) -> list[float]:
        """When kill_overdue has something to do."""
        return [p.kill_at for p in self.procs.values() if p.kill_at is not None]

    def kill_all(self) -> None:
        """The session is ending: every command's tree goes."""
        for proc in self.procs.values():
            if proc.keeper_alive:
                self._signal_tree(proc, signal.SIGKILL)


#: The process operations, by the name a request gives (the agent's dispatch table binds them).
OPERATIONS: dict[str, Callable[[Processes, Request], Reply | None]] = {
    "spawn": Processes.op_spawn,
    "run": Processes.op_run,
    "finish": Processes.op_finish,
    "wait": Processes.op_wait,
    "read": Processes.op_read,
    "summary": Processes.op_summary,
    "tail": Processes.op_tail,
    "write": Processes.op_write,
    "kill": Processes.op_kill,
    "forget": Processes.op_forget,
    "list": Processes.op_list,
}
