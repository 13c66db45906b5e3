"""How many of this process's cores other processes leave free: the NumPy backend's view of a busy machine.

A convolution that runs more threads than there are free cores gets descheduled in the middle of its work,
and a BLAS whose threads wait for each other by spinning (OpenBLAS's pthreads build in NumPy's wheels) then
waits a whole scheduler time slice per GEMM. :func:`free_cores` lets each call size its threads to what is
free now.

The measure: over the interval since the previous look, the CPU time the allowed cores spent busy
(``/proc/stat``: user, nice, system, irq, softirq and steal ticks of each allowed core) less this process's
own CPU time (:func:`time.process_time`, every thread of it: gemmconv's workers, the BLAS's, the caller's), in
cores. Looks are at least :data:`MIN_INTERVAL` apart (one read of ``/proc/stat`` each, a few microseconds
per call in between); a look after more than :data:`STALE_AFTER` of silence, or the first one, counts the
runnable threads of the machine instead (``/proc/loadavg``, less this process's own). Where neither file exists
(not Linux) every allowed core counts as free.
"""

from __future__ import annotations

import math
import os
import time

from ..core._forksafe import ForkSafeLock

__all__ = ["BUSY_THRESHOLD", "MIN_INTERVAL", "STALE_AFTER", "LoadMonitor", "allowed_cpus", "free_cores"]

#: seconds between two reads of /proc/stat: at 100 ticks a second, 0.2 s of two cores is 40 ticks, against which
#: the tick accounting's jitter of a few ticks stays under the threshold of :data:`BUSY_THRESHOLD`
MIN_INTERVAL = 0.2
#: a core counts as taken once other processes keep this much of it busy (less would read the accounting's jitter
#: as load)
BUSY_THRESHOLD = 0.6
#: an interval longer than this (seconds) says little about now: the instantaneous run queue is used instead
STALE_AFTER = 2.0


def allowed_cpus() -> frozenset[int]:
    """The cores this process may run on (``taskset``, cgroups and ``docker --cpuset-cpus`` count)."""
    if hasattr(os, "sched_getaffinity"):
        return frozenset(os.sched_getaffinity(0))
    return frozenset(range(os.cpu_count() or 1))


def busy_ticks(cpus: frozenset[int], path: str = "/proc/stat") -> int | None:
    """Clock ticks the cores ``cpus`` spent busy since boot (None where ``path`` cannot be read)."""
    try:
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")
    except OSError:
        return None
    busy = 0
    for line in lines[1:]:  # the first line sums every core
        if not line.startswith(b"cpu"):
            break
        name, *ticks = line.split()
        if int(name[3:]) in cpus:
            # user nice system idle iowait irq softirq steal: all but idle and iowait
            t = [int(v) for v in ticks[:8]]
            busy += t[0] + t[1] + t[2] + t[5] + t[6] + t[7]
    return busy


def runnable_others(path: str = "/proc/loadavg", tasks: str = "/proc/self/task") -> int | None:
    """Threads of other processes runnable now: the machine's, less this process's own (None where ``path``
    cannot be read)."""
    try:
        with open(path, "rb") as f:
            running = int(f.read().split()[3].split(b"/")[0])
    except (OSError, IndexError, ValueError):
        return None
    return max(0, running - _runnable_threads(tasks))


def _runnable_threads(tasks: str) -> int:
    """Threads of this process in state R (running or runnable); at least 1, the caller."""
    count = 0
    try:
        names = os.listdir(tasks)
    except OSError:
        return 1
    for name in names:
        try:
            with open(os.path.join(tasks, name, "stat"), "rb") as f:
                stat = f.read()
        except OSError:  # the thread has ended
            continue
        count += stat[stat.rindex(b")") + 2:stat.rindex(b")") + 3] == b"R"
    return max(1, count)


class LoadMonitor:
    """Free cores of the process's allowed set, from the busy time of other processes (module docstring)."""

    def __init__(self) -> None:
        self._lock = ForkSafeLock()
        self._hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._cpus = allowed_cpus()
        self._last: tuple[float, int, float] | None = None  # (monotonic time, busy ticks, process CPU seconds)
        self._free = len(self._cpus)

    def free_cores(self) -> int:
        """Allowed cores that other processes left free over the last interval, at least 1."""
        now = time.monotonic()
        last = self._last
        if last is not None and now - last[0] < MIN_INTERVAL:
            return self._free
        with self._lock:
            cpus = allowed_cpus()
            if cpus != self._cpus:  # the affinity changed: start afresh
                self._cpus, last = cpus, None
            ticks, ours = busy_ticks(cpus), time.process_time()
            if ticks is None:
                self._free = len(cpus)
            elif last is None or now - last[0] > STALE_AFTER:
                runnable = runnable_others()
                self._free = len(cpus) if runnable is None else _free(len(cpus), float(runnable))
            else:
                busy = ((ticks - last[1]) / self._hz - (ours - last[2])) / (now - last[0])
                self._free = _free(len(cpus), busy)
            if ticks is not None:
                self._last = (now, ticks, ours)
            return self._free

    def forget(self) -> None:
        """Start afresh (after a fork: the child's CPU time starts at zero)."""
        self._last, self._cpus = None, allowed_cpus()


def _free(cores: int, others_busy: float) -> int:
    """Cores left free when other processes keep ``others_busy`` cores busy: a core is taken from
    :data:`BUSY_THRESHOLD` of one on; at least one."""
    return max(1, min(cores, cores - math.floor(max(0.0, others_busy) + 1 - BUSY_THRESHOLD)))


_monitor = LoadMonitor()


def free_cores() -> int:
    """Free cores of this process's allowed set now (see the module docstring); at least 1."""
    return _monitor.free_cores()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_monitor.forget)
