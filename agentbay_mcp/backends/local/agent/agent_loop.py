"""The agent's event loop: control requests, process pipes, child exits, X events, timers.

Standard library only (see sandbox_agent.py). Every operation, whatever it touches (files,
processes, the desktop), is one entry of one dispatch table (`Agent.ops`): the request's `op` names
the entry, and one function (`Agent.answer`) runs it and turns whatever it raises into an error
reply with a name from error_names.py. Many requests may be in flight: those that wait (for a
process, `wait_ms`) are parked and answered when ready, so replies can come out of order.
"""

from __future__ import annotations

import functools
import json
import os
import selectors
import signal
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # the type checker sees the package; the sandbox runs these files as top-level modules
    from agentbay_mcp.backends.local.agent import (
        desktop_apps,
        desktop_ops,
        error_names,
        file_ops,
        framing,
        process_ops,
    )
    from agentbay_mcp.backends.local.agent.desktop_ops import Desktop
    from agentbay_mcp.backends.local.agent.error_names import AgentError
    from agentbay_mcp.backends.local.agent.proc_state import _now
else:
    import desktop_apps
    import desktop_ops
    import error_names
    import file_ops
    import framing
    import process_ops
    from desktop_ops import Desktop
    from error_names import AgentError
    from proc_state import _now

Request = dict[str, object]
Reply = dict[str, object]


class Family(NamedTuple):
    """What a group of operations reports for bad input and for an unexpected failure: the names
    each group has always sent (the wire format is unchanged), however it got there."""

    bad_input: str
    failure: str


FILES = Family(error_names.INVALID, error_names.IO_ERROR)
PROCESSES = Family(error_names.BAD_REQUEST, error_names.IO_ERROR)
DESKTOP = Family(error_names.INVALID, error_names.DESKTOP_ERROR)


class Op(NamedTuple):
    """One entry of the dispatch table: the handler (None from it: park the request), its family,
    and what to do after it ran, failed or not."""

    handler: Callable[[Request], Reply | None]
    family: Family
    after: Callable[[], None] | None = None


