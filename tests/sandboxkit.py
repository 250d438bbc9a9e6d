"""The unit's sandbox, applied by hand where systemd is not PID 1 (containers, CI).

This container has systemd-analyze but no running systemd, so `systemd-run -p ...` and
systemd-nspawn are out of reach. What systemd would enforce from systemd/kiosk.service is
rebuilt here from the unit itself with the same kernel mechanisms:

* ``SystemCallFilter=``: the allow-list, expanded with ``systemd-analyze syscall-filter``,
  loaded as a seccomp filter (libseccomp through ctypes) whose default kills the process
  with SIGSYS, as systemd's does without ``SystemCallErrorNumber=``;
* ``RestrictAddressFamilies=``: a second filter, socket() of any other family fails with
  EAFNOSUPPORT, as under systemd;
* ``RestrictNamespaces=yes``: unshare() and setns() fail with EPERM;
* ``MemoryDenyWriteExecute=yes``: the kernel's PR_SET_MDWE (which newer systemd uses too);
* ``NoNewPrivileges=`` and ``CapabilityBoundingSet=`` (empty): setpriv. The user stays the
  test's (the interpreter may live under a 0700 home that no other user can reach): as
  root, without a single capability. Root's one difference that matters here: SQLite
  fchown()s its journal when euid is 0 (never as ``User=kiosk``), so for uid 0 @chown is
  allowed back.

Not reproduced: the mount namespace (ProtectSystem=, PrivateTmp=, ProtectProc=...), the
device cgroup (DevicePolicy=) and LoadCredential='s ramfs (the test gives the daemon a
credentials directory of its own instead).

Run as a script it is the wrapper: ``python sandboxkit.py SYSCALLS_FILE FAMILIES -- argv...``
applies the filters and MDWE to itself, then execs ``argv``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import re
import subprocess
import sys
from pathlib import Path

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_EQ, SCMP_CMP_GT = 4, 6
PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 1
AF_MAX = 46
FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16, "AF_PACKET": 17}


def scmp_errno(code: int) -> int:
    """libseccomp's SCMP_ACT_ERRNO(code)."""
    return 0x00050000 | (code & 0xFFFF)


class ArgCmp(ctypes.Structure):
    """libseccomp's ``struct scmp_arg_cmp``."""

    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("datum_a", ctypes.c_uint64),
                ("datum_b", ctypes.c_uint64)]  # fmt: skip


def libseccomp() -> ctypes.CDLL | None:
    """libseccomp, or None where it is not installed."""
    name = ctypes.util.find_library("seccomp")
    return ctypes.CDLL(name, use_errno=True) if name else None


def unit_values(unit: Path, key: str) -> list[str]:
    """Every value of ``key=`` in the unit, in order."""
    return [line.split("=", 1)[1].strip() for line in unit.read_text().splitlines() if line.startswith(key + "=")]


def _group(name: str, seen: set[str]) -> set[str]:
    """The system calls of one ``@group`` (nested groups expanded) or a plain name."""
    if not name.startswith("@"):
        return {name}
    if name in seen:
        return set()
    seen.add(name)
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager", name],
                         capture_output=True, text=True, timeout=30, check=True).stdout  # fmt: skip
    calls: set[str] = set()
    for line in out.splitlines()[1:]:
        word = line.strip()
        if word and not word.startswith("#"):
            calls |= _group(word, seen)
    return calls


def allowed_syscalls(unit: Path) -> set[str]:
    """The unit's SystemCallFilter= allow-list, as systemd builds it (later "~" lines remove)."""
    allowed: set[str] = set()
    for value in unit_values(unit, "SystemCallFilter"):
        deny = value.startswith("~")
        names: set[str] = set()
        for word in value.lstrip("~").split():
            names |= _group(word, set())
        allowed = allowed - names if deny else allowed | names
    return allowed


def allowed_families(unit: Path) -> list[int]:
    """The unit's RestrictAddressFamilies= as numbers."""
    (value,) = unit_values(unit, "RestrictAddressFamilies")
    return [FAMILIES[name] for name in value.split()]


def _rule(lib: ctypes.CDLL, ctx: int, action: int, name: str, *cmps: ArgCmp) -> None:
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr == -1:  # unknown to libseccomp (a newer call): systemd skips these too
        return
    arr = (ArgCmp * max(1, len(cmps)))(*cmps)
    lib.seccomp_rule_add_array(ctypes.c_void_p(ctx), ctypes.c_uint32(action), nr, len(cmps), arr)


def apply(syscalls: list[str], families: list[int]) -> None:
    """Confine this process (and what it execs) as the unit would."""
    lib = libseccomp()
    if lib is None:
        raise SystemExit("libseccomp is not installed")
    lib.seccomp_init.restype = ctypes.c_void_p
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise SystemExit(f"PR_SET_MDWE failed: {os.strerror(ctypes.get_errno())}")
    # Filter 1: address families and namespaces (default allow).
    ctx = lib.seccomp_init(ctypes.c_uint32(SCMP_ACT_ALLOW))
    nope = scmp_errno(errno.EAFNOSUPPORT)
    for fam in range(AF_MAX + 1):
        if fam not in families:
            _rule(lib, ctx, nope, "socket", ArgCmp(0, SCMP_CMP_EQ, fam, 0))
    _rule(lib, ctx, nope, "socket", ArgCmp(0, SCMP_CMP_GT, AF_MAX, 0))
    for name in ("unshare", "setns"):
        _rule(lib, ctx, scmp_errno(errno.EPERM), name)
    if lib.seccomp_load(ctypes.c_void_p(ctx)) != 0:
        raise SystemExit("seccomp_load (families) failed")
    # Filter 2: the system-call allow-list; anything else is SIGSYS.
    ctx = lib.seccomp_init(ctypes.c_uint32(SCMP_ACT_KILL_PROCESS))
    for name in syscalls:
        _rule(lib, ctx, SCMP_ACT_ALLOW, name)
    if lib.seccomp_load(ctypes.c_void_p(ctx)) != 0:
        raise SystemExit("seccomp_load (allow-list) failed")


def confined(argv: list[str], unit: Path, workdir: Path) -> list[str]:
    """The command line that runs ``argv`` inside the unit's sandbox (files land in ``workdir``)."""
    listing = workdir / "syscalls.txt"
    calls = allowed_syscalls(unit) | (_group("@chown", set()) if os.getuid() == 0 else set())
    listing.write_text("\n".join(sorted(calls)))
    user = ["--bounding-set=-all"] if os.getuid() == 0 else []
    families = ",".join(str(f) for f in allowed_families(unit))
    return ["setpriv", *user, "--inh-caps=-all", "--no-new-privs",
            sys.executable, __file__, str(listing), families, "--", *argv]  # fmt: skip


def main() -> None:
    """The wrapper: confine, then exec."""
    listing, families, sep, *argv = sys.argv[1:]
    assert sep == "--" and argv
    apply(Path(listing).read_text().split(), [int(f) for f in families.split(",")])
    os.execv(argv[0], argv)


SIGSYS_LINE = re.compile(r"Bad system call|SIGSYS")

if __name__ == "__main__":
    main()
