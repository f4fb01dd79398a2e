"""CPU seconds and memory of processes, read from /proc (Linux).

A process's CPU is user + system time of all its threads. For a server that forks (PostgreSQL's
postmaster and its backends), ``tree_cpu`` adds the live children's own time to the parent's and
the time of children it has already reaped (``cutime``/``cstime``), so a backend that exits between
two readings is still counted once.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        # the command name (field 2) may hold spaces; everything after its ")" is space-separated
        return f.read().rsplit(")", 1)[1].split()


def cpu(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads)."""
    p = _stat(pid)
    return (int(p[11]) + int(p[12])) / _TICK


def rss(pid: int) -> int:
    """Resident memory in bytes."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def children(pid: int) -> list[int]:
    """Direct children of a process."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if int(_stat(int(d.name))[1]) == pid:
                out.append(int(d.name))
        except (OSError, IndexError, ValueError):
            continue  # exited while we looked
    return out


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process, the children it reaped, and its live children."""
    p = _stat(pid)
    total = sum(int(x) for x in p[11:15]) / _TICK  # utime, stime, cutime, cstime
    for c in children(pid):
        try:
            total += cpu(c)
        except OSError:
            continue
    return total


def self_cpu() -> float:
    """CPU seconds of this process so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