class Agent:
    """The agent's event loop: control requests, process pipes, child exits, timers."""

    def __init__(self, sock: socket.socket, config: dict[str, object]) -> None:
        self.sock = sock
        self.config = config
        self.sel = selectors.DefaultSelector()
        self.inbox = framing.Inbox()
        self.processes = process_ops.Processes(config, self.sel)
        self.parked: list[tuple[float, int, Request]] = []  # (deadline, request id, request)
        self.running = True
        self.desktop: Desktop | None = None  # started by the first desktop operation
        self.x_fd: int | None = None
        self.x_display: object = None
        self.kills: list[tuple[float, list[tuple[int, int]]]] = []  # (when, [(pid, start time)]): stop_app
        self.ops: dict[str, Op] = {"ping": Op(self.op_ping, PROCESSES), "cancel": Op(self.op_cancel, PROCESSES)}
        for name, method in process_ops.OPERATIONS.items():
            self.ops[name] = Op(functools.partial(method, self.processes), PROCESSES)
        for name, function in file_ops.OPERATIONS.items():
            self.ops[name] = Op(function, FILES)
        for name, desktop_method in desktop_ops.OPERATIONS.items():
            self.ops[name] = Op(functools.partial(self.on_desktop, desktop_method), DESKTOP, self.after_desktop)
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
        if not framing.send(self.sock, message):
            self.running = False

    def reply(self, request_id: int, result: Reply) -> None:
        self.send(framing.result(request_id, result))

    def fail(self, request_id: int, kind: str, message: str) -> None:
        self.send(framing.error(request_id, kind, message))

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
        try:
            frames = self.inbox.frames(data)
        except framing.FrameTooLargeError:
            self.running = False
            return
        for frame in frames:
            try:
                self.dispatch(json.loads(frame))
            except (Exception, MemoryError):  # noqa: S112 - pid 1: one bad request must never end the sandbox
                continue

    # ---- the dispatch table -----------------------------------------------------------------

    def dispatch(self, request: Request) -> None:
        request_id = int(request.get("id", 0))  # type: ignore[call-overload]
        if self.answer(request_id, str(request.get("op", "")), request):
            return
        # Parked: answered by check_parked once the process is ready or the wait is over.
        deadline = _now() + min(float(request.get("wait_ms", 0)) / 1000, 3600.0)  # type: ignore[arg-type]
        self.parked.append((deadline, request_id, request))
        self.check_parked()

    def answer(self, request_id: int, op: str, request: Request) -> bool:
        """Run `op` and send its reply or error; False if it has no answer yet (it waits)."""
        entry = self.ops.get(op)
        if entry is None:
            self.fail(request_id, error_names.BAD_REQUEST, f"unknown operation {op!r}")
            return True
        answered = True
        try:
            result = entry.handler(request)
        except AgentError as exc:
            self.fail(request_id, exc.kind, str(exc))
        except (KeyError, TypeError, ValueError) as exc:
            self.fail(request_id, entry.family.bad_input, f"{op}: {exc}")
        except OSError as exc:
            self.fail(request_id, error_names.IO_ERROR, f"{op}: {exc.strerror or exc}")
        except (Exception, MemoryError) as exc:  # RecursionError and friends must never kill the sandbox
            self.fail(request_id, entry.family.failure, f"{op} failed: {exc.__class__.__name__}")
        else:
            answered = result is not None
            if result is not None:
                self.reply(request_id, result)
        if entry.after is not None:
            entry.after()
        return answered

    def op_ping(self, request: Request) -> Reply:
        return {"pid": os.getpid(), "procs": len(self.processes.procs)}

    def op_cancel(self, request: Request) -> Reply:
        """The host gave up on a parked request: drop it, and kill the command of a `run`."""
        target = request.get("target")
        for entry in list(self.parked):
            if entry[1] == target:
                self.parked.remove(entry)
                parked = entry[2]
                procs = self.processes.procs
                if parked.get("op") == "finish" and str(parked.get("proc_id")) in procs:
                    procs[str(parked["proc_id"])].killed_by = "cancelled"
                    self.processes.op_forget(parked)
                return {"cancelled": True}
        return {"cancelled": False}

    def check_parked(self) -> None:
        still: list[tuple[float, int, Request]] = []
        now = _now()
        for deadline, request_id, request in self.parked:
            current = dict(request, wait_ms=0) if now >= deadline else request
            if not self.answer(request_id, str(request.get("op", "")), current):
                still.append((deadline, request_id, request))
        self.parked = still

    # ---- the desktop ------------------------------------------------------------------------

    def on_desktop(self, method: Callable[[Desktop, Request], Reply], request: Request) -> Reply:
        if self.desktop is None:
            processes = self.processes
            self.desktop = Desktop(self.config, processes.op_spawn, self.kill_later, processes.keeper_pids)
        return method(self.desktop, request)

    def after_desktop(self) -> None:
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

    def kill_later(self, marked: list[tuple[int, int]], seconds: float) -> None:
        """SIGKILL these processes after `seconds` if they are still the same, live processes."""
        if marked:
            self.kills.append((_now() + seconds, marked))

    # ---- the loop ---------------------------------------------------------------------------

    def reap(self) -> None:
        others, sweep = self.processes.reap()
        if self.desktop is not None:
            for pid in others:
                self.desktop.child_exited(pid)
        if sweep:
            self.processes.sweep_orphans(self.desktop.stack.pids if self.desktop is not None else set())

    def timers(self) -> None:
        now = _now()
        due = [marked for when, marked in self.kills if now >= when]
        self.kills = [entry for entry in self.kills if now < entry[0]]
        for marked in due:
            desktop_apps.kill_survivors(marked)
        self.processes.kill_overdue(now)

    def next_timeout(self) -> float:
        deadlines = [d for d, _, _ in self.parked]
        deadlines += self.processes.deadlines()
        deadlines += [when for when, _ in self.kills]
        if not deadlines:
            return 1.0
        return max(0.0, min(min(deadlines) - _now(), 1.0))

    def serve(self) -> None:
        self.send(framing.result(0, {"ready": True, "pid": os.getpid()}))
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
            if self.running:
                self.processes.ensure_spare()
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
            self.processes.on_pipe(proc, name, key.fd)
        elif kind == "status":
            if data.status_fd == key.fd:
                self.processes.on_status(data)
        elif kind == "x" and self.desktop is not None:
            self.desktop.on_readable()
            self.watch_x()

    def shutdown(self) -> None:
        if self.desktop is not None:
            self.desktop.stop()
        self.processes.kill_all()
        if os.getpid() == 1:  # only inside a sandbox: there this reaches everything else in it
            try:
                os.kill(-1, signal.SIGKILL)
            except OSError:
                pass
