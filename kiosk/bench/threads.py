"""Where a benchmark process spends its CPU: seconds per thread, by the thread's name; and
the machine the figures were measured on.

Linux keeps each thread's user and system time in ``/proc/self/task/<tid>/stat`` (in clock
ticks, 10 ms); Python threads are named through their native id, threads started by a
library (PortAudio's, a BLAS pool) by the kernel's name for them.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
import threading
from pathlib import Path
from typing import Any

_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def _names() -> dict[int, str]:
    out: dict[int, str] = {}
    for t in threading.enumerate():
        if t.native_id is not None:
            out[t.native_id] = "loop" if t is threading.main_thread() else t.name
    return out


def thread_cpu() -> dict[str, float]:
    """CPU seconds (user + system) so far of every live thread of this process, by name
    (threads of one name summed: the pool of ``asyncio.to_thread`` workers)."""
    names = _names()
    out: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = (task / "stat").read_text()
            # The command name is in parentheses and may hold spaces: count fields after it.
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
            tid = int(task.name)
            name = names.get(tid) or (task / "comm").read_text().strip()
            name = re.sub(r"_\d+$", "", name)  # a pool's workers (asyncio_0, asyncio_1): one line
            out[name] = out.get(name, 0.0) + ticks * _TICK_S
    return out


def difference(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    """CPU seconds per thread between two :func:`thread_cpu` snapshots (threads that ended are gone)."""
    return {k: round(v - before.get(k, 0.0), 3) for k, v in sorted(after.items(), key=lambda kv: -kv[1])}


def machine() -> dict[str, Any]:
    """CPU model, core count, memory and Python: what the numbers were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model")):
                model = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
    return {
        "cpu": model or platform.processor() or platform.machine(),
        "nproc": len(os.sched_getaffinity(0)),
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "arch": platform.machine(),
        "python": platform.python_version(),
    }
