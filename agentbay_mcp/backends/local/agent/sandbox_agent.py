"""The in-sandbox agent: one per session, running inside the session's bubblewrap sandbox.

Standard library only: it runs under the sandbox's own Python (usually /usr/bin/python3) with this
directory bound read-only. It is pid 1 of the sandbox's pid namespace (bwrap --as-pid-1), so no
process in the sandbox can kill it (the kernel drops signals to a namespace's init that it does not
handle) and, when it exits, the kernel kills everything left in the sandbox.

This file is the entry point: it takes the control socket and the config, hardens the process and
sets the limits every process of the session inherits, then runs the event loop. The parts:

    framing.py       the wire: length-prefixed JSON frames over the socket passed in the environment
    agent_loop.py    the event loop and the one dispatch table of every operation
    process_ops.py   commands (through keepers, keeper.py) and their output (proc_state.py)
    file_ops.py      files, resolved by the kernel inside the sandbox
    desktop_ops.py   the desktop (display_stack.py, x_windows.py, x_input.py, desktop_apps.py)
    proc_table.py    the sandbox's process table, from /proc
    error_names.py   the names of the errors the agent reports (the host maps each)

The host treats everything it receives as untrusted (a command in the sandbox could replace us).
"""

from __future__ import annotations

import json
import os
import resource
import socket
import sys
from typing import TYPE_CHECKING

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # -I leaves the script's dir off sys.path
if TYPE_CHECKING:  # the type checker sees the package; the sandbox runs these files as top-level modules
    from agentbay_mcp.backends.local.agent import keeper
    from agentbay_mcp.backends.local.agent.agent_loop import Agent
else:
    import keeper
    from agent_loop import Agent


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
