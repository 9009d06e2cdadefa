"""The memory backend's processes: a tiny scripted shell instead of `sh -c`.

A command is simple commands joined by `;`, `&&` or `||`, with `$NAME` expansion and `>&2`. The
commands it knows are the table `COMMANDS` (echo, printf, pwd, cd, true, false, exit, sleep, seq,
cat); anything else ends with status 127 and a stderr line saying what the table offers, so a test
that needs more fails clearly. Each process is a task in the backend's task group: `sleep` really
waits (so timeouts, kills and waits behave as in a sandbox), and `cat` reads stdin until EOF.
"""

from __future__ import annotations

import posixpath
import shlex
import signal
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
from anyio.abc import TaskGroup

from agentbay_mcp.backends import records
from agentbay_mcp.errors import BackendUnavailableError, InvalidArgumentError, ProcessNotFoundError

HOME = "/home/user"
POLL_SECONDS = 0.005
NOT_FOUND = 127


@dataclass
class Proc:
    """One process: its streams, its state, and the scope that kills it."""

    proc_id: str
    pid: int
    command: str
    foreground: bool
    stdin_open: bool
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    out: bytearray = field(default_factory=bytearray)
    err: bytearray = field(default_factory=bytearray)
    stdin: bytearray = field(default_factory=bytearray)
    exit_code: int | None = None
    signal: int | None = None
    killed_by: str = ""
    done: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)

    def info(self) -> records.ProcessInfo:
        end = self.ended if self.ended is not None else time.monotonic()
        return records.ProcessInfo(
            proc_id=self.proc_id,
            pid=self.pid,
            command=self.command,
            running=not self.done.is_set(),
            exit_code=self.exit_code,
            signal=self.signal,
            killed_by=self.killed_by,
            elapsed_ms=int((end - self.started) * 1000),
            stdout_bytes=len(self.out),
            stderr_bytes=len(self.err),
            stdin_open=self.stdin_open,
        )

    def end(self, exit_code: int, signum: int | None = None, reason: str = "") -> None:
        if not self.done.is_set():
            self.exit_code, self.signal, self.killed_by = exit_code, signum, reason[:40]
            self.ended = time.monotonic()
            self.stdin_open = False
            self.done.set()


@dataclass
class Shell:
    """One running script's state: where it is, its environment, and its process."""

    proc: Proc
    cwd: str
    env: dict[str, str]
    read_file: Callable[[str], bytes]


