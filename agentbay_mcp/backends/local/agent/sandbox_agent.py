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
import subprocess
import sys
from typing import TYPE_CHECKING

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's dir off sys.path
if TYPE_CHECKING:  # the type checker sees the package; the sandbox runs these files as top-level modules
    from agentbay_mcp.backends.local.agent import desktop_apps, file_ops
    from agentbay_mcp.backends.local.agent.desktop_ops import Desktop, DesktopError
    from agentbay_mcp.backends.local.agent.proc_state import READ_CHUNK, Proc, Stream, _now
else:
    import desktop_apps
    import file_ops
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
        self.by_pid: dict[int, Proc] = {}
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
                self.desktop = Desktop(self.config, self.op_spawn, self.kill_later)
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
        try:
            popen = subprocess.Popen(
                ["/bin/sh", "-c", command],
                cwd=cwd,
                env=full_env,
                stdin=subprocess.PIPE if request.get("stdin") == "pipe" else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError as exc:
            raise AgentError("spawn_failed", f"working directory {cwd!r} does not exist") from exc
        except NotADirectoryError as exc:
            raise AgentError("spawn_failed", f"working directory {cwd!r} is not a directory") from exc
        except PermissionError as exc:
            raise AgentError("spawn_failed", f"working directory {cwd!r} is not accessible") from exc
        except OSError as exc:
            raise AgentError("spawn_failed", f"could not start the command: {exc.strerror or exc}") from exc
        try:  # if the session runs out of memory, the kernel kills commands, never the agent
            with open(f"/proc/{popen.pid}/oom_score_adj", "w") as handle:
                handle.write("1000")
        except OSError:
            pass
        cpu = int(self.config.get("cpu_seconds") or 0)  # type: ignore[call-overload]
        if cpu:
            try:
                resource.prlimit(popen.pid, resource.RLIMIT_CPU, (cpu, cpu + 5))
            except OSError:
                pass  # it already exited
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
        proc = Proc(proc_id, popen, command, streams, foreground=bool(request.get("foreground")))
        self.procs[proc_id] = proc
        self.by_pid[proc.pid] = proc
        for name, pipe in (("stdout", popen.stdout), ("stderr", popen.stderr)):
            assert pipe is not None
            os.set_blocking(pipe.fileno(), False)
            self.sel.register(pipe, selectors.EVENT_READ, ("pipe", (proc, name)))
        if popen.stdin is not None:
            os.set_blocking(popen.stdin.fileno(), False)
        self.reap()  # it may already be gone
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
        if proc.popen.stdin is not None:
            try:
                proc.popen.stdin.close()
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
            self._signal_group(proc, sig)
            if grace_ms and sig != signal.SIGKILL:
                proc.kill_at = _now() + grace_ms / 1000
        return proc.info()

    def op_forget(self, request: dict[str, object]) -> dict[str, object]:
        proc = self._proc(request)
        if proc.running:
            self._signal_group(proc, signal.SIGKILL)
        self._close_streams(proc)
        self.procs.pop(proc.id, None)
        return {"forgotten": proc.id}

    def op_list(self, request: dict[str, object]) -> dict[str, object]:
        return {"procs": [p.info() for p in self.procs.values() if not p.foreground]}

    # ---- processes --------------------------------------------------------------------------

    def _signal_group(self, proc: Proc, sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            pass

    def on_pipe(self, proc: Proc, name: str, pipe: object) -> None:
        stream = proc.streams[name]
        try:
            data = os.read(pipe.fileno(), READ_CHUNK)  # type: ignore[attr-defined]
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            stream.feed(data)
            return
        stream.eof = True
        self.sel.unregister(pipe)  # type: ignore[arg-type]
        pipe.close()  # type: ignore[attr-defined]

    def drain(self, proc: Proc) -> None:
        """Read what is already in the pipes of a finished process, then close them."""
        for name, pipe in (("stdout", proc.popen.stdout), ("stderr", proc.popen.stderr)):
            if pipe is None or proc.streams[name].eof:
                continue
            for _ in range(4096):
                try:
                    data = os.read(pipe.fileno(), READ_CHUNK)
                except (BlockingIOError, OSError):
                    break
                if not data:
                    break
                proc.streams[name].feed(data)
            proc.streams[name].eof = True
            try:
                self.sel.unregister(pipe)
            except (KeyError, ValueError):
                pass
            pipe.close()

    def _close_streams(self, proc: Proc) -> None:
        self.drain(proc)
        self._close_stdin(proc)
        for stream in proc.streams.values():
            stream.close_spill()

    def reap(self) -> None:
        """Collect every exited child (ours, and orphans that fell to us as pid 1)."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.by_pid.pop(pid, None)
            if proc is None:
                if self.desktop is not None:
                    self.desktop.child_exited(pid)
                continue
            proc.popen.returncode = 0  # keep Popen from waiting on a pid we already reaped
            proc.ended = _now()
            if os.WIFSIGNALED(status):
                proc.signal = os.WTERMSIG(status)
                proc.exit_code = 128 + proc.signal
            else:
                proc.exit_code = os.WEXITSTATUS(status)
            # Whatever the leader left running in its group goes with it.
            self._signal_group(proc, signal.SIGKILL)
            self._close_streams(proc)

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
            if proc.running and proc.kill_at is not None and now >= proc.kill_at:
                proc.kill_at = None
                self._signal_group(proc, signal.SIGKILL)

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
                    self.on_pipe(proc, name, key.fileobj)
                elif kind == "x" and self.desktop is not None:
                    self.desktop.on_readable()
                    self.watch_x()
            self.reap()
            self.timers()
            if self.parked:
                self.check_parked()
        self.shutdown()

    def shutdown(self) -> None:
        if self.desktop is not None:
            self.desktop.stop()
        for proc in self.procs.values():
            if proc.running:
                self._signal_group(proc, signal.SIGKILL)
        if os.getpid() == 1:  # only inside a sandbox: there this reaches everything else in it
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass


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
    fd = int(sys.argv[1])
    config = json.loads(sys.argv[2])
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
