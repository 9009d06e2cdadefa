"""The file tools under attack: hostile paths, symlink races, huge and odd files, read-only areas, full disks.

Every test drives the real MCP tools against real bubblewrap sandboxes and checks the HOST side:
canary files outside the state dir (readable by the sandbox uid, so only the mount namespace can
protect them) never show up in a reply and never change, and nothing is written anywhere but the
session's own home and tmp dirs. The later tests pin bugs this file found (agent crashes on deep
trees, FIFOs and devices, line reading, odd names, deep-tree deletion on the host), all fixed.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import secrets
import statistics
import struct
import subprocess
import time
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from mcp import Client
from mcp_types import CallToolResult, ImageContent

from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.settings import Settings
from agentbay_mcp.testing.calls import call, call_error, error_text, unwrapped
from agentbay_mcp.testing.rss import PeakRss
from agentbay_mcp.testing.servers import stdio_params

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

AS_ROOT = os.geteuid() == 0
#: The uid root's sandboxes run as on the host (agentbay_mcp.backends.local.sandbox.UNPRIVILEGED_UID).
NOBODY = 65534
MIB = 1024 * 1024
GIB = 1024 * MIB
#: No single file tool call may take longer than this (the agent's own call timeout is 30 s).
CALL_SECONDS = 20.0
#: What no error message may look like: an unexplained crash or a hang that ran into a timeout.
UNCLEAR = ("Traceback", "did not answer", "does not validate", "sandbox is gone")


# Helpers ----------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def serve(state_dir: Path, **overrides: Any) -> AsyncIterator[Client]:
    """An in-memory client of a server with custom settings on `state_dir`."""
    with unwrapped():
        async with Client(build_server(Settings(state_dir=state_dir, **overrides)), mode="legacy") as client:
            yield client


async def new_session(client: Client) -> str:
    return str((await call(client, "create_session", image_id="code_latest"))["session_id"])


async def run(client: Client, session_id: str, command: str, timeout_ms: int = 60_000) -> dict[str, Any]:
    """execute_command that must exit 0."""
    result = await call(client, "execute_command", session_id=session_id, command=command, timeout_ms=timeout_ms)
    assert result["exit_code"] == 0, result
    return result


def home_of(state_dir: Path, session_id: str) -> Path:
    return state_dir / "sessions" / session_id / "home"


def result_text(result: CallToolResult) -> str:
    """Everything a tool result shows the model: its text blocks and its structured content."""
    parts = [getattr(block, "text", "") for block in result.content]
    if result.structured_content is not None:
        parts.append(json.dumps(result.structured_content))
    return "\n".join(parts)


@dataclasses.dataclass
class Outcome:
    """One tool call: did it succeed, what did it say, how long did it take."""

    tool: str
    arguments: dict[str, Any]
    ok: bool
    text: str
    structured: dict[str, Any] | None
    seconds: float

    def __str__(self) -> str:
        shown = {k: (v[:80] + "...") if isinstance(v, str) and len(v) > 80 else v for k, v in self.arguments.items()}
        return f"{self.tool}({shown}) -> {'ok' if self.ok else 'error'}: {self.text[:300]!r}"


async def attempt(client: Client, tool: str, **arguments: Any) -> Outcome:
    """Call a tool that may succeed or fail, but must answer (within CALL_SECONDS)."""
    started = time.monotonic()
    with anyio.fail_after(CALL_SECONDS + 5):
        result = await client.call_tool(tool, arguments)
    seconds = time.monotonic() - started
    structured = dict(result.structured_content) if result.structured_content is not None else None
    return Outcome(tool, arguments, not result.is_error, result_text(result), structured, seconds)


def assert_clear_error(outcome: Outcome) -> None:
    """A refusal must say what went wrong: no crash, no timeout, not empty, not a wall of text."""
    assert not outcome.ok
    message = outcome.text
    assert len(message) > len(f"Error executing tool {outcome.tool}: "), f"empty error: {outcome}"
    assert len(message) < 6000, f"error too long: {outcome}"
    assert not any(marker in message for marker in UNCLEAR), f"unclear error: {outcome}"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_snapshot(root: Path, skip: tuple[Path, ...]) -> dict[str, str]:
    """Every path under `root` (not below `skip`) with its type and content hash or link target."""
    found: dict[str, str] = {}
    skipped = {str(p) for p in skip}
    for directory, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if os.path.join(directory, d) not in skipped]
        for name in dirs + files:
            path = os.path.join(directory, name)
            if path in skipped:
                continue
            st = os.lstat(path)
            if os.path.islink(path):
                found[path] = "link:" + os.readlink(path)
            elif os.path.isdir(path):
                found[path] = f"dir:{oct(st.st_mode)}"
            elif os.path.isfile(path):
                found[path] = f"file:{oct(st.st_mode)}:" + digest(Path(path))
            else:
                found[path] = f"other:{oct(st.st_mode)}"
    return found


def host_files_named(token: str, allowed: tuple[Path, ...]) -> list[str]:
    """Host paths whose name contains `token`, outside the `allowed` dirs (the session's home and tmp)."""
    roots = [r for r in ("/", "/dev/shm", "/run", "/var/tmp") if os.path.isdir(r)]
    found = subprocess.run(
        ["find", *roots, "-xdev", "-name", f"*{token}*", "-print"],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    hits = [line for line in found.stdout.splitlines() if line]
    return sorted(h for h in hits if not any(h == str(a) or h.startswith(f"{a}/") for a in allowed))


def on_host(path: str) -> bool:
    return os.path.lexists(path)


def readable_as_sandbox_uid(path: Path) -> bool:
    """Whether the host uid the sandboxes run as could read `path` if it were visible to it."""
    if not AS_ROOT:
        return os.access(path, os.R_OK)
    done = subprocess.run(
        ["cat", str(path)], user=NOBODY, group=NOBODY, extra_groups=[], capture_output=True, timeout=10, check=False
    )
    return done.returncode == 0


@dataclasses.dataclass
class Canaries:
    """Host files the sandboxes must never read or change."""

    directory: Path  # outside the state dir, 0755
    secret_file: Path  # 0644, readable by the sandbox uid if it could see it
    secret: str
    inner_file: Path
    inner_secret: str
    state_secret: str  # in a file at the state dir's root (outside every session)
    state_file: Path

    def secrets(self) -> list[str]:
        return [self.secret, self.inner_secret, self.state_secret]

    def files(self) -> list[Path]:
        return [self.secret_file, self.inner_file, self.state_file]


@pytest.fixture
def canaries(tmp_path: Path, state_dir: Path) -> Canaries:
    directory = tmp_path / f"host-canary-{secrets.token_hex(4)}"
    (directory / "sub").mkdir(parents=True)
    secret, inner_secret, state_secret = (f"CANARY-{secrets.token_hex(16)}" for _ in range(3))
    secret_file = directory / f"secret-{secrets.token_hex(4)}.txt"
    secret_file.write_text(secret)
    inner_file = directory / "sub" / "inner.txt"
    inner_file.write_text(inner_secret)
    state_dir.mkdir(parents=True, exist_ok=True)
    state_file = state_dir / "host-canary.txt"
    state_file.write_text(state_secret)
    for path in (directory, directory / "sub"):
        path.chmod(0o755)
    for path in (secret_file, inner_file, state_file):
        path.chmod(0o644)
    return Canaries(directory, secret_file, secret, inner_file, inner_secret, state_secret, state_file)


@pytest.fixture
def deep_tree_cleanup(state_dir: Path) -> Iterator[None]:
    """Remove the state dir with `rm -rf` afterwards: Python's rmtree (the server's, pytest's) recurses and
    cannot remove the 1500-level trees some tests leave behind (see test_a_deep_tree_..._next_start)."""
    yield
    subprocess.run(["rm", "-rf", "--one-file-system", str(state_dir)], timeout=300, check=False)


#: Host files whose content the sandboxes must never change.
HOST_FILES = [Path(p) for p in ("/etc/passwd", "/etc/shadow", "/etc/hostname", "/etc/hosts") if os.path.exists(p)]


class HostWatch:
    """Before/after picture of everything the sessions must not touch on the host."""

    def __init__(self, root: Path, canaries: Canaries, allowed: tuple[Path, ...], token: str) -> None:
        # With a disk quota, home and tmp are symlinks into the session's own file system (disk/,
        # mounted from disk.img, whose bytes change with every write inside).
        quota = [p for p in allowed if p.is_symlink()]
        allowed = (*allowed, *(p.resolve() for p in quota), *(p.parent / "disk.img" for p in quota))
        self.root, self.canaries, self.allowed, self.token = root, canaries, allowed, token
        self.before = tree_snapshot(root, allowed)
        self.host_files = {p: digest(p) for p in HOST_FILES}
        self.canary_digests = {p: digest(p) for p in canaries.files()}

    def check(self) -> None:
        for path, before in self.canary_digests.items():
            assert digest(path) == before, f"host canary {path} changed"
        for path, before in self.host_files.items():
            assert digest(path) == before, f"host file {path} changed"
        after = tree_snapshot(self.root, self.allowed)
        added = sorted(set(after) - set(self.before))
        removed = sorted(set(self.before) - set(after))
        changed = sorted(p for p in set(after) & set(self.before) if after[p] != self.before[p])
        assert not added, f"new files on the host outside the session's home and tmp: {added[:20]}"
        assert not removed, f"files removed on the host outside the session's home and tmp: {removed[:20]}"
        assert not changed, f"files changed on the host outside the session's home and tmp: {changed[:20]}"
        stray = host_files_named(self.token, self.allowed)
        assert not stray, f"files written outside the session's home and tmp: {stray}"


# 1. A corpus of hostile paths --------------------------------------------------------------------------


SETUP_SCRIPT = """
set -e
cd /home/user
mkdir -p inside/sub d/e
echo inside-file > inside/file.txt
ln -s {canary_dir} abs_canary_dir
ln -s {canary_file} abs_canary_file
ln -s {other_home} abs_other_home
ln -s {other_home}/{other_name} abs_other_file
ln -s {own_session} abs_own_session
ln -s {state_dir} abs_state
ln -s {state_file} abs_state_file
ln -s /proc/1/root proc_root
ln -s /proc/self/root/home/user/../../.. proc_self_root_up
ln -s ../../../../../../../../../.. rel_up
ln -s ../../.. rel_up3
ln -s ../../../.. d/e/up
ln -s loop_b loop_a
ln -s loop_a loop_b
ln -s self_loop self_loop
ln -s / root_link
ln -s /dev/zero zero_link
mkfifo fifo
ln -s fifo fifo_link
ln -s /proc/self/fd fd_link
printf 'newline\\n' > "$(printf 'name\\nwith\\nnewlines')"
for i in $(seq 0 {count}); do echo "source $i" > src-{token}-$i; done
"""


#: Move sources left out of the corpus because each is a finding of its own: devices that read forever
#: (test_move_from_a_device_does_not_copy_it) and "/" reached through /proc, which shutil.move copies
#: into home recursively (test_file_operations_that_blow_up_do_not_kill_the_session).
MOVE_SOURCES_SKIPPED = ("/dev/zero", "/dev/random", "/dev/urandom", "/dev/full", "/proc/1/root/home/user/../../..")


def hostile_paths(
    canaries: Canaries, other_home: Path, other_name: str, own_session: Path, state_dir: Path
) -> list[str]:
    """At least 50 paths an attacker would try, as the model would pass them to the file tools."""
    canary_file, canary_dir = str(canaries.secret_file), str(canaries.directory)
    up = "/home/user/../../../../.."
    return [
        # Traversal, plain, encoded and repeated.
        "../../../etc/passwd",
        "../../..",
        "/home/user/../../etc/shadow",
        f"{up}{canary_file}",
        f"{up}{canary_dir}",
        "../" * 40 + canary_file.lstrip("/"),
        "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "..%2f..%2f..%2fetc%2fshadow",
        "%252e%252e%252f%252e%252e%252fetc%252fshadow",
        "....//....//....//etc/shadow",
        "..\\..\\..\\etc\\shadow",
        "..;/..;/..;/etc/shadow",
        "/./././../../../" + canary_file.lstrip("/"),
        "//" + canary_file.lstrip("/"),
        "/home/user/./inside/../../../" + canary_dir.lstrip("/") + "/sub/inner.txt",
        "file://" + canary_file,
        " " + canary_file,
        "~root/.ssh/id_rsa",
        "/root/.bashrc",
        "/etc/shadow",
        # Host paths that exist on the host but must not exist in the sandbox.
        canary_file,
        canary_dir,
        canary_dir + "/sub/inner.txt",
        str(other_home),
        str(other_home / other_name),
        str(own_session),
        str(own_session / "meta.json"),
        str(state_dir),
        str(canaries.state_file),
        f"/proc/{os.getpid()}/root{canary_file}",
        "/var/lib/agentbay-mcp",
        # Symlinks made in the session, absolute and relative, pointing out.
        "abs_canary_dir/" + canaries.secret_file.name,
        "abs_canary_file",
        "abs_canary_dir",
        "abs_other_home/" + other_name,
        "abs_other_file",
        "abs_other_home",
        "abs_own_session/meta.json",
        "abs_state/sessions",
        "abs_state_file",
        "proc_root" + canary_file,
        "proc_root/etc/shadow",
        "proc_self_root_up" + canary_file,
        "rel_up" + canary_file,
        "rel_up3/etc/shadow",
        "d/e/up" + canary_dir + "/sub/inner.txt",
        "root_link" + canary_file,
        # /proc tricks.
        "/proc/1/root" + canary_file,
        "/proc/self/root" + canary_file,
        "/proc/self/root/../../../" + canary_file.lstrip("/"),
        "/proc/1/root/home/user/../../..",
        "/proc/1/cwd",
        "/proc/1/cwd/../../.." + canary_dir,
        "/proc/self/cwd/abs_canary_file",
        "/proc/self/fd",
        "/proc/self/fd/0",
        "/proc/self/fd/1",
        "/proc/self/fd/3",
        "/proc/self/fd/4",
        "/proc/self/fd/5",
        "/proc/self/fd/8",
        "fd_link/4",
        "/proc/self/mem",
        "/proc/1/environ",
        "/proc/self/environ",
        "/proc/kcore",
        "/sys/kernel/notes",
        # Loops, FIFOs, devices.
        "loop_a",
        "loop_a/x",
        "self_loop",
        "fifo",
        "fifo_link",
        "/dev/zero",
        "zero_link",
        "/dev/random",
        "/dev/full",
        "/dev/tty",
        "/dev/stdin",
        "/dev/mem",
        # Junk: NUL bytes, huge, newlines.
        "a\x00b",
        canary_file + "\x00.txt",
        "x" * 5000,
        "../" * 1700 + "etc/shadow",
        "name\nwith\nnewlines",
        "inside\n/../../../etc/shadow",
        "/" * 4000 + "etc/shadow",
    ]


SEARCHED = ("abs_", "rel_up", "proc_root", "root_link", "d/e/up", "/proc/1/root", "/proc/self/root")


async def read_everything(client: Client, session_id: str, paths: list[str], *, search: bool) -> list[Outcome]:
    """read_file, get_file_info and list_directory of every path (and search_files below the symlinks)."""
    outcomes = []
    for path in paths:
        for tool in ("read_file", "get_file_info", "list_directory"):
            outcomes.append(await attempt(client, tool, session_id=session_id, path=path))
        if search and path.startswith(SEARCHED):
            outcomes.append(await attempt(client, "search_files", session_id=session_id, path=path, pattern="*secret*"))
    return outcomes


async def write_and_move_everything(client: Client, session_id: str, paths: list[str], token: str) -> list[Outcome]:
    """write_file to each path and below it; move_file a session file to it, and it to a new name."""
    outcomes = []
    for number, path in enumerate(paths):
        content = f"W-{token}-{number}"
        outcomes.append(await attempt(client, "write_file", session_id=session_id, path=path, content=content))
        below = f"{path}/w-{token}-{number}"
        if "\x00" not in below and len(below) < 4000:
            outcomes.append(await attempt(client, "write_file", session_id=session_id, path=below, content=content))
    for number, path in enumerate(paths):
        source = f"src-{token}-{number}"
        outcomes.append(await attempt(client, "move_file", session_id=session_id, source=source, destination=path))
        if path not in MOVE_SOURCES_SKIPPED:
            moved = f"moved-{token}-{number}"
            outcomes.append(await attempt(client, "move_file", session_id=session_id, source=path, destination=moved))
    return outcomes


def assert_no_hidden_names(outcomes: list[Outcome], hidden: list[str]) -> None:
    """No listing or search shows a name that only exists on the host."""
    for outcome in outcomes:
        if outcome.ok and outcome.tool in ("list_directory", "search_files"):
            assert outcome.structured is not None
            names = [e["name"] for e in outcome.structured.get("entries", [])] + outcome.structured.get("matches", [])
            shown = [n for n in names if any(h in n for h in hidden)]
            assert not shown, f"{outcome}: a host-only name is visible: {shown}"


def assert_contained(outcomes: list[Outcome], forbidden: list[str], paths: list[str]) -> None:
    """No result carries host data; every call answered in time; every refusal is clear."""
    for outcome in outcomes:
        leaked = [secret for secret in forbidden if secret in outcome.text]
        assert not leaked, f"host data leaked into a tool result: {outcome}"
        assert outcome.seconds < CALL_SECONDS, f"took {outcome.seconds:.1f} s (a hang?): {outcome}"
        if not outcome.ok:
            assert_clear_error(outcome)
    for path in paths:  # junk is refused up front, saying why
        about = [o for o in outcomes if o.arguments.get("path") == path]
        if "\x00" in path:
            assert all("NUL" in o.text for o in about), path
        elif len(path) > 4096:
            assert all("4096" in o.text for o in about), path
    refused = sum(not o.ok for o in outcomes)
    assert refused > len(outcomes) // 3, "suspiciously few refusals: is the corpus reaching the tools?"


async def test_hostile_path_corpus_stays_inside_the_session(
    client: Client, state_dir: Path, tmp_path: Path, canaries: Canaries
) -> None:
    token = secrets.token_hex(6)
    victim = await new_session(client)
    other_home = home_of(state_dir, victim)
    other_name = f"b-secret-{secrets.token_hex(6)}.txt"
    other_secret = f"OTHER-SESSION-{secrets.token_hex(16)}"
    await run(client, victim, f"echo {other_secret} > {other_name}")
    session_id = await new_session(client)
    own_session = state_dir / "sessions" / session_id
    own_secret = f"SESSION-DIR-{secrets.token_hex(16)}"
    (own_session / "host-only.txt").write_text(own_secret)  # in the session's dir, but outside home and tmp
    (own_session / "host-only.txt").chmod(0o644)
    forbidden = [*canaries.secrets(), other_secret, own_secret]
    # Proves the test: the sandbox uid could read each canary on the host, were it visible.
    for path in canaries.files():
        assert readable_as_sandbox_uid(path), f"{path} is not readable by the sandbox uid: the test proves nothing"

    paths = hostile_paths(canaries, other_home, other_name, own_session, state_dir)
    assert len(paths) >= 50
    setup = SETUP_SCRIPT.format(
        canary_dir=canaries.directory,
        canary_file=canaries.secret_file,
        other_home=other_home,
        other_name=other_name,
        own_session=own_session,
        state_dir=state_dir,
        state_file=canaries.state_file,
        count=len(paths),
        token=token,
    )
    await run(client, session_id, setup)
    watch = HostWatch(tmp_path, canaries, (own_session / "home", own_session / "tmp", other_home.parent / "tmp"), token)

    # Reads first (the writes below replace some of the symlinks).
    outcomes = await read_everything(client, session_id, paths, search=True)
    assert_no_hidden_names(outcomes, [canaries.secret_file.name, "inner.txt", other_name, "meta.json", "host-only.txt"])
    # Host paths: none of them may exist in the sandbox (before anything is written there).
    host_only = {str(p) for p in canaries.files()} | {str(canaries.directory), str(own_session), str(state_dir)}
    host_only |= {str(other_home), str(other_home / other_name)}
    for outcome in outcomes:
        if outcome.arguments["path"] in host_only and outcome.tool != "search_files":
            assert not outcome.ok, f"a host path is visible in the sandbox: {outcome}"
            assert "No such file" in outcome.text, outcome
    outcomes += await write_and_move_everything(client, session_id, paths, token)
    # ... and read everything again: what the writes created must be the session's own files.
    outcomes += await read_everything(client, session_id, paths, search=False)

    assert_contained(outcomes, forbidden, paths)
    print(f"corpus: {len(paths)} paths, {len(outcomes)} calls, {sum(not o.ok for o in outcomes)} refused")
    # The session still works, the other session's file is intact, and nothing outside changed.
    assert (await run(client, session_id, "echo alive"))["stdout"] == "alive\n"
    assert (other_home / other_name).read_text() == f"{other_secret}\n"
    watch.check()


# 2. The symlink-swap race -----------------------------------------------------------------------------

SWAPPER = r"""
import ctypes, os, random, sys, time
os.chdir("/home/user")
libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, RENAME_EXCHANGE = -100, 2
links = []
for number, target in enumerate(sys.argv[1:]):
    name = f".swap{number}"
    os.symlink(target, name)
    links.append(name)
exchange = libc.renameat2(AT_FDCWD, b"d", AT_FDCWD, links[0].encode(), RENAME_EXCHANGE) == 0
if exchange:
    libc.renameat2(AT_FDCWD, b"d", AT_FDCWD, links[0].encode(), RENAME_EXCHANGE)
swaps = 0
while True:
    for link in links:
        if exchange:  # atomic: "d" is the directory, then the symlink, then the directory again
            libc.renameat2(AT_FDCWD, b"d", AT_FDCWD, link.encode(), RENAME_EXCHANGE)
            time.sleep(random.random() / 2000)
            libc.renameat2(AT_FDCWD, b"d", AT_FDCWD, link.encode(), RENAME_EXCHANGE)
        else:  # mv d d.real; ln -s target d; rm d; mv d.real d
            try:
                os.rename("d", "d.real")
                os.symlink(os.readlink(link), "d.new")
                os.rename("d.new", "d")
                time.sleep(random.random() / 2000)
                os.unlink("d")
                os.rename("d.real", "d")
            except OSError:
                pass
        time.sleep(random.random() / 2000)
        swaps += 1
        if swaps % 200 == 0:
            with open("/tmp/swaps.tmp", "w") as out:
                out.write(f"{swaps} {'exchange' if exchange else 'rename'}")
            os.replace("/tmp/swaps.tmp", "/tmp/swaps")
"""


async def test_symlink_swap_race_never_reaches_outside(
    client: Client, state_dir: Path, tmp_path: Path, canaries: Canaries
) -> None:
    token = secrets.token_hex(6)
    session_id = await new_session(client)
    name = canaries.secret_file.name  # the same name inside, so a host-side resolution would find the canary
    inside = f"INSIDE-{token}"
    await run(client, session_id, f"mkdir -p d/sub && echo {inside} > d/{name} && echo sub > d/sub/inner.txt")
    await call(client, "write_file", session_id=session_id, path="swap.py", content=SWAPPER)
    own_session = state_dir / "sessions" / session_id
    watch = HostWatch(tmp_path, canaries, (own_session / "home", own_session / "tmp"), token)
    swapper = await call(
        client, "start_process", session_id=session_id, command=f"exec python3 swap.py {canaries.directory} /"
    )
    outcomes: list[Outcome] = []
    counter = iter(range(10**9))

    async def hammer(deadline: float, step: Any) -> None:
        while time.monotonic() < deadline:
            outcomes.append(await step())

    def reader(path: str) -> Any:
        return lambda: attempt(client, "read_file", session_id=session_id, path=path)

    def lister(path: str) -> Any:
        return lambda: attempt(client, "list_directory", session_id=session_id, path=path)

    def writer(prefix: str) -> Any:
        return lambda: attempt(
            client, "write_file", session_id=session_id, path=f"{prefix}/w-{token}-{next(counter)}", content=token
        )

    def informer(path: str) -> Any:
        return lambda: attempt(client, "get_file_info", session_id=session_id, path=path)

    try:
        assert await wait_for_file(client, session_id, "/tmp/swaps"), "the swapper never got going"
        deadline = time.monotonic() + 5
        async with anyio.create_task_group() as group:
            for step in (
                reader(f"d/{name}"),
                reader(f"/home/user/d/{name}"),
                reader("d/sub/inner.txt"),
                reader(f"d/sub/../{name}"),
                lister("d"),
                lister("d/sub"),
                writer("d"),
                writer("d/sub"),
                informer(f"d/{name}"),
            ):
                group.start_soon(hammer, deadline, step)
        swaps = (await call(client, "read_file", session_id=session_id, path="/tmp/swaps"))["content"]
    finally:
        await call(client, "kill_process", session_id=session_id, process_id=swapper["process_id"], signal="KILL")

    assert len(outcomes) > 200, f"only {len(outcomes)} calls in 5 s"
    for outcome in outcomes:
        leaked = [secret for secret in canaries.secrets() if secret in outcome.text]
        assert not leaked, f"the race read a host file: {outcome}"
        if not outcome.ok:
            assert_clear_error(outcome)
    reads = [o for o in outcomes if o.tool == "read_file" and o.ok and name in o.arguments["path"]]
    assert reads, "no read through d ever succeeded"
    assert all(o.structured and o.structured["content"] == f"{inside}\n" for o in reads)
    # The race was real: some calls saw the directory, some saw the symlink.
    listings = [o for o in outcomes if o.tool == "list_directory" and o.arguments["path"] == "d"]
    as_dir = [o for o in listings if o.ok and '"sub"' in o.text]
    as_root = [o for o in listings if o.ok and '"usr"' in o.text]
    missing = [o for o in outcomes if not o.ok and name in str(o.arguments.get("path"))]
    assert as_dir, "list_directory never saw d as the directory"
    assert as_root or missing, f"no call ever saw d as a symlink ({swaps} swaps): the race did not happen"
    assert int(swaps.split()[0]) >= 200, swaps
    written = [o for o in outcomes if o.tool == "write_file" and o.ok]
    assert written, "no write through d ever succeeded"
    print(
        f"race: {len(outcomes)} calls, swapper at {swaps!r}; d seen as the directory {len(as_dir)}x, as a "
        f"symlink to / {len(as_root)}x, paths through d missing {len(missing)}x, {len(written)} writes landed"
    )
    watch.check()


async def wait_for_file(client: Client, session_id: str, path: str, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (await attempt(client, "get_file_info", session_id=session_id, path=path)).ok:
            return True
        await anyio.sleep(0.1)
    return False


# 3. A 2 GB sparse file through a real stdio server ----------------------------------------------------


def server_process(state_dir: Path) -> psutil.Process:
    """The `python -m agentbay_mcp` child of this test process serving `state_dir`."""
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "agentbay_mcp" in " ".join(child.cmdline()) and child.environ().get("AGENTBAY_MCP_STATE_DIR") == str(
                state_dir
            ):
                return child
    raise AssertionError("no stdio server child found")


def sandbox_agent(server: psutil.Process) -> psutil.Process:
    agents = [
        p
        for p in server.children(recursive=True)
        if p.name().startswith("python") and "sandbox_agent.py" in " ".join(p.cmdline())
    ]
    assert len(agents) == 1, agents
    return agents[0]


def chunk_bytes(result: dict[str, Any]) -> bytes:
    """The bytes a read_file result carries, whatever its encoding."""
    if result["encoding"] == "base64":
        return base64.b64decode(result["content"])
    return str(result["content"]).encode()


async def test_2gb_sparse_file_reads_fast_at_any_offset_with_bounded_memory(state_dir: Path) -> None:
    size = 2 * GIB
    start_mark, end_mark, middle_mark = (f"{where}-{secrets.token_hex(8)}" for where in ("START", "END", "MIDDLE"))
    end_at, middle_at = size - 4096 + 100, GIB + 12345
    with unwrapped():
        async with Client(stdio_params(state_dir)) as client:
            session_id = await new_session(client)
            await run(
                client,
                session_id,
                f"truncate -s 2G big && printf {start_mark} | dd of=big bs=1 seek=100 conv=notrunc status=none "
                f"&& printf {middle_mark} | dd of=big bs=1 seek={middle_at} conv=notrunc status=none "
                f"&& printf {end_mark} | dd of=big bs=1 seek={end_at} conv=notrunc status=none",
            )
            host_big = home_of(state_dir, session_id) / "big"
            assert host_big.stat().st_size == size
            assert host_big.stat().st_blocks * 512 < 64 * MIB, "the file is not sparse"
            server = server_process(state_dir)
            agent = sandbox_agent(server)

            async def timed(offset: int) -> tuple[float, bytes, dict[str, Any]]:
                started = time.perf_counter()
                with anyio.fail_after(CALL_SECONDS):
                    result = await call(
                        client, "read_file", session_id=session_id, path="big", offset=offset, length=4096
                    )
                return time.perf_counter() - started, chunk_bytes(result), result

            for _ in range(3):  # warm up
                await timed(0)
                await timed(size - 4096)
            near_start, near_end = [], []
            for _ in range(7):
                took, data, result = await timed(0)
                near_start.append(took)
                assert start_mark.encode() in data
                assert result["size"] == size
                took, data, result = await timed(size - 4096)
                near_end.append(took)
                assert data[100 : 100 + len(end_mark)] == end_mark.encode()
                assert result["next_offset"] is None
            start_s, end_s = statistics.median(near_start), statistics.median(near_end)
            assert start_s < 1.0, near_start
            assert end_s < 1.0, near_end
            assert end_s < 5 * max(start_s, 0.001), f"near the end {end_s * 1000:.1f} ms, start {start_s * 1000:.1f} ms"

            # Full 256 KiB chunks from all over the file: the server and the agent stay small.
            with PeakRss(server=server, agent=agent) as rss:
                for number in range(40):
                    offset = (size // 40) * number
                    result = await call(client, "read_file", session_id=session_id, path="big", offset=offset)
                    assert result["length"] == 256 * 1024
                    assert result["next_offset"] == offset + 256 * 1024
                middle = await call(client, "read_file", session_id=session_id, path="big", offset=middle_at - 10)
                assert middle_mark.encode() in chunk_bytes(middle)
            print(
                f"2 GiB sparse: 4 KiB near the start {start_s * 1000:.2f} ms, near the end {end_s * 1000:.2f} ms "
                f"(medians); RSS growth over 41 x 256 KiB reads: server {rss.growth('server') / MIB:.1f} MiB, "
                f"agent {rss.growth('agent') / MIB:.1f} MiB"
            )
            assert rss.growth("server") < 50 * MIB, f"server RSS grew {rss.growth('server') / MIB:.1f} MiB"
            assert rss.growth("agent") < 50 * MIB, f"agent RSS grew {rss.growth('agent') / MIB:.1f} MiB"


async def test_line_read_of_a_huge_file_without_newlines_is_bounded(state_dir: Path) -> None:
    async with serve(state_dir, memory_limit_mb=256) as client:
        session_id = await new_session(client)
        await run(client, session_id, "truncate -s 2G big")
        sleeper = await call(client, "start_process", session_id=session_id, command="sleep 300")
        outcome = await attempt(client, "read_file", session_id=session_id, path="big", start_line=1, line_count=1)
        status = await attempt(
            client, "wait_process", session_id=session_id, process_id=sleeper["process_id"], timeout_ms=0
        )
        assert status.ok, f"the read took the session's sandbox down: {outcome}; then {status}"
        assert status.structured is not None
        assert status.structured["running"] is True, status
        if outcome.ok:
            assert outcome.structured is not None
            assert outcome.structured["length"] <= 256 * 1024
        else:
            assert_clear_error(outcome)
        assert outcome.seconds < 10, outcome


# 4. Encodings: invalid UTF-8, images, empty and binary files ------------------------------------------


def png_bytes(width: int = 3, height: int = 2) -> bytes:
    """A valid RGB PNG, built by hand."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    rows = b"".join(
        b"\x00" + b"".join(bytes([(x * 80) % 256, (y * 120) % 256, 200]) for x in range(width)) for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


async def put_bytes(client: Client, session_id: str, path: str, data: bytes) -> None:
    """Write arbitrary bytes in the session: base64 text through write_file, decoded by `base64 -d`."""
    await call(client, "write_file", session_id=session_id, path=f"{path}.b64", content=base64.b64encode(data).decode())
    await run(client, session_id, f"base64 -d '{path}.b64' > '{path}' && rm '{path}.b64'")


async def test_text_images_empty_and_binary_files(client: Client, state_dir: Path) -> None:
    session_id = await new_session(client)
    home = home_of(state_dir, session_id)

    invalid = b"valid \xc3\xa9 then \xff\xfe broken \xc3 and \xed\xa0\x80 end\n"
    await put_bytes(client, session_id, "invalid.txt", invalid)
    read = await call(client, "read_file", session_id=session_id, path="invalid.txt")
    assert read["encoding"] == "utf-8"
    assert read["invalid_utf8"] is True
    assert read["content"] == invalid.decode("utf-8", errors="replace")
    assert "\ufffd" in read["content"]
    assert "valid é then" in read["content"]
    assert "U+FFFD" in read["message"]
    assert read["size"] == len(invalid)

    png = png_bytes()
    await put_bytes(client, session_id, "picture.png", png)
    assert (home / "picture.png").read_bytes() == png
    result = await client.call_tool("read_file", {"session_id": session_id, "path": "picture.png"})
    assert not result.is_error, error_text(result)
    images = [block for block in result.content if isinstance(block, ImageContent)]
    assert len(images) == 1, result.content
    assert images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data) == png
    assert result.structured_content is not None
    assert result.structured_content["encoding"] == "image"
    assert result.structured_content["size"] == len(png)

    # The type comes from the magic bytes, not the name.
    for name, data, mime in (
        ("photo.bin", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + os.urandom(200), "image/jpeg"),
        ("anim.dat", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;" + os.urandom(50), "image/gif"),
        ("old.gif", b"GIF87a\x01\x00\x01\x00\x00\x00\x00;", "image/gif"),
        ("renamed.txt", png, "image/png"),
    ):
        await put_bytes(client, session_id, name, data)
        result = await client.call_tool("read_file", {"session_id": session_id, "path": name})
        assert not result.is_error, error_text(result)
        images = [block for block in result.content if isinstance(block, ImageContent)]
        assert [image.mime_type for image in images] == [mime], (name, result.content)
        assert base64.b64decode(images[0].data) == data
    not_png = await call(client, "write_file", session_id=session_id, path="fake.png", content="just text\n")
    assert not_png["size"] == 10
    fake = await call(client, "read_file", session_id=session_id, path="fake.png")
    assert (fake["encoding"], fake["content"]) == ("utf-8", "just text\n")

    await run(client, session_id, ": > empty.txt")
    empty = await call(client, "read_file", session_id=session_id, path="empty.txt")
    assert (empty["content"], empty["size"], empty["length"], empty["next_offset"]) == ("", 0, 0, None)
    assert empty["invalid_utf8"] is False

    binary = bytes(range(256)) * 4 + b"\x00\x01\x02\x00" + os.urandom(3000)
    await put_bytes(client, session_id, "blob.bin", binary)
    blob = await call(client, "read_file", session_id=session_id, path="blob.bin")
    assert blob["encoding"] == "base64"
    assert base64.b64decode(blob["content"]) == binary
    assert blob["next_offset"] is None

    # Binary over the read cap: base64 chunks that join up to the original bytes.
    big_binary = b"\x00" + os.urandom(600 * 1024)
    await put_bytes(client, session_id, "big.bin", big_binary)
    joined, offset, calls = b"", 0, 0
    while offset is not None:
        part = await call(client, "read_file", session_id=session_id, path="big.bin", offset=offset)
        assert part["encoding"] == "base64"
        joined += base64.b64decode(part["content"])
        offset, calls = part["next_offset"], calls + 1
        assert calls < 10
    assert joined == big_binary


# 5. Read-only areas -------------------------------------------------------------------------------------


async def test_read_only_areas_refuse_writes_and_name_the_path(client: Client, state_dir: Path) -> None:
    token = secrets.token_hex(6)
    session_id = await new_session(client)
    await call(client, "write_file", session_id=session_id, path="keep.txt", content=f"keep {token}\n")
    hostname_before = (await call(client, "read_file", session_id=session_id, path="/etc/hostname"))["content"]
    host_before = {p: digest(p) for p in HOST_FILES}
    targets = [
        f"/usr/probe-{token}",
        f"/usr/lib/probe-{token}/deep",
        f"/etc/probe-{token}",
        "/etc/hostname",
        "/etc/passwd",
        f"/probe-{token}",
        f"/opt/probe-{token}",
        f"/home/probe-{token}",
    ]
    for target in targets:
        for tool, arguments in (
            ("write_file", {"path": target, "content": f"x {token}"}),
            ("write_file", {"path": target, "content": f"x {token}", "mode": "append"}),
            ("create_directory", {"path": target + "-dir"}),
        ):
            message = await call_error(client, tool, session_id=session_id, **arguments)
            assert "Read-only" in message or "Permission denied" in message, (tool, target, message)
            assert (arguments["path"] in message) or (target in message), (tool, target, message)
        message = await call_error(client, "move_file", session_id=session_id, source="keep.txt", destination=target)
        assert "Read-only" in message or "Permission denied" in message or "already exists" in message, message
        assert not on_host(target) or target in ("/etc/hostname", "/etc/passwd"), f"{target} on the host"
    # Nothing changed: the session's file, the sandbox's /etc, the host's files.
    assert (await call(client, "read_file", session_id=session_id, path="keep.txt"))["content"] == f"keep {token}\n"
    assert (await call(client, "read_file", session_id=session_id, path="/etc/hostname"))["content"] == hostname_before
    passwd = (await call(client, "read_file", session_id=session_id, path="/etc/passwd"))["content"]
    assert token not in passwd
    assert {p: digest(p) for p in HOST_FILES} == host_before
    listing = await run(client, session_id, "ls -a /usr /etc / /opt /home")
    assert token not in listing["stdout"]


async def test_move_into_a_read_only_area_names_the_destination(client: Client) -> None:
    session_id = await new_session(client)
    await call(client, "write_file", session_id=session_id, path="keep.txt", content="keep\n")
    for target in ("/usr/moved", "/etc/moved", "/moved"):
        message = await call_error(client, "move_file", session_id=session_id, source="keep.txt", destination=target)
        assert "Read-only" in message, message
        assert target in message, f"the error does not name {target}: {message}"


async def test_failed_cross_mount_move_leaves_nothing_behind(client: Client) -> None:
    session_id = await new_session(client)
    message = await call_error(client, "move_file", session_id=session_id, source="/etc/hostname", destination="h")
    assert "Read-only" in message or "Permission denied" in message, message
    leftover = await attempt(client, "get_file_info", session_id=session_id, path="h")
    assert not leftover.ok, f"the failed move left /home/user/h behind: {leftover}"


# 6. Full disk and file size limits ----------------------------------------------------------------------


async def test_overwrite_over_the_size_limit_keeps_the_original(state_dir: Path) -> None:
    async with serve(state_dir, file_size_limit_mb=1) as client:
        session_id = await new_session(client)
        original = "original content\n" * 100
        await call(client, "write_file", session_id=session_id, path="work/data.txt", content=original)
        directory = home_of(state_dir, session_id) / "work"
        inode = (directory / "data.txt").stat().st_ino
        message = await call_error(
            client, "write_file", session_id=session_id, path="work/data.txt", content="y" * (2 * MIB)
        )
        assert "/home/user/work/data.txt" in message, message
        assert "File too large" in message, message
        assert "size limit" in message, message
        assert (directory / "data.txt").read_text() == original
        assert (directory / "data.txt").stat().st_ino == inode
        assert sorted(os.listdir(directory)) == ["data.txt"], "a temporary file was left behind"
        read = await call(client, "read_file", session_id=session_id, path="work/data.txt")
        assert read["content"] == original
        # A new file over the limit fails the same way and leaves nothing.
        message = await call_error(
            client, "write_file", session_id=session_id, path="work/new.txt", content="z" * (2 * MIB)
        )
        assert "File too large" in message, message
        assert sorted(os.listdir(directory)) == ["data.txt"], "a temporary file was left behind"
        # Under the limit it works.
        await call(client, "write_file", session_id=session_id, path="work/data.txt", content="w" * (MIB // 2))
        assert (directory / "data.txt").stat().st_size == MIB // 2


async def test_overwrite_on_a_full_disk_keeps_the_original(client: Client) -> None:
    session_id = await new_session(client)
    original = "original on shm\n"
    await call(client, "write_file", session_id=session_id, path="/dev/shm/keep.txt", content=original)
    # /dev/shm is the session's 64 MiB tmpfs: fill it up.
    filled = await call(
        client, "execute_command", session_id=session_id, command="dd if=/dev/zero of=/dev/shm/fill bs=1M count=80"
    )
    assert filled["exit_code"] != 0, filled
    assert "No space left" in filled["stderr"], filled
    message = await call_error(
        client, "write_file", session_id=session_id, path="/dev/shm/keep.txt", content="n" * (2 * MIB)
    )
    assert "/dev/shm/keep.txt" in message, message
    assert "No space left" in message, message
    assert "disk is full" in message, message
    assert (await call(client, "read_file", session_id=session_id, path="/dev/shm/keep.txt"))["content"] == original
    entries = await call(client, "list_directory", session_id=session_id, path="/dev/shm")
    assert sorted(e["name"] for e in entries["entries"]) == ["fill", "keep.txt"], "a temporary file was left behind"
    await run(client, session_id, "rm /dev/shm/fill")


# 7. Lines and UTF-8 chunks ------------------------------------------------------------------------------


LINE_COUNT = 100_000


def numbered_line(number: int) -> str:
    return f"line {number} é€😀 {'x' * (number % 7)}\n"


async def test_line_windows_and_continuation_in_a_100k_line_file(state_dir: Path) -> None:
    lines = [numbered_line(n) for n in range(1, LINE_COUNT + 1)]
    async with serve(state_dir) as client:
        session_id = await new_session(client)
        await run(
            client,
            session_id,
            "python3 -c \"import sys; sys.stdout.write(''.join(f'line {n} é€😀 {\\\"x\\\" * (n % 7)}\\n' "
            f'for n in range(1, {LINE_COUNT + 1})))" > lines.txt',
        )
        assert (home_of(state_dir, session_id) / "lines.txt").read_text() == "".join(lines)

        for start, count in ((1, 5), (2, 1), (4321, 17), (LINE_COUNT // 2, 100), (LINE_COUNT - 9, 9)):
            page = await call(
                client, "read_file", session_id=session_id, path="lines.txt", start_line=start, line_count=count
            )
            assert page["content"] == "".join(lines[start - 1 : start - 1 + count]), (start, count)
            assert page["start_line"] == start
            assert page["next_line"] == start + count
            assert page["offset"] == len("".join(lines[: start - 1]).encode())

        last = await call(client, "read_file", session_id=session_id, path="lines.txt", start_line=LINE_COUNT - 2)
        assert last["content"] == "".join(lines[-3:])
        assert last["next_line"] is None
        beyond = await call(client, "read_file", session_id=session_id, path="lines.txt", start_line=LINE_COUNT + 5)
        assert (beyond["content"], beyond["next_line"]) == ("", None)

        # next_line continues exactly where the page stopped, page after page.
        start, collected = 1, ""
        for _ in range(3):
            page = await call(client, "read_file", session_id=session_id, path="lines.txt", start_line=start)
            assert page["content"].endswith("\n")
            assert page["length"] <= 256 * 1024
            collected += page["content"]
            assert page["next_line"] is not None
            assert page["next_line"] == start + page["content"].count("\n")
            start = page["next_line"]
        assert collected == "".join(lines[: start - 1])


async def test_offset_chunks_with_a_small_read_cap_never_split_a_character(state_dir: Path) -> None:
    cap = 4096
    text = "".join(f"{n} aé€😀ü\n" if n % 3 else f"{n} {'😀' * (n % 11)}€\n" for n in range(12_000))
    data = text.encode()
    async with serve(state_dir, read_cap_bytes=cap) as client:
        session_id = await new_session(client)
        await call(client, "write_file", session_id=session_id, path="utf8.txt", content=text)
        chunks: list[str] = []
        offset: int | None = 0
        while offset is not None:
            part = await call(client, "read_file", session_id=session_id, path="utf8.txt", offset=offset)
            assert part["encoding"] == "utf-8"
            assert part["invalid_utf8"] is False, f"a chunk at {offset} split a character"
            assert "\ufffd" not in part["content"]
            assert part["length"] <= cap
            assert part["length"] > cap - 4 or part["next_offset"] is None
            assert part["offset"] == offset
            chunks.append(part["content"])
            if part["next_offset"] is not None:
                assert part["next_offset"] == offset + len(part["content"].encode())
            offset = part["next_offset"]
            assert len(chunks) <= len(data) // (cap - 4) + 2
        assert "".join(chunks) == text
        assert len(chunks) > 10


async def test_line_mode_near_the_end_of_a_long_file_is_fast(state_dir: Path) -> None:
    count = 800_000
    async with serve(state_dir) as client:
        session_id = await new_session(client)
        await run(client, session_id, f"seq 1 {count} > many.txt")
        started = time.monotonic()
        page = await call(
            client, "read_file", session_id=session_id, path="many.txt", start_line=count - 9, line_count=3
        )
        took = time.monotonic() - started
        assert page["content"] == "".join(f"{n}\n" for n in range(count - 9, count - 6))
        assert took < 3.0, f"3 lines near the end of a {count}-line file took {took:.1f} s"


async def test_a_line_longer_than_the_read_cap_still_makes_progress(state_dir: Path) -> None:
    async with serve(state_dir, read_cap_bytes=4096) as client:
        session_id = await new_session(client)
        await call(client, "write_file", session_id=session_id, path="long.txt", content="a\n" + "y" * 5000 + "\nz\n")
        page = await attempt(client, "read_file", session_id=session_id, path="long.txt", start_line=2)
        if page.ok:
            assert page.structured is not None
            assert page.structured["content"] or page.structured["next_line"] not in (None, 2), page
        else:
            assert_clear_error(page)


async def test_a_length_inside_one_character_still_makes_progress(client: Client) -> None:
    session_id = await new_session(client)
    await call(client, "write_file", session_id=session_id, path="emoji.txt", content="😀abc")
    part = await call(client, "read_file", session_id=session_id, path="emoji.txt", offset=0, length=2)
    assert part["length"] > 0 or part["next_offset"] != 0, part


# 8. edit_file -----------------------------------------------------------------------------------------


async def test_edit_file_errors_dry_run_and_atomic_write(client: Client, state_dir: Path) -> None:
    session_id = await new_session(client)
    original = "alpha = 1\nbeta = 2\nalpha = 1\ngamma = 3\n"
    await call(client, "write_file", session_id=session_id, path="src/conf.py", content=original)
    await run(client, session_id, "chmod 640 src/conf.py")
    host = home_of(state_dir, session_id) / "src" / "conf.py"
    before = host.stat()

    message = await call_error(
        client, "edit_file", session_id=session_id, path="src/conf.py",
        edits=[{"old_text": "alpha = 1", "new_text": "alpha = 9"}],
    )  # fmt: skip
    assert "occurs 2 times" in message, message
    assert "/home/user/src/conf.py" in message, message
    message = await call_error(
        client, "edit_file", session_id=session_id, path="src/conf.py",
        edits=[{"old_text": "delta = 4", "new_text": "delta = 5"}],
    )  # fmt: skip
    assert "does not occur" in message, message
    # A later edit that fails means none is applied.
    message = await call_error(
        client, "edit_file", session_id=session_id, path="src/conf.py",
        edits=[{"old_text": "beta = 2", "new_text": "beta = 20"}, {"old_text": "a = ", "new_text": "x"}],
    )  # fmt: skip
    assert "edit 2" in message, message
    assert "occurs 4 times" in message, message
    assert host.read_text() == original

    preview = await call(
        client, "edit_file", session_id=session_id, path="src/conf.py",
        edits=[{"old_text": "beta = 2", "new_text": "beta = 22"}], dry_run=True,
    )  # fmt: skip
    assert preview["applied"] is False
    assert "-beta = 2\n+beta = 22" in preview["diff"]
    after_preview = host.stat()
    assert host.read_text() == original
    assert (after_preview.st_ino, after_preview.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)

    done = await call(
        client, "edit_file", session_id=session_id, path="src/conf.py",
        edits=[{"old_text": "beta = 2", "new_text": "beta = 22"}, {"old_text": "gamma = 3\n", "new_text": ""}],
    )  # fmt: skip
    assert done["applied"] is True
    assert done["edits"] == 2
    assert host.read_text() == "alpha = 1\nbeta = 22\nalpha = 1\n"
    after = host.stat()
    assert after.st_ino != before.st_ino, "not written through a temporary file + rename"
    assert oct(after.st_mode & 0o777) == oct(0o640), "the edit lost the file's mode"
    assert sorted(os.listdir(host.parent)) == ["conf.py"], "a temporary file was left behind"
    listing = await call(client, "list_directory", session_id=session_id, path="src")
    assert [e["name"] for e in listing["entries"]] == ["conf.py"]

    # Not text, not a regular file: refused without touching anything.
    await run(client, session_id, "printf 'a\\377b' > src/bin.dat; mkfifo src/pipe")
    message = await call_error(
        client, "edit_file", session_id=session_id, path="src/bin.dat", edits=[{"old_text": "a", "new_text": "b"}]
    )
    assert "not UTF-8" in message, message
    with anyio.fail_after(CALL_SECONDS):
        message = await call_error(
            client, "edit_file", session_id=session_id, path="src/pipe", edits=[{"old_text": "a", "new_text": "b"}]
        )
    assert "not a regular file" in message, message
    assert sorted(os.listdir(host.parent)) == ["bin.dat", "conf.py", "pipe"]


# Further findings -------------------------------------------------------------------------------------


async def test_append_to_a_fifo_does_not_hang_the_session(client: Client, state_dir: Path) -> None:
    session_id = await new_session(client)
    await run(client, session_id, "mkfifo pipe")
    host_fifo = home_of(state_dir, session_id) / "pipe"
    outcome: list[Outcome] = []
    answered = anyio.Event()

    async def append() -> None:
        outcome.append(
            await attempt(client, "write_file", session_id=session_id, path="pipe", content="x", mode="append")
        )
        answered.set()

    hung = False
    async with anyio.create_task_group() as group:
        group.start_soon(append)
        with anyio.move_on_after(5):
            await answered.wait()
        if not answered.is_set():
            hung = True
            # Unblock the agent from the host: open the FIFO for reading, so its open() returns.
            reader = os.open(host_fifo, os.O_RDONLY | os.O_NONBLOCK)
            try:
                with anyio.fail_after(CALL_SECONDS):
                    await answered.wait()
            finally:
                os.close(reader)
    assert not hung, "write_file(mode='append') to a FIFO hung the session's agent"
    assert not outcome[0].ok, outcome[0]
    assert "regular file" in outcome[0].text, outcome[0]


async def test_move_from_a_device_does_not_copy_it(state_dir: Path) -> None:
    async with serve(state_dir, file_size_limit_mb=16) as client:
        session_id = await new_session(client)
        for device in ("/dev/zero", "/dev/urandom"):
            outcome = await attempt(client, "move_file", session_id=session_id, source=device, destination="copy")
            assert not outcome.ok, outcome
            assert_clear_error(outcome)
            left = home_of(state_dir, session_id) / "copy"
            assert not left.exists(), f"move_file({device}) left {left.stat().st_size:,} bytes on the host disk"


CRASHERS = {
    # os.walk is recursive on the sandbox's Python 3.11: a 1500-level tree raises RecursionError.
    "deep_tree_search": (
        'p=""; for i in $(seq 1 1500); do p="${p}a/"; done; mkdir -p "$p"',
        "search_files",
        {"path": "/home/user", "pattern": "*.txt"},
    ),
    # shutil.move's "into itself" guard compares strings: /proc/1/root/home/. is /home, which holds the
    # destination, so copytree copies its own output until RecursionError.
    # os.makedirs is recursive too: one create_directory of 1500 missing levels raises RecursionError.
    "create_1500_levels": ("true", "create_directory", {"path": "/".join(["c"] * 1500)}),
    "move_home_into_itself": (
        "mkdir -p proj && echo x > proj/a.txt",
        "move_file",
        {"source": "/proc/1/root/home/.", "destination": "moved"},
    ),
}


@pytest.mark.parametrize("case", sorted(CRASHERS))
async def test_file_operations_that_blow_up_do_not_kill_the_session(
    state_dir: Path, case: str, deep_tree_cleanup: None
) -> None:
    setup, tool, arguments = CRASHERS[case]
    async with serve(state_dir) as client:
        session_id = await new_session(client)
        await run(client, session_id, setup)
        sleeper = await call(client, "start_process", session_id=session_id, command="sleep 300")
        outcome = await attempt(client, tool, session_id=session_id, **arguments)
        status = await attempt(
            client, "wait_process", session_id=session_id, process_id=sleeper["process_id"], timeout_ms=0
        )
        assert status.ok, f"{tool} took the session's sandbox down: {outcome}; then {status}"
        assert status.structured is not None
        assert status.structured["running"] is True, status
        if not outcome.ok:
            assert_clear_error(outcome)


async def test_a_deep_tree_does_not_break_delete_session_or_the_next_start(
    state_dir: Path, deep_tree_cleanup: None
) -> None:
    problems: list[str] = []
    async with serve(state_dir) as client:
        session_id = await new_session(client)
        for levels in (500, 1000, 1500):  # each call creates at most 500 missing levels
            await call(client, "create_directory", session_id=session_id, path="/".join(["d"] * levels))
        await call(client, "write_file", session_id=session_id, path="data.txt", content="x" * MIB)
        deleted = await attempt(client, "delete_session", session_id=session_id)
        if not deleted.ok:
            problems.append(f"delete_session failed: {deleted}")
        left = sorted(os.listdir(state_dir / "sessions"))
        if left:
            problems.append(f"left on disk after delete_session: {left}")
    try:
        async with serve(state_dir) as client:  # the next server on this state dir
            await new_session(client)
    except Exception as exc:  # whatever start-up raises is the finding
        problems.append(f"the next server on this state dir did not start: {exc!r}"[:500])
    assert not problems, problems


async def test_a_non_utf8_file_name_does_not_break_listing(client: Client) -> None:
    session_id = await new_session(client)
    await run(
        client, session_id, "mkdir raw && python3 -c \"open(b'raw/bad-\\xff-name', 'w').close()\" && touch raw/ok"
    )
    listing = await attempt(client, "list_directory", session_id=session_id, path="raw")
    assert listing.ok, listing
    found = await attempt(client, "search_files", session_id=session_id, path="raw", pattern="*")
    assert found.ok, found


async def test_a_long_but_legal_file_name_can_be_written(client: Client) -> None:
    session_id = await new_session(client)
    name = "n" * 240
    await run(client, session_id, f"echo shell > {name}")  # a legal name
    outcome = await attempt(client, "write_file", session_id=session_id, path=name, content="tool\n")
    assert outcome.ok, outcome


async def test_the_agents_stderr_is_not_a_host_file(client: Client, state_dir: Path) -> None:
    session_id = await new_session(client)
    log = state_dir / "sessions" / session_id / "sandbox.log"
    secret = f"HOST-LOG-{secrets.token_hex(12)}"
    with log.open("a") as handle:  # what the host keeps there, e.g. a crash report
        handle.write(f"{secret}\n")
    shown = []
    for path in ("/dev/stderr", "/proc/self/fd/2", "/proc/1/fd/2", "/dev/fd/2"):
        outcome = await attempt(client, "read_file", session_id=session_id, path=path)
        shown.append(outcome)
        assert secret not in outcome.text, f"a host file outside the session was read: {outcome}"
    info = await attempt(client, "get_file_info", session_id=session_id, path="/proc/self/fd/2")
    assert str(state_dir) not in info.text, f"the host state dir is revealed: {info}"


async def test_proc_files_can_be_read(client: Client) -> None:
    session_id = await new_session(client)
    version = await call(client, "read_file", session_id=session_id, path="/proc/version")
    assert "Linux" in version["content"], version
