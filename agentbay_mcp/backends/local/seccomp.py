"""The seccomp filter every sandbox runs under: nothing in a session may signal its agent.

The agent is pid 1 of the sandbox and runs with the same uid as the session's commands, so the
kernel's permission check for signals (same uid) lets a command signal it. The kernel already drops
signals to a pid namespace's init that init has no handler for (SIGKILL and SIGSTOP included), but
the agent handles a few (SIGCHLD, SIGTERM, the desktop's SIGALRM deadline). This filter makes every
way of naming pid 1 as a signal target fail with EPERM: kill, tkill, tgkill, rt_sigqueueinfo,
rt_tgsigqueueinfo, and pidfd_open (a pidfd is also what pidfd_getfd needs). pidfd_send_signal is
refused outright: it also takes a /proc/<pid> directory fd, which a filter cannot tell from any
other fd (a flood of SIGALRM through it once stalled desktop calls). Programs that probe it (Go's
runtime) fall back to kill.
Tracing, /proc/1/mem and /proc/1/fd are closed by the agent itself (it is not dumpable); nested user
namespaces by bwrap's --disable-userns.

It also refuses set-uid and set-gid bits, with EPERM: in chmod, fchmod, fchmodat, fchmodat2, mknod,
mknodat, creat, and open/openat when they create (O_CREAT, O_TMPFILE). In the sandbox the bits do
nothing (nosuid, no_new_privs), but an `rw` workspace stores the sandbox user's files as the host
directory's owner: a set-uid file made there would run as that owner (root, for a root-owned
project) for anyone on the host. openat2 (its mode is behind a pointer, which a filter cannot read)
and io_uring_setup (io_uring opens files with a mode of its own) are refused with ENOSYS: libc and
programs that probe them fall back to openat and plain system calls.

The program is classic BPF handed to bwrap (--seccomp FD), which loads it right before it starts
the agent; every process in the sandbox inherits it and none can remove it. It is built here, in
pure Python, for the host's architecture and its 32-bit compat one; x32 system calls are refused.
"""

from __future__ import annotations

import errno
import platform
import struct
from dataclasses import dataclass

# Classic BPF opcodes (linux/filter.h) and seccomp return values (linux/seccomp.h).
_LD_W_ABS = 0x20
_JEQ_K = 0x15
_JGE_K = 0x35
_RET_K = 0x06
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_OFFSET_NR = 0
_OFFSET_ARCH = 4
_OFFSET_ARG0_LOW = 16  # args[0] is a u64; every supported architecture is little-endian
_JSET_K = 0x45
_SET_ID_BITS = 0o6000
_CREATES = 0o100 | 0o20000000  # O_CREAT | __O_TMPFILE (the same on every supported architecture)
#: openat2 and io_uring_setup: the unified numbers, the same on every supported architecture.
_UNFILTERABLE = (437, 425)
_FCHMODAT2 = 452
#: pidfd_send_signal has this number on every supported architecture (the unified table).
_PIDFD_SEND_SIGNAL = 424
_X32_SYSCALL_BIT = 0x40000000

#: pid 1 as the first argument of these is refused (names of the syscalls, for the docs and tests).
GUARDED_SYSCALLS = ("kill", "tkill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo", "pidfd_open")


@dataclass(frozen=True)
class _Arch:
    audit: int
    numbers: tuple[int, ...]  # in the order of GUARDED_SYSCALLS
    #: System calls taking a mode: number -> where its set-id bits are checked ("mode1": args[1] is
    #: the mode; "creates1": args[1] are flags which, if they create, make args[2] the mode; ...).
    modes: dict[int, str]
    refuse_x32: bool = False


def _modes(
    chmod: int | None, fchmod: int, fchmodat: int, openat: int, mknodat: int, legacy: dict[int, str]
) -> dict[int, str]:
    found = {fchmod: "mode1", fchmodat: "mode2", _FCHMODAT2: "mode2", openat: "creates2", mknodat: "mode2", **legacy}
    if chmod is not None:
        found[chmod] = "mode1"
    return found