class ExitScript(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


async def _echo(sh: Shell, args: list[str]) -> tuple[bytes, int]:
    newline = not (args and args[0] == "-n")
    return (" ".join(args[0 if newline else 1 :]) + ("\n" if newline else "")).encode(), 0


async def _printf(sh: Shell, args: list[str]) -> tuple[bytes, int]:
    if not args:
        return b"", 1
    text = args[0].replace("\\n", "\n").replace("\\t", "\t").replace("%d", "%s")
    return (text % tuple(args[1 : 1 + text.count("%s")])).encode(), 0


async def _pwd(sh: Shell, args: list[str]) -> tuple[bytes, int]:
    return (sh.cwd + "\n").encode(), 0


async def _cd(sh: Shell, args: list[str]) -> tuple[bytes, int]:
    sh.cwd = posixpath.normpath(posixpath.join(sh.cwd, args[0])) if args else HOME
    return b"", 0


async def _status(code: int, sh: Shell, args: list[str]) -> tuple[bytes, int]:
    return b"", code


async def _exit(sh: Shell, args: list[str]) -> tuple[bytes, int]:
    raise ExitScript(int(args[0]) if args else 0)


async def _sleep(sh: Shell, args: list[str]) -> tuple[bytes, int]:
    await anyio.sleep(float(args[0]) if args else 0)
    return b"", 0


async def _seq(sh: Shell, args: list[str]) -> tuple[bytes, int]:
    first, last = (1, int(args[0])) if len(args) == 1 else (int(args[0]), int(args[1]))
    return "".join(f"{n}\n" for n in range(first, last + 1)).encode(), 0


async def _cat(sh: Shell, args: list[str]) -> tuple[bytes, int]:
    if args:
        return b"".join(sh.read_file(a if a.startswith("/") else f"{sh.cwd}/{a}") for a in args), 0
    while sh.proc.stdin_open or sh.proc.stdin:  # copy stdin to stdout until EOF
        if sh.proc.stdin:
            sh.proc.out += sh.proc.stdin
            sh.proc.stdin.clear()
        else:
            await anyio.sleep(POLL_SECONDS)
    return b"", 0


async def _true(sh: Shell, args: list[str]) -> tuple[bytes, int]:
    return await _status(0, sh, args)


async def _false(sh: Shell, args: list[str]) -> tuple[bytes, int]:
    return await _status(1, sh, args)


#: The commands the scripted shell runs: name -> (shell, arguments) -> (stdout bytes, status).
COMMANDS: dict[str, Callable[[Shell, list[str]], Awaitable[tuple[bytes, int]]]] = {
    "echo": _echo,
    "printf": _printf,
    "pwd": _pwd,
    "cd": _cd,
    "true": _true,
    "false": _false,
    "exit": _exit,
    "sleep": _sleep,
    "seq": _seq,
    "cat": _cat,
}


def _expand(word: str, env: dict[str, str]) -> str:
    out, i = "", 0
    while i < len(word):
        if word[i] == "$" and i + 1 < len(word) and (word[i + 1].isalpha() or word[i + 1] in "_{"):
            j = i + 1
            braced = word[j] == "{"
            j += braced
            k = j
            while k < len(word) and (word[k].isalnum() or word[k] == "_"):
                k += 1
            out += env.get(word[j:k], "")
            i = k + braced
        else:
            out += word[i]
            i += 1
    return out


async def run_script(sh: Shell) -> int:
    """Run the process's command; its exit status."""
    lexer = shlex.shlex(sh.proc.command, posix=True, punctuation_chars=";&|<>")
    lexer.whitespace_split = True
    tokens = list(lexer)
    status, joiner = 0, ";"
    words: list[str] = []
    for token in [*tokens, ";"]:
        if token not in (";", "&&", "||"):
            words.append(token)
            continue
        if words and (joiner == ";" or (joiner == "&&") == (status == 0)):
            status = await _simple(sh, words)
        words, joiner = [], token
    return status


async def _simple(sh: Shell, words: list[str]) -> int:
    to_stderr = False
    if words[-2:] == [">&", "2"]:
        words, to_stderr = words[:-2], True
    odd = [w for w in words if w and w[0] in "&|<>"]
    if odd:
        sh.proc.err += f"memory backend: unsupported shell syntax {odd[0]!r}\n".encode()
        return 2
    name, *args = [_expand(w, sh.env) for w in words]
    run = COMMANDS.get(name)
    if run is None:
        sh.proc.err += f"sh: {name}: not found (the memory backend runs only: {', '.join(COMMANDS)})\n".encode()
        return NOT_FOUND
    data, status = await run(sh, args)
    (sh.proc.err if to_stderr else sh.proc.out).extend(data)
    return status


def _summary(data: bytes, cap: int) -> records.StreamSummary:
    half = cap // 2
    head, tail = (data, b"") if len(data) <= cap else (data[:half], data[len(data) - (cap - half) :])
    note = "the memory backend keeps no full output" if tail else ""
    return records.StreamSummary(head=head, tail=tail, total=len(data), full_bytes=0, full_complete=False, note=note)


class MemoryProcesses:
    """The `Processes` and `ProcessHandles` capabilities over the scripted shell."""

    def __init__(self, known: Callable[[str], None], read_file: Callable[[str, str], bytes]) -> None:
        #: Raises SessionNotFoundError for an unknown session.
        self._known = known
        self._read_file = read_file
        self._task_group: TaskGroup | None = None
        self._table: dict[str, dict[str, Proc]] = {}
        self._next_pid = 1000

    def start(self, task_group: TaskGroup) -> None:
        """Processes run as tasks of this group (the server's)."""
        self._task_group = task_group

    def drop_session(self, session_id: str) -> None:
        """Kill and forget a deleted session's processes."""
        for proc in self._table.pop(session_id, {}).values():
            proc.scope.cancel()

    def _get(self, session_id: str, proc_id: str) -> Proc:
        self._known(session_id)
        proc = self._table.get(session_id, {}).get(proc_id)
        if proc is None:
            raise ProcessNotFoundError(proc_id)
        return proc

    async def start_process(
        self, session_id: str, command: records.ShellCommand, *, stdin: bool, foreground: bool, cap: int
    ) -> records.ProcessInfo:
        """Start the scripted command as a task."""
        self._known(session_id)
        if self._task_group is None:
            raise BackendUnavailableError("MemoryBackend.start() was not called")
        self._next_pid += 1
        proc = Proc(f"proc-{self._next_pid}", self._next_pid, command.command, foreground, stdin_open=stdin)
        self._table.setdefault(session_id, {})[proc.proc_id] = proc
        full_env = {"HOME": HOME, "PATH": "/usr/bin:/bin", **command.env}
        shell = Shell(proc, command.cwd or HOME, full_env, lambda path: self._read_file(session_id, path))
        self._task_group.start_soon(self._run, shell)
        return proc.info()

    @staticmethod
    async def _run(shell: Shell) -> None:
        with shell.proc.scope:
            try:
                status = await run_script(shell)
            except ExitScript as exit_:
                status = exit_.code
            except Exception as exc:  # a script's failure is its stderr, as in a shell
                shell.proc.err += f"memory backend: {exc}\n".encode()
                status = 2
            shell.proc.end(status)

    async def run_process(
        self, session_id: str, command: records.ShellCommand, *, wait_ms: int, cap: int, timeout_ms: int | None = None
    ) -> records.RunOutcome:
        """Start, wait up to wait_ms; if it ended, its output and forget it."""
        info = await self.start_process(session_id, command, stdin=False, foreground=True, cap=cap)
        info = await self.wait_process(session_id, info.proc_id, wait_ms)
        if info.running:
            return records.RunOutcome(info=info)
        summary = await self.process_output_summary(session_id, info.proc_id, cap)
        await self.forget_process(session_id, info.proc_id)
        return records.RunOutcome(info=info, summary=summary.streams)

    async def wait_process(self, session_id: str, proc_id: str, wait_ms: int) -> records.ProcessInfo:
        """The state after waiting up to wait_ms for the end."""
        proc = self._get(session_id, proc_id)
        with anyio.move_on_after(wait_ms / 1000):
            await proc.done.wait()
        return proc.info()

    async def read_process_output(
        self, session_id: str, proc_id: str, cursors: dict[str, int], wait_ms: int, max_bytes: int
    ) -> records.ProcessOutput:
        """Output since the cursors, waiting up to wait_ms for something new or the end."""
        proc = self._get(session_id, proc_id)
        streams = {"stdout": proc.out, "stderr": proc.err}
        with anyio.move_on_after(wait_ms / 1000):
            while not proc.done.is_set() and all(len(data) <= cursors.get(n, 0) for n, data in streams.items()):  # noqa: ASYNC110 - polls the buffers the script fills
                await anyio.sleep(POLL_SECONDS)
        chunks = {}
        for name, data in streams.items():
            start = min(cursors.get(name, 0), len(data))
            piece = bytes(data[start : start + max_bytes])
            chunks[name] = records.StreamChunk(
                data=piece, start=start, next_cursor=start + len(piece), dropped=0, total=len(data)
            )
        return records.ProcessOutput(info=proc.info(), streams=chunks)

    async def process_output_summary(self, session_id: str, proc_id: str, cap: int) -> records.OutputSummary:
        """Both streams within cap (head and tail)."""
        proc = self._get(session_id, proc_id)
        streams = {"stdout": _summary(bytes(proc.out), cap), "stderr": _summary(bytes(proc.err), cap)}
        return records.OutputSummary(info=proc.info(), streams=streams)

    async def process_tail(self, session_id: str, proc_id: str, lines: int) -> dict[str, list[str]]:
        """The last lines of each stream."""
        proc = self._get(session_id, proc_id)
        return {
            n: d.decode(errors="replace").splitlines()[-lines:] for n, d in (("stdout", proc.out), ("stderr", proc.err))
        }

    async def write_process_input(self, session_id: str, proc_id: str, data: bytes, eof: bool) -> int:
        """Append to the process's stdin (close it after if eof)."""
        proc = self._get(session_id, proc_id)
        if not proc.stdin_open:
            raise InvalidArgumentError(f"The stdin of process {proc_id!r} is closed.")
        proc.stdin += data
        proc.stdin_open = not eof
        return len(data)

    async def kill_process(
        self, session_id: str, proc_id: str, signal: int, grace_ms: int, reason: str
    ) -> records.ProcessInfo:
        """Scripted commands die at the first signal."""
        proc = self._get(session_id, proc_id)
        if not proc.done.is_set():
            proc.scope.cancel()
            proc.end(128 + signal, signal, reason)
        return proc.info()

    async def forget_process(self, session_id: str, proc_id: str) -> None:
        """Kill it if needed and drop it."""
        proc = self._table.get(session_id, {}).pop(proc_id, None)
        if proc is not None and not proc.done.is_set():
            proc.scope.cancel()
            proc.end(128 + signal.SIGKILL, signal.SIGKILL, "forgotten")

    async def list_processes(self, session_id: str) -> list[records.ProcessInfo]:
        """Background processes of the session."""
        self._known(session_id)
        return [p.info() for p in self._table.get(session_id, {}).values() if not p.foreground]
