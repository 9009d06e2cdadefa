"""Workspaces benchmark (numbers printed, not asserted). Needs a root server (id-mapped mounts).

Through a real stdio server (--pool-size 0, so every session starts its sandbox in create_session), in
the same run and round-robin:
- create_session + the first `echo hi`: an empty session, and one showing a 100 MB / 10,000-file
  project in each mode (ro, rw, overlay); the workspace's cost is the difference to the empty one;
- the first command that reads the whole workspace (`find | wc -l`, 10,000 files through the mounts);
- workspace_diff of an overlay session that changed 10 of the 10,000 files (and of one that changed
  none), against the raw baseline: `git diff` of the same 10 changes in a git checkout on the host.

Run: .venv/bin/python bench/bench_workspaces.py [--rounds N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from stdio_client import RawStdioServer

FILES = 10_000
FILE_BYTES = 10 * 1024  # 10,000 x 10 KB = 100 MB
CHANGED = 10


def make_project(root: Path) -> Path:
    """10,000 text files of 10 KB in 100 directories, committed to git (for the baseline)."""
    line = b"the quick brown fox jumps over the lazy dog 0123456789\n"
    body = (line * (FILE_BYTES // len(line) + 1))[:FILE_BYTES]
    for index in range(FILES):
        directory = root / f"d{index % 100:02d}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{index:05d}.txt").write_bytes(body)
    git = ["git", "-C", str(root), "-c", "user.name=b", "-c", "user.email=b@b"]
    subprocess.run([*git, "init", "-q"], check=True, timeout=60)
    subprocess.run([*git, "add", "-A"], check=True, timeout=300)
    subprocess.run([*git, "commit", "-qm", "x"], check=True, timeout=300)
    return root


def timed(fn: object, *args: object, **kwargs: object) -> tuple[float, object]:
    started = time.perf_counter()
    result = fn(*args, **kwargs)  # type: ignore[operator]
    return (time.perf_counter() - started) * 1000, result


def summary(samples: list[float]) -> str:
    return f"median {statistics.median(samples):7.1f} ms  min {min(samples):7.1f}  max {max(samples):7.1f}"


def workspace_diff(server: RawStdioServer, session_id: str) -> dict[str, object]:
    """The structured result (RawStdioServer.tool takes the tool's name as `name`, as this tool's argument is)."""
    result = server.request(
        "tools/call", {"name": "workspace_diff", "arguments": {"session_id": session_id, "name": "overlay"}}
    )
    if result.get("isError"):
        raise RuntimeError(result["content"])
    return dict(result["structuredContent"])


def create_and_echo(server: RawStdioServer, workspaces: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    arguments = {"image_id": "code_latest", **({"workspaces": workspaces} if workspaces else {})}
    session_id = server.tool("create_session", **arguments)["session_id"]
    server.tool("execute_command", session_id=session_id, command="echo hi")
    return (time.perf_counter() - started) * 1000, session_id


def bench_create(server: RawStdioServer, modes: tuple[str, ...], rounds: int) -> None:
    """create_session + `echo`, empty and with each mode, round-robin; then a command reading it all."""
    kinds: dict[str, list[str]] = {"empty session": [], **{f"workspace {mode}": [mode] for mode in modes}}
    create: dict[str, list[float]] = {kind: [] for kind in kinds}
    walk: dict[str, list[float]] = {kind: [] for kind in kinds if kind != "empty session"}
    for round_ in range(rounds + 2):  # two warm-up rounds
        for kind, names in kinds.items():
            elapsed, session_id = create_and_echo(server, names)
            if names:
                command = f"find /workspace/{names[0]} -type f | wc -l"
                ms, _ = timed(server.tool, "execute_command", session_id=session_id, command=command)
                if round_ >= 2:
                    walk[kind].append(ms)
            if round_ >= 2:
                create[kind].append(elapsed)
            server.tool("delete_session", session_id=session_id)
    print(f"\ncreate_session + first `echo` ({rounds} rounds, --pool-size 0, same server):")
    empty = statistics.median(create["empty session"])
    for kind, samples in create.items():
        extra = statistics.median(samples) - empty
        print(f"  {kind:20s} {summary(samples)}   workspace cost {extra:+6.1f} ms")
    print("\nfirst command reading the whole workspace (find | wc -l over 10,000 files):")
    for kind, samples in walk.items():
        print(f"  {kind:20s} {summary(samples)}")


def bench_diff(server: RawStdioServer, rounds: int) -> list[float]:
    """workspace_diff of an overlay session with nothing changed, then with CHANGED files changed."""
    session_id = server.tool("create_session", image_id="code_latest", workspaces=["overlay"])["session_id"]
    unchanged = [timed(workspace_diff, server, session_id)[0] for _ in range(5)]
    edit = " && ".join(f"echo changed >> /workspace/overlay/d{i:02d}/f{i:05d}.txt" for i in range(CHANGED))
    server.tool("execute_command", session_id=session_id, command=edit)
    samples: list[float] = []
    result: object = None
    for _ in range(rounds):
        ms, result = timed(workspace_diff, server, session_id)
        samples.append(ms)
    assert isinstance(result, dict)
    changed = len(result["changes"])
    print(f"\nworkspace_diff, overlay, {FILES:,} files, {changed} changed:  {summary(samples)}")
    print(f"workspace_diff, overlay, nothing changed:           {summary(unchanged)}")
    return samples


def git_baseline(project: Path, rounds: int) -> list[float]:
    """The raw baseline: the same changes in the host checkout, `git diff`."""
    for i in range(CHANGED):
        with (project / f"d{i:02d}" / f"f{i:05d}.txt").open("a") as handle:
            handle.write("changed\n")
    argv = ["git", "-C", str(project), "diff"]
    samples = [timed(subprocess.run, argv, capture_output=True, check=True, timeout=60)[0] for _ in range(rounds)]
    print(f"raw baseline: git diff, same checkout and changes:  {summary(samples)}")
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("workspaces need a root server: run as root")
        return 1
    root = Path(tempfile.mkdtemp(prefix="bench-ws-"))
    root.chmod(0o711)
    try:
        print(f"making the project: {FILES:,} files, {FILES * FILE_BYTES / 2**20:.0f} MB ...", flush=True)
        project = make_project(root / "project")
        modes = ("ro", "rw", "overlay")
        env = {"AGENTBAY_MCP_WORKSPACES": ",".join(f"{mode}={project}:{mode}" for mode in modes)}
        server = RawStdioServer(root / "state", "--pool-size", "0", env=env)
        try:
            bench_create(server, modes, args.rounds)
            diff = bench_diff(server, args.rounds)
        finally:
            server.close_stdin()
            server.process.wait(timeout=30)
            server.stop()
        git = git_baseline(project, args.rounds)
        ratio = statistics.median(diff) / statistics.median(git)
        print(f"workspace_diff / git diff: {ratio:.1f}x (the MCP round trip included)")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
