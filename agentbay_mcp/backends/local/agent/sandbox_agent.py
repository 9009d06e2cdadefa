"""The in-sandbox agent: one per session, running inside the session's bubblewrap sandbox.

Standard library only: it runs under the sandbox's own Python (usually /usr/bin/python3) with this
directory bound read-only. It is pid 1 of the sandbox's pid namespace (bwrap --as-pid-1), so no
process in the sandbox can kill it (the kernel drops signals to a namespace's init that it does not
handle) and, when it exits, the kernel kills everything left in the sandbox.

Wire protocol (over the socket passed as fd argv[1]): frames of a 4-byte big-endian length and a
UTF-8 JSON object. Requests `{"id": n, "op": name, ...}`; replies `{"id": n, "ok": true, "result":
{...}}` or `{"id": n, "ok": false, "error": {"kind": k, "message": m}}`. Many requests may be in
flight: slow ones (waits) are parked and answered when ready, so replies can come out of order.
The host treats everything it receives as untrusted (a command in the sandbox could replace us).

Processes are forked with their stdout/stderr on pipes. For each stream the agent keeps the first
HEAD bytes, a ring of the last RING bytes (absolute offsets serve cursors), a count, and, once the
stream outgrows `spill_after` bytes, a full copy in a file under /tmp/.agentbay (up to a size
limit). Memory per process is therefore bounded whatever a command prints.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import select
import selectors
import signal
import socket
import struct
import sys
from typing import TYPE_CHECKING

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's dir off sys.path
if TYPE_CHECKING:  # the type checker sees the package; the sandbox runs these files as top-level modules
    from agentbay_mcp.backends.local.agent import desktop_apps, file_ops, keeper
    from agentbay_mcp.backends.local.agent.desktop_ops import Desktop, DesktopError
    from agentbay_mcp.backends.local.agent.proc_state import READ_CHUNK, Proc, Stream, _now
else:
    import desktop_apps
    import file_ops
    import keeper
    from desktop_ops import Desktop, DesktopError
    from proc_state import READ_CHUNK, Proc, Stream, _now

HEADER = struct.Struct(">I")
MAX_FRAME = 16 * 1024 * 1024
MAX_BACKGROUND = 32
OUTPUT_DIR = "/tmp/.agentbay"  # replaced from the config at start-up (unsandboxed mode uses the session's tmp)


class AgentError(Exception):
    """An error reply: `kind` is one of bad_request, not_found, spawn_failed, io_error."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Agent:
    """The agent's event loop: control requests, process pipes, child exits, timers."""

    def __init__(self, sock: socket.socket, config: dict[str, object]) -> None:
        self.sock = sock
        self.config = config
        self.sel = selectors.DefaultSelector()
        self.inbox = bytearray()
        self.procs: dict[str, Proc] = {}
        self.by_keeper: dict[int, Proc] = {}  # keeper pid -> its command, until the keeper is reaped
        self.adopted: dict[int, Proc] = {}  # command pid -> command, for commands whose keeper was killed
        self.spare: keeper.Spare | None = None  # the next command's keeper, forked while idle
        self.parked: list[tuple[float, int, dict[str, object]]] = []  # (deadline, request id, request)
        self.counter = 0
        # Ids and output files of a restarted sandbox must not collide with its predecessor's.
        self.generation = os.urandom(3).hex()
        self.running = True
        self.desktop: Desktop | None = None  # started by the first desktop operation
        self.x_fd: int | None = None
        self.x_display: object = None
        self.kills: list[tuple[float, list[tuple[int, int]]]] = []  # (when, [(pid, start time)]): stop_app
        self.sig_r, self.sig_w = socket.socketpair()
        self.sig_r.setblocking(False)
        self.sig_w.setblocking(False)
        signal.set_wakeup_fd(self.sig_w.fileno())
        signal.signal(signal.SIGCHLD, lambda *_: None)
        # Handlers, not SIG_IGN: an ignored signal stays ignored across exec, so every command would
        # be immune to SIGTERM. Handlers are reset to the default by exec.
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, lambda *_: None)
        self.sock.setblocking(False)
        self.sel.register(self.sock, selectors.EVENT_READ, ("control", None))
        self.sel.register(self.sig_r, selectors.EVENT_READ, ("signal", None))

    # ---- wire -------------------------------------------------------------------------------

    def send(self, message: dict[str, object]) -> None:
        payload = json.dumps(message, separators=(",", ":")).encode()
        data = memoryview(HEADER.pack(len(payload)) + payload)
        while data:
            try:
                sent = self.sock.send(data)
                data = data[sent:]
            except BlockingIOError:
                select.select([], [self.sock], [], 5.0)
            except OSError:
                self.running = False
                return

    def reply(self, request_id: int, result: dict[str, object]) -> None:
        self.send({"id": request_id, "ok": True, "result": result})

    def fail(self, request_id: int, kind: str, message: str) -> None:
        self.send({"id": request_id, "ok": False, "error": {"kind": kind, "message": message}})

    def on_control(self) -> None:
        try:
            data = self.sock.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:  # the host is gone: nothing may outlive it
            self.running = False
            return
        self.inbox += data
        while len(self.inbox) >= HEADER.size:
            (length,) = HEADER.unpack_from(self.inbox)
            if length > MAX_FRAME:
                self.running = False
                return
            if len(self.inbox) < HEADER.size + length:
                break
            frame = bytes(self.inbox[HEADER.size : HEADER.size + length])
            del self.inbox[: HEADER.size + length]
            self.dispatch(json.loads(frame))

    def dispatch(self, request: dict[str, object]) -> None:
        request_id = int(request.get("id", 0))  # type: ignore[call-overload]
        op = str(request.get("op", ""))
        if op in file_ops.OPERATIONS:
            try:
                self.reply(request_id, file_ops.OPERATIONS[op](request))
            except file_ops.FileOpError as exc:
                self.fail(request_id, exc.kind, str(exc))
            except (KeyError, TypeError, ValueError) as exc:
                self.fail(request_id, "invalid", f"{op}: {exc}")
            except OSError as exc:
                self.fail(request_id, "io_error", f"{op}: {exc.strerror or exc}")
            except (Exception, MemoryError) as exc:  # RecursionError and friends must never kill the sandbox
                self.fail(request_id, "io_error", f"{op} failed: {exc.__class__.__name__}")
            return
        if op.startswith("desktop_"):
            self.desktop_op(request_id, op, request)
            return
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            self.fail(request_id, "bad_request", f"unknown operation {op!r}")
            return
        try:
            result = handler(request)
        except AgentError as exc:
            self.fail(request_id, exc.kind, str(exc))
            return
        except (KeyError, TypeError, ValueError) as exc:
            self.fail(request_id, "bad_request", f"{op}: {exc}")
            return
        except OSError as exc:
            self.fail(request_id, "io_error", f"{op}: {exc.strerror or exc}")
            return
        if result is None:  # parked: answered by check_parked
            deadline = _now() + min(float(request.get("wait_ms", 0)) / 1000, 3600.0)  # type: ignore[arg-type]
            self.parked.append((deadline, request_id, request))
            self.check_parked()
        else:
            self.reply(request_id, result)

    def desktop_op(self, request_id: int, op: str, request: dict[str, object]) -> None:
        try:
            if self.desktop is None:
                self.desktop = Desktop(self.config, self.op_spawn, self.kill_later, self.keeper_pids)
            self.reply(request_id, self.desktop.handle(op, request))
        except (DesktopError, AgentError) as exc:
            self.fail(request_id, exc.kind, str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            self.fail(request_id, "invalid", f"{op}: {exc}")
        except OSError as exc:
            self.fail(request_id, "io_error", f"{op}: {exc.strerror or exc}")
        except (Exception, MemoryError) as exc:  # as for file ops: a desktop bug must never end the sandbox
            self.fail(request_id, "desktop_error", f"{op} failed: {exc.__class__.__name__}")
        if self.desktop is not None:
            # Events python-xlib read while waiting for replies sit in its queue, not on the socket.
            self.desktop.on_readable()
        self.watch_x()

    def watch_x(self) -> None:
        """Keep the selector on the desktop's current X connection (focus mode reacts to its events)."""
        display = self.desktop.display if self.desktop is not None else None
        if display is self.x_display:
            return
        if self.x_fd is not None:
            try:  # the old connection may already be closed: the fd number can be reused
                self.sel.unregister(self.x_fd)
            except (KeyError, ValueError):
                pass
        self.x_display, self.x_fd = display, None
        if display is not None:
            self.x_fd = display.fileno()
            self.sel.register(self.x_fd, selectors.EVENT_READ, ("x", None))

    # ---- operations -------------------------------------------------------------------------

    def op_ping(self, request: dict[str, object]) -> dict[str, object]:
        return {"pid": os.getpid(), "procs": len(self.procs)}

    def _proc(self, request: dict[str, object]) -> Proc:
        proc = self.procs.get(str(request.get("proc_id")))
        if proc is None:
            raise AgentError("not_found", f"no process {request.get('proc_id')!r}")
        return proc

    def op_spawn(self, request: dict[str, object]) -> dict[str, object]:
        command = request["command"]
        if not isinstance(command, str):
            raise AgentError("bad_request", "command must be a string")
        env = request.get("env") or {}
        cwd = request.get("cwd") or self.config["home"]
        if not isinstance(env, dict) or not isinstance(cwd, str):
            raise AgentError("bad_request", "env must be an object, cwd a string")
        if not request.get("foreground"):
            background = [p for p in self.procs.values() if not p.foreground]
            if len(background) >= MAX_BACKGROUND:
                finished = [p for p in background if not p.running]
                if not finished:
                    raise AgentError(
                        "bad_request", f"{MAX_BACKGROUND} background processes are running; kill some first"
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
        except (keeper.SpawnError, OSError) as exc:
            for fd in (out_r, out_w, err_r, err_w, in_r, in_w):
                if fd is not None:
                    os.close(fd)
            if isinstance(exc, keeper.SpawnError):
                raise AgentError(exc.kind, str(exc)) from None
            raise AgentError("spawn_failed", f"could not start the command: {exc.strerror or exc}") from None
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
                spill_path=f"{OUTPUT_DIR}/{proc_id}.{name}" if keep else None,
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

    def op_run(self, request: dict[str, object]) -> dict[str, object] | None:
        """spawn + finish in one round trip: most commands end before the first wait runs out."""
        spawned = self.op_spawn(request)
        request["op"] = "finish"  # a parked request is re-checked through op_finish, not spawned again
        request["proc_id"] = spawned["proc_id"]
        return self.op_finish(request)

    def op_finish(self, request: dict[str, object]) -> dict[str, object] | None:
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

    def op_cancel(self, request: dict[str, object]) -> dict[str, object]:
        """The host gave up on a parked request: drop it, and kill the command of a `run`."""
        target = request.get("target")
        for entry in list(self.parked):
            if entry[1] == target:
                self.parked.remove(entry)
                parked = entry[2]
                if parked.get("op") == "finish" and str(parked.get("proc_id")) in self.procs:
                    self.procs[str(parked["proc_id"])].killed_by = "cancelled"
                    self.op_forget(parked)
                return {"cancelled": True}
        return {"cancelled": False}

    def op_wait(self, request: dict[str, object]) -> dict[str, object] | None:
        proc = self._proc(request)
        if proc.running and request.get("wait_ms"):
            return None
        return proc.info()

    def op_read(self, request: dict[str, object]) -> dict[str, object] | None:
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

    def op_summary(self, request: dict[str, object]) -> dict[str, object]:
        proc = self._proc(request)
        cap = int(request.get("cap", 65536))  # type: ignore[call-overload]
        return {"info": proc.info(), "streams": {n: s.summary(cap) for n, s in proc.streams.items()}}

    def op_tail(self, request: dict[str, object]) -> dict[str, object]:
        """The last few lines of each stream (for progress messages)."""
        proc = self._proc(request)
        lines = int(request.get("lines", 3))  # type: ignore[call-overload]
        out = {}
        for name, stream in proc.streams.items():
            text = bytes(stream.ring[-4096:]).decode("utf-8", "replace")
            out[name] = text.splitlines()[-lines:]
        return {"info": proc.info(), "lines": out}

    def op_write(self, request: dict[str, object]) -> dict[str, object]:
        proc = self._proc(request)
        if proc.stdin_fd is None:
            raise AgentError("bad_request", "the process's stdin is closed")
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
                raise AgentError("bad_request", "the process closed its stdin") from None
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

    def op_kill(self, request: dict[str, object]) -> dict[str, object]:
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

    def op_forget(self, request: dict[str, object]) -> dict[str, object]:
        proc = self._proc(request)
        if proc.keeper_alive or proc.pid in self.adopted:
            self._signal_tree(proc, signal.SIGKILL)
        self._close_streams(proc)
        self._close_status(proc)
        self.procs.pop(proc.id, None)
        return {"forgotten": proc.id}

    def op_list(self, request: dict[str, object]) -> dict[str, object]:
        return {"procs": [p.info() for p in self.procs.values() if not p.foreground]}

    # ---- processes --------------------------------------------------------------------------

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

    def reap(self) -> None:
        """Collect every exited child: keepers, the desktop's processes, and orphans that fell to us."""
        sweep = False
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
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
                if self.desktop is not None:
                    self.desktop.child_exited(pid)
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
            if proc.running and pid_alive(proc.pid):
                self.adopted[proc.pid] = proc
            elif proc.running:
                proc.killed_by = proc.killed_by or "lost"
                proc.exited(signal.SIGKILL)
                self._close_streams(proc)
        if sweep:
            self.sweep_orphans()

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
        if self.spare is None and self.running:
            try:
                self.spare = keeper.Spare()
            except OSError:  # the process limit: commands then fork their keeper themselves
                self.spare = None

    def sweep_orphans(self) -> None:
        """Kill every child of ours that is not a keeper, an adopted command or the desktop's."""
        known = set(self.by_keeper) | set(self.adopted) | ({self.spare.pid} if self.spare is not None else set())
        if self.desktop is not None:
            known |= self.desktop.stack.pids
        strays = set(keeper.children_of_self()) - known
        if strays:
            keeper.kill_below(strays, include_roots=True)

    def kill_later(self, marked: list[tuple[int, int]], seconds: float) -> None:
        """SIGKILL these processes after `seconds` if they are still the same, live processes."""
        if marked:
            self.kills.append((_now() + seconds, marked))

    def timers(self) -> None:
        now = _now()
        due = [marked for when, marked in self.kills if now >= when]
        self.kills = [entry for entry in self.kills if now < entry[0]]
        for marked in due:
            desktop_apps.kill_survivors(marked)
        for proc in self.procs.values():
            if (proc.keeper_alive or proc.pid in self.adopted) and proc.kill_at is not None and now >= proc.kill_at:
                proc.kill_at = None
                self._signal_tree(proc, signal.SIGKILL)

    def check_parked(self) -> None:
        still: list[tuple[float, int, dict[str, object]]] = []
        now = _now()
        for deadline, request_id, request in self.parked:
            proc = self.procs.get(str(request.get("proc_id")))
            if proc is None:
                self.fail(request_id, "not_found", f"no process {request.get('proc_id')!r}")
                continue
            expired = now >= deadline
            request_now = dict(request, wait_ms=0) if expired else request
            try:
                result = getattr(self, f"op_{request_now['op']}")(request_now)
            except AgentError as exc:
                self.fail(request_id, exc.kind, str(exc))
                continue
            if result is None:
                still.append((deadline, request_id, request))
            else:
                self.reply(request_id, result)
        self.parked = still

    def next_timeout(self) -> float:
        deadlines = [d for d, _, _ in self.parked]
        deadlines += [p.kill_at for p in self.procs.values() if p.kill_at is not None]
        deadlines += [when for when, _ in self.kills]
        if not deadlines:
            return 1.0
        return max(0.0, min(min(deadlines) - _now(), 1.0))

    def serve(self) -> None:
        self.send({"id": 0, "ok": True, "result": {"ready": True, "pid": os.getpid()}})
        while self.running:
            for key, _ in self.sel.select(self.next_timeout()):
                try:
                    self.on_event(key)
                except (Exception, MemoryError):  # noqa: S112 - pid 1: one bad event must never end the sandbox
                    continue
            self.reap()
            self.timers()
            if self.parked:
                self.check_parked()
            self.ensure_spare()
        self.shutdown()

    def on_event(self, key: selectors.SelectorKey) -> None:
        """One ready file of this round. Handlers check that it is still theirs: an earlier event of
        the same round may have closed it (a command's end closes its pipes)."""
        kind, data = key.data
        if kind == "control":
            self.on_control()
        elif kind == "signal":
            try:
                while self.sig_r.recv(512):
                    pass
            except BlockingIOError:
                pass
        elif kind == "pipe":
            proc, name = data
            self.on_pipe(proc, name, key.fd)
        elif kind == "status":
            if data.status_fd == key.fd:
                self.on_status(data)
        elif kind == "x" and self.desktop is not None:
            self.desktop.on_readable()
            self.watch_x()

    def shutdown(self) -> None:
        if self.desktop is not None:
            self.desktop.stop()
        for proc in self.procs.values():
            if proc.keeper_alive:
                self._signal_tree(proc, signal.SIGKILL)
        if os.getpid() == 1:  # only inside a sandbox: there this reaches everything else in it
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass


def pid_alive(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            raw = handle.read()
    except OSError:
        return False
    return raw[raw.rfind(b")") + 2 :][:1] != b"Z"


def apply_limits(config: dict[str, object]) -> None:
    """Lower this process's limits; every process in the sandbox inherits them and cannot raise them."""
    limits = {
        "nofile": resource.RLIMIT_NOFILE,
        "nproc": resource.RLIMIT_NPROC,
        "memory": resource.RLIMIT_AS,
        "file_size": resource.RLIMIT_FSIZE,
    }
    for key, which in limits.items():
        value = config.get(key)
        if value:
            value = int(value)  # type: ignore[call-overload]
            try:
                resource.setrlimit(which, (value, value))
            except (ValueError, OSError) as exc:
                sys.stderr.write(f"agent: cannot set {key} limit: {exc}\n")
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def main() -> int:
    # Handed over in the environment, not on the command line: /proc/1/cmdline is readable by every
    # process of the session, /proc/1/environ only by us (we are not dumpable).
    fd = int(os.environ.pop("AGENTBAY_AGENT_FD"))
    config = json.loads(os.environ.pop("AGENTBAY_AGENT_CONFIG"))
    try:
        keeper.harden()
    except OSError as exc:
        sys.stderr.write(f"agent: cannot make itself non-dumpable: {exc}\n")
        return 1
    global OUTPUT_DIR  # noqa: PLW0603 - set once, before anything runs
    OUTPUT_DIR = str(config.get("output_dir") or OUTPUT_DIR)
    apply_limits(config)
    sock = socket.socket(fileno=fd)
    agent = Agent(sock, config)
    # Our stderr is a log file on the host (for start-up failures); once running, let nothing in the
    # sandbox reach it (through /proc/1/fd/2) or learn its host path.
    devnull = os.open("/dev/null", os.O_WRONLY)
    os.dup2(devnull, 2)
    os.close(devnull)
    try:
        agent.serve()
    except Exception as exc:
        sys.stderr.write(f"agent: crashed: {exc!r}\n")
        agent.shutdown()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