# Legacy calls: open (flags args[1], mode args[2]), creat and mknod (mode args[1]).
_X86_64 = _Arch(
    0xC000003E,
    (62, 200, 234, 129, 297, 434),
    _modes(90, 91, 268, 257, 259, {2: "creates1", 85: "mode1", 133: "mode1"}),
    refuse_x32=True,
)
_I386 = _Arch(
    0x40000003, (37, 238, 270, 178, 335, 434), _modes(15, 94, 306, 295, 297, {5: "creates1", 8: "mode1", 14: "mode1"})
)
_AARCH64 = _Arch(0xC00000B7, (129, 130, 131, 138, 240, 434), _modes(None, 52, 53, 56, 33, {}))
_ARM = _Arch(
    0x40000028, (37, 238, 268, 178, 363, 434), _modes(15, 94, 333, 322, 324, {5: "creates1", 8: "mode1", 14: "mode1"})
)

#: Host machine -> (native, compat) architectures.
_HOSTS = {"x86_64": (_X86_64, _I386), "amd64": (_X86_64, _I386), "aarch64": (_AARCH64, _ARM), "arm64": (_AARCH64, _ARM)}


def supported(machine: str | None = None) -> bool:
    """Whether a filter can be built for this host's architecture."""
    return (machine or platform.machine()).lower() in _HOSTS


def program(machine: str | None = None) -> bytes:
    """The filter as an array of `struct sock_filter` (what bwrap --seccomp reads)."""
    arches = _HOSTS.get((machine or platform.machine()).lower())
    if arches is None:
        raise ValueError(f"no seccomp filter for machine {machine or platform.machine()!r}")
    # Instructions with symbolic jump targets, resolved below: (code, true label, false label, k).
    code: list[tuple[int, str | None, str | None, int]] = [(_LD_W_ABS, None, None, _OFFSET_ARCH)]
    for arch in arches:
        code.append((_JEQ_K, f"arch{arch.audit}", None, arch.audit))
    code.append((_RET_K, None, None, _RET_ALLOW))  # an architecture the host cannot run anyway
    labels: dict[str, int] = {}
    for arch in arches:
        labels[f"arch{arch.audit}"] = len(code)
        code.append((_LD_W_ABS, None, None, _OFFSET_NR))
        if arch.refuse_x32:
            code.append((_JGE_K, "enosys", None, _X32_SYSCALL_BIT))
        code.append((_JEQ_K, "eperm", None, _PIDFD_SEND_SIGNAL))
        for number in _UNFILTERABLE:
            code.append((_JEQ_K, "enosys", None, number))
        for number in arch.numbers:
            code.append((_JEQ_K, "check_pid", None, number))
        for number, label in sorted(arch.modes.items()):
            code.append((_JEQ_K, label, None, number))
        code.append((_RET_K, None, None, _RET_ALLOW))
    labels["check_pid"] = len(code)
    code.append((_LD_W_ABS, None, None, _OFFSET_ARG0_LOW))  # the kernel reads these pids as 32-bit ints
    code.append((_JEQ_K, "eperm", None, 1))
    code.append((_RET_K, None, None, _RET_ALLOW))
    # Flags and modes are 32-bit ints to the kernel: the low word of the argument is all of it.
    for index in (1, 2):
        labels[f"creates{index}"] = len(code)
        code.append((_LD_W_ABS, None, None, _OFFSET_ARG0_LOW + 8 * index))
        code.append((_JSET_K, f"mode{index + 1}", None, _CREATES))
        code.append((_RET_K, None, None, _RET_ALLOW))
    for index in (1, 2, 3):
        labels[f"mode{index}"] = len(code)
        code.append((_LD_W_ABS, None, None, _OFFSET_ARG0_LOW + 8 * index))
        code.append((_JSET_K, "eperm", None, _SET_ID_BITS))
        code.append((_RET_K, None, None, _RET_ALLOW))
    labels["eperm"] = len(code)
    code.append((_RET_K, None, None, _RET_ERRNO | errno.EPERM))
    labels["enosys"] = len(code)
    code.append((_RET_K, None, None, _RET_ERRNO | errno.ENOSYS))
    out = bytearray()
    for index, (op, true_label, false_label, k) in enumerate(code):
        jt = labels[true_label] - index - 1 if true_label else 0
        jf = labels[false_label] - index - 1 if false_label else 0
        if not (0 <= jt < 256 and 0 <= jf < 256):
            raise AssertionError("seccomp jump out of range")
        out += struct.pack("=HBBI", op, jt, jf, k)
    return bytes(out)
