"""What the installed bubblewrap can do (asked once per binary)."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess


@functools.cache
def supports_disable_userns(bwrap: str) -> bool:
    """Whether this bwrap has --disable-userns (0.8.0 and later). Blocks: call it off the event loop."""
    try:
        probe = subprocess.Popen(
            [bwrap, "--help"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            process_group=0,  # whatever it starts goes with it on a timeout
        )
    except OSError:
        return False
    try:
        shown, _ = probe.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(probe.pid, signal.SIGKILL)
        probe.communicate()
        return False
    return b"--disable-userns" in shown
