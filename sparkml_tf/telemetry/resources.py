"""A process's resident memory and the CPU seconds of it and its child processes, from the standard
library and ``/proc`` (Linux); elsewhere, what :mod:`resource` gives."""

from __future__ import annotations

import os
import time
from typing import Dict, List, Optional

try:
    import resource
except ImportError:  # Windows
    resource = None  # type: ignore[assignment]

_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def rss_bytes() -> Optional[int]:
    """This process's resident set size now (``/proc/self/statm``), else its peak (``ru_maxrss``), else None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        pass
    if resource is None:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if os.uname().sysname == "Darwin" else peak * 1024)


def _proc_stat(pid: int) -> Optional[List[str]]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state is field 0


def _descendants_cpu(root: int) -> float:
    """CPU seconds of the live descendants of ``root`` (each with the children it has reaped)."""
    parents: Dict[int, List[int]] = {}
    fields: Dict[int, List[str]] = {}
    try:
        pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except OSError:
        return 0.0
    for pid in pids:
        stat = _proc_stat(pid)
        if stat is None:
            continue
        fields[pid] = stat
        parents.setdefault(int(stat[1]), []).append(pid)
    total, stack = 0.0, list(parents.get(root, []))
    while stack:
        pid = stack.pop()
        stat = fields[pid]
        # utime, stime, cutime, cstime: fields 14-17 of /proc/PID/stat, 11-14 here
        total += sum(int(v) for v in stat[11:15]) / _TICKS
        stack.extend(parents.get(pid, []))
    return total


def cpu_seconds() -> Dict[str, float]:
    """``{"process": s, "children": s}``: CPU seconds (user + system) of this process, and of its
    child processes so far (those it has reaped, and on Linux the live ones with theirs: a local
    Spark's JVM, its Python workers, training processes). Differences of two readings time a step."""
    process = time.process_time()
    children = 0.0
    if resource is not None:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        children = usage.ru_utime + usage.ru_stime
    if os.path.isdir("/proc"):
        children += _descendants_cpu(os.getpid())
    return {"process": process, "children": children}
