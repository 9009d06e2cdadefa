"""Contexts benchmark on the local backend (numbers printed, not asserted).

In one run, against one backend with real sandboxes (and its disk quota, where the host has one):
- create_session + the first `echo hi` with a 100 MB / 10,000-file context mounted, against the same
  for an empty session, round-robin (medians and the ratio);
- sync_context of that context from a running session (the symlink-safe walker, in Python): the first
  sync copies every byte, later ones of the unchanged tree hard-link each file from the last version
  (size, mtime and mode unchanged); both against a raw `cp -a` of the same tree (C, checking nothing);
- delete_session with the context (stop, then the ending's sync) against deleting an empty session.

Run: .venv/bin/python bench/bench_contexts.py [--rounds N] [--files 10000] [--mb 100]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

from agentbay_mcp.backends.local import LocalBackend
from agentbay_mcp.testing.contexts import mount_of, sh

#: Daytona's published create-to-first-command median (bench_create.py quotes it too), for scale.
DAYTONA_CREATE_TO_FIRST_COMMAND_MS = 110.0


async def timed(work: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await work()
    return (time.perf_counter() - started) * 1000


def line(label: str, samples: list[float]) -> float:
    median = statistics.median(samples)
    print(f"  {label:<44} median {median:9.1f} ms   min {min(samples):9.1f}   max {max(samples):9.1f}")
    return median


async def main(rounds: int, files: int, megabytes: int) -> None:
    root = Path(tempfile.mkdtemp(prefix="bench-contexts-"))
    os.chmod(root, 0o711)  # the sandbox user traverses to the state dir
    try:
        async with anyio.create_task_group() as group:
            backend = LocalBackend(root / "state")
            await backend.start(group)
            print(
                f"disk quota: {backend.disk_quota.size_mb if backend.disk_quota else 'none'} MB; "
                f"isolation: {backend.sandbox_options.isolation}"
            )
            mount = await mount_of(backend, "bench", "big", "/home/user/big")
            size = megabytes * 1024 * 1024 // files
            maker = await backend.create_session(image_id="code_latest", labels={}, owner="b", contexts=[mount])
            fill = (
                f"cd big && for d in $(seq 0 {files // 100 - 1}); do mkdir d$d; (cd d$d && "
                f"head -c {size * 100} /dev/urandom | split -b {size} -a 3 - f); done; find . -type f | wc -l"
            )
            print(f"filling the context: {(await sh(backend, maker.session_id, fill)).strip()} files of {size} bytes")
            first_sync = await timed(lambda: backend.contexts.sync_context(maker.session_id))
            context = await backend.contexts.get_context("bench", "big", create=False)
            print(
                f"context: {context.file_count} files, {(context.size_bytes or 0) / 2**20:.1f} MB; "
                f"first sync {first_sync:.0f} ms"
            )

            empty_ms: list[float] = []
            full_ms: list[float] = []
            delete_empty: list[float] = []
            delete_full: list[float] = []
            for _ in range(rounds):
                for samples, deletes, contexts in ((empty_ms, delete_empty, []), (full_ms, delete_full, [mount])):
                    started = time.perf_counter()
                    record = await backend.create_session(
                        image_id="code_latest", labels={}, owner="b", contexts=contexts
                    )
                    assert (await sh(backend, record.session_id, "echo hi")) == "hi\n"
                    samples.append((time.perf_counter() - started) * 1000)
                    deletes.append(await timed(lambda r=record: backend.delete_session(r.session_id)))  # type: ignore[misc]

            sync_ms = [await timed(lambda: backend.contexts.sync_context(maker.session_id)) for _ in range(rounds)]
            source = root / "state" / "sessions" / maker.session_id / "home" / "big"
            raw_ms = []
            for index in range(rounds):
                target = root / f"raw-{index}"
                started = time.perf_counter()
                await anyio.run_process(["cp", "-a", str(source), str(target)])
                raw_ms.append((time.perf_counter() - started) * 1000)
                await anyio.to_thread.run_sync(shutil.rmtree, target)
            await backend.delete_session(maker.session_id)

            print(f"\n{rounds} rounds, {files} files / {megabytes} MB:")
            empty = line("create + echo, empty session", empty_ms)
            full = line("create + echo, with the context", full_ms)
            sync = line("sync_context, tree unchanged (links)", sync_ms)
            raw = line("raw cp -a of the same tree (floor)", raw_ms)
            gone_empty = line("delete_session, empty", delete_empty)
            gone_full = line("delete_session, with the context (syncs)", delete_full)
            print(f"\n  create with context / empty:   {full / empty:6.2f}x  (+{full - empty:.0f} ms)")
            print(
                f"  create with context / Daytona: {full / DAYTONA_CREATE_TO_FIRST_COMMAND_MS:6.2f}x "
                f"(its {DAYTONA_CREATE_TO_FIRST_COMMAND_MS:.0f} ms create-to-first-command, no context)"
            )
            print(f"  first sync / raw cp -a:        {first_sync / raw:6.2f}x  (every byte copied)")
            print(f"  unchanged sync / raw cp -a:    {sync / raw:6.2f}x")
            print(f"  delete with context / empty:   {gone_full / gone_empty:6.2f}x")
            await backend.close()
            group.cancel_scope.cancel()
    finally:
        await anyio.run_process(["rm", "-rf", "--one-file-system", str(root)], check=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--mb", type=int, default=100)
    arguments = parser.parse_args()
    anyio.run(main, arguments.rounds, arguments.files, arguments.mb)
