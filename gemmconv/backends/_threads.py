"""Worker threads for the NumPy backend's blocked pipelines, and NumPy's BLAS thread count.

A blocked strategy (im2col, Winograd, 1x1; ``direct``'s output planes) hands the backend a list of
independent blocks. With more than one core, the calling thread and the pool's threads (:mod:`._pool`) each
take blocks one at a time and run the whole pipeline of a block (pack or transform, GEMM, unpack) on one
core: single-threaded compiled kernels, a single-threaded BLAS call, buffers that stay in that core's cache.
Between hand-outs the pool's threads spin for ``spin_us`` (:func:`set_threads`, ``GEMMCONV_SPIN_US``) before
they sleep, unless other processes need the cores (:func:`spin_reads`).

How many workers (:func:`worker_count`): the count given to :func:`set_threads`, else the smaller of
the process's allowed cores (``os.sched_getaffinity``) and the BLAS thread count in force
(``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` at start-up, ``threadpoolctl.threadpool_limits`` at
run time). Plans are sized for that count; each call then uses no more threads than other processes
leave cores free (:class:`CallThreads`, :mod:`._load`), unless a count was set. The pool's threads are not
pinned to cores unless asked (``set_threads(pin=True)`` or ``GEMMCONV_PIN_THREADS=1``): the scheduler
places them among the allowed cores, except that during a hand-out whose threads spin each thread of the call
keeps to a core of its own (:mod:`._pool`: placement).

The BLAS inside a worker must run on one thread: two workers' multi-threaded GEMMs contend for the
same BLAS threads (measured: CPU_NOTES.md). Where the BLAS has a thread-local limit (MKL; OpenBLAS
built with OpenMP) each worker sets its own, and nothing changes for other threads. NumPy's own
wheels ship OpenBLAS built with pthreads, whose ``openblas_set_num_threads_local`` sets the
process-wide count (measured); there, while blocks run, the process-wide count is 1 (other threads'
BLAS calls in that time run on one thread) and the count found before is put back afterwards, unless
someone changed it meanwhile. ``set_threads(keep_blas=True)`` (or ``GEMMCONV_KEEP_BLAS=1``) never
touches it: blocks then run one at a time on the calling thread, each GEMM on the BLAS's threads.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy  # noqa: F401 - NumPy's BLAS is loaded, so that threadpoolctl finds it
from threadpoolctl import ThreadpoolController

from ..core._forksafe import ForkSafeLock
from . import _pool
from ._atomics import reads_per_microsecond
from ._load import allowed_cpus, free_cores

__all__ = ["CallThreads", "ThreadSettings", "available", "blas_threads", "get_threads", "in_worker", "run_blocks",
           "run_phases", "set_threads", "spin_reads", "worker_count"]

#: how long an idle thread spins before sleeping, in microseconds, unless set (benchmarks/CPU_NOTES.md)
DEFAULT_SPIN_US = 150.0
#: the longest spin that may be set: 0.1 s
MAX_SPIN_US = 100_000.0

class _Local(threading.local):
    """Per thread: whether it is a pool worker, and the threads the call it runs may use (None: no call)."""

    worker: bool = False
    available: int | None = None


_local = _Local()
_lock = ForkSafeLock()
_single: dict[str, Any] = {"depth": 0, "saved": [], "limit": None}
_state: dict[str, Any] = {"pinned": None}  # how the pool in use was started


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "0") not in ("", "0")


@dataclass(frozen=True)
class ThreadSettings:
    """How gemmconv runs blocks on the CPU; see :func:`set_threads`."""

    threads: int | None = None  #: workers (None: allowed cores and BLAS threads decide)
    pin: bool = False  #: whether the pool's threads are pinned, each to a core of its own
    keep_blas: bool = False  #: never change the process-wide BLAS thread count
    spin_us: float = DEFAULT_SPIN_US  #: how long an idle thread spins before sleeping (0: it sleeps at once)


def _spin_from_env() -> float:
    """``GEMMCONV_SPIN_US`` where it is a valid spin time, else the default."""
    text = os.environ.get("GEMMCONV_SPIN_US", "").strip()
    try:
        return _check_spin(float(text)) if text else DEFAULT_SPIN_US
    except ValueError:
        return DEFAULT_SPIN_US


def _from_env() -> ThreadSettings:
    threads = os.environ.get("GEMMCONV_THREADS", "")
    return ThreadSettings(int(threads) if threads.strip().isdigit() and int(threads) > 0 else None,
                          _env_flag("GEMMCONV_PIN_THREADS"), _env_flag("GEMMCONV_KEEP_BLAS"), _spin_from_env())


def _check_spin(spin_us: float) -> float:
    if isinstance(spin_us, bool) or not isinstance(spin_us, (int, float)) or not math.isfinite(spin_us) \
            or not 0 <= spin_us <= MAX_SPIN_US:
        raise ValueError(f"spin_us must be a number of microseconds from 0 to {MAX_SPIN_US:g}, got {spin_us!r}; "
                         f"0 makes idle threads sleep at once")
    return float(spin_us)


_settings = _from_env()


def get_threads() -> ThreadSettings:
    """The thread settings in force."""
    return _settings


def set_threads(threads: int | None = None, *, pin: bool = False, keep_blas: bool = False,
                spin_us: float | None = None) -> ThreadSettings:
    """Set how many worker threads run a convolution's blocks, whether they are pinned, whether the
    process-wide BLAS thread count may be lowered while they run, and how long idle threads spin before they
    sleep; returns the previous settings.

    Parameters
    ----------
    threads : int or None
        Workers, used as given; None (default): the smaller of the allowed cores and the BLAS thread count
        in force, and in each call no more than the cores other processes leave free (the BLAS then held
        to as many threads while the call runs).
    pin : bool
        Pin worker i to the i-th core of the process's allowed set (off by default; on a machine of
        its own it makes short blocks start faster).
    keep_blas : bool
        Never change the BLAS thread count that the rest of the process sees. Where the BLAS has no
        thread-local limit (NumPy's OpenBLAS wheels), blocks then run one at a time on the calling
        thread, each GEMM on the BLAS's threads (slower: see the README).
    spin_us : float or None
        Microseconds a pool thread with nothing to do (between two convolutions, or at the end of a phase)
        spins, ready for the next work, before it sleeps; None: ``GEMMCONV_SPIN_US`` if set, else
        ``DEFAULT_SPIN_US`` (150). 0 makes idle threads sleep at once. No thread spins while other processes
        leave fewer cores free than a call uses, and none at all once it has spun this long.

    Returns
    -------
    ThreadSettings
        The settings in force before (pass their fields back to restore them).
    """
    global _settings
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be an int >= 1 or None, got {threads!r}")
    spin = _spin_from_env() if spin_us is None else _check_spin(spin_us)
    with _lock:
        old, _settings = _settings, ThreadSettings(threads, bool(pin), bool(keep_blas), spin)
    return old


def allowed_cores() -> int:
    """How many cores this process may run on."""
    return len(allowed_cpus())


def worker_count() -> int:
    """Workers a convolution uses now (see the module docstring)."""
    settings = _settings
    if settings.threads is not None:
        return settings.threads
    return max(1, min(blas_threads(), allowed_cores()))


@functools.cache
def _blas_controllers() -> tuple[Any, ...]:
    """threadpoolctl controllers of the BLAS libraries loaded when first asked (NumPy's among them)."""
    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


@functools.cache
def _blas_getters() -> tuple[Callable[[], Any], ...]:
    """Each BLAS library's thread-count getter: OpenBLAS's own C function where threadpoolctl can name it (read
    on every call, so it must cost little), else the controller's ``get_num_threads``."""
    return tuple(_native(c, "get") or c.get_num_threads for c in _blas_controllers())


@functools.cache
def _blas_setters() -> tuple[Callable[[int], Any], ...]:
    """Each BLAS library's thread-count setter, as :func:`_blas_getters` (set twice per call on NumPy's
    OpenBLAS wheels: threadpoolctl's own setter costs several microseconds more)."""
    return tuple(_native(c, "set") or c.set_num_threads for c in _blas_controllers())


def _native(c: Any, verb: str) -> Callable[..., Any] | None:
    """OpenBLAS's C function ``openblas_{verb}_num_threads`` (for an OpenMP build: ``omp_get_max_threads``, and
    no setter, as its controller's calls are the right ones there), or None for another BLAS or where
    threadpoolctl cannot name it."""
    if c.internal_api != "openblas" or getattr(c, "_get_symbol", None) is None:
        return None
    if getattr(c, "threading_layer", "") == "openmp":
        return c._get_symbol("omp_get_max_threads") if verb == "get" else None
    fn: Callable[..., Any] | None = c._get_symbol(f"openblas_{verb}_num_threads")
    return fn


def blas_threads() -> int:
    """NumPy's BLAS thread count now (1 if no BLAS library is found)."""
    getters = _blas_getters()
    if len(getters) == 1:  # NumPy's BLAS alone: the common case, read on every call
        return getters[0]() or 1
    return max([g() or 1 for g in getters], default=1)


@functools.cache
def _thread_local_limits() -> tuple[Callable[[int], Any], ...] | None:
    """Functions setting the calling thread's own BLAS thread limit, one per BLAS library, or None where
    a library has none (then the process-wide count is all there is)."""
    setters = []
    for c in _blas_controllers():
        api, layer = c.internal_api, getattr(c, "threading_layer", "")
        if api == "openblas" and layer == "openmp" and hasattr(c.dynlib, "openblas_set_num_threads_local"):
            setters.append(c.dynlib.openblas_set_num_threads_local)
        elif api == "mkl" and hasattr(c.dynlib, "MKL_Set_Num_Threads_Local"):
            setters.append(c.dynlib.MKL_Set_Num_Threads_Local)
        else:
            return None
    return tuple(setters)


class CallThreads:
    """The threads one convolution may keep busy, decided when it starts: with no count set by
    :func:`set_threads`, no more than the cores other processes leave free (:func:`._load.free_cores`), and the
    BLAS then held to as many threads (process-wide where it has no thread-local limit, as blocks do; not with
    ``keep_blas``). An explicit count is used as given. Inside, :func:`available` reads the decision."""

    __slots__ = ("_before", "_blas", "_local_before")

    def __enter__(self) -> int:
        settings = _settings
        self._before = _local.available
        self._blas: _BlasLimit | None = None
        self._local_before: list[int] | None = None
        if settings.threads is not None or in_worker():
            return available()
        blas = blas_threads()
        threads = min(blas, free_cores())  # free_cores() counts only the allowed cores: worker_count(), if idle
        _local.available = threads if self._before is None else min(self._before, threads)
        if not settings.keep_blas and blas > threads:
            local = _thread_local_limits()
            if local is not None:  # this thread's own limit; each setter returns the one it replaces
                self._local_before = [set_local(threads) for set_local in local]
            else:
                self._blas = _BlasLimit(threads)
                self._blas.__enter__()
        return threads

    def __exit__(self, *exc: object) -> None:
        if self._blas is not None:
            self._blas.__exit__()
        if self._local_before is not None:
            for set_local, before in zip(_thread_local_limits() or (), self._local_before, strict=True):
                set_local(before)
        _local.available = self._before


def available() -> int:
    """Workers a convolution may use now: the decision of the enclosing :class:`CallThreads`, else
    :func:`worker_count`."""
    threads = _local.available
    return worker_count() if threads is None else threads


def in_worker() -> bool:
    """Whether this thread is a worker of :func:`run_blocks` (a nested :func:`run_blocks` then runs inline)."""
    return _local.worker


class _BlasLimit:
    """The process-wide BLAS count at most ``threads`` while any caller is inside (where there is no thread-local
    limit); the count found by the first to enter is put back by the last to leave, unless someone set another
    one meanwhile."""

    __slots__ = ("threads",)

    def __init__(self, threads: int = 1) -> None:
        self.threads = threads

    def __enter__(self) -> None:
        with _lock:
            if _single["depth"] == 0:
                _single["saved"] = [(get, put, get() or 1) for get, put in zip(_blas_getters(), _blas_setters(),
                                                                               strict=True)]
                _single["limit"] = None
            limit = self.threads if _single["limit"] is None else min(_single["limit"], self.threads)
            if limit != _single["limit"]:
                for _, put, n in _single["saved"]:
                    put(min(n, limit))
                _single["limit"] = limit
            _single["depth"] += 1

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _single["depth"] -= 1
            if _single["depth"] == 0:
                for get, put, n in _single["saved"]:
                    if get() == min(n, _single["limit"]):  # still ours: put the previous count back
                        put(n)


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's pool threads: start afresh (and undo a BLAS limit in force)."""
    if _single["depth"]:
        for _, put, n in _single["saved"]:
            put(n)
    _single["depth"], _single["saved"], _single["limit"] = 0, [], None
    _state["pinned"] = None  # the pool module forgets the parent's pool


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _start_worker(index: int, pin: bool = False) -> None:
    """Start of a pool thread: mark it a worker, give it a BLAS limit of one thread of its own where the BLAS
    has one, and, if ``pin``, pin it to a core of its own (benchmarks/CPU_NOTES.md: pinning): helper i to the
    (i+1)-th allowed core, leaving the first to the calling thread."""
    _local.worker = True
    for set_local in _thread_local_limits() or ():
        set_local(1)
    if pin and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[(index + 1) % len(cpus)]})  # 0: this thread (Linux)


def _helpers(count: int) -> _pool.SpinPool:
    """The pool, with at least ``count`` helpers pinned as the settings say (a new one where it has not)."""
    pin = _settings.pin
    with _lock:
        pool = _pool.current()
        if pool is None or pool.size < count or _state["pinned"] != pin:
            pool = _pool.replace(count, functools.partial(_start_worker, pin=pin), pinned=pin)
            _state["pinned"] = pin
        return pool


def spin_reads(workers: int) -> int:
    """How long threads of a call on ``workers`` threads spin before sleeping, in reads of a counter
    (:mod:`._atomics`): the settings' ``spin_us``, or none where other processes leave fewer than ``workers``
    cores free (a spinning thread would take a core from them)."""
    spin_us = _settings.spin_us
    if spin_us <= 0 or free_cores() < workers:
        return 0
    return int(spin_us * reads_per_microsecond())


def run_blocks(fn: Callable[[Any], None], items: Sequence[Any], workers: int) -> None:
    """``fn(item)`` for every item, on the calling thread and ``workers - 1`` pool threads, each taking the
    next item. With one worker or one item, ``fn`` runs on the calling thread alone. The first error raised
    by ``fn`` is raised here (items not yet started are then skipped)."""
    run_phases([(fn, items, None)], workers)


def run_phases(phases: Sequence[tuple[Callable[[Any], None], Sequence[Any], Callable[[], None] | None]],
               workers: int) -> None:
    """Phases ``(fn, items, after)`` one after the other in one hand-out: ``fn(item)`` for every item of a
    phase, then ``after()`` once (by the thread that finished the phase's last item), before any item of the
    next phase starts. The calling thread and ``workers - 1`` pool threads take the items (:mod:`._pool`).

    A thread waits at the end of a phase only for items other threads have taken and are running, so phases
    never wait on a thread busy elsewhere. One hand-out instead of one per phase saves waking the pool once per
    phase (measured: CPU_NOTES.md). The first error raised is raised here; later phases are skipped.
    """
    workers = min(workers, max((len(items) for _, items, _ in phases), default=0))
    local = _thread_local_limits()
    if workers > 1 and local is None and _settings.keep_blas and blas_threads() > 1:
        workers = 1  # the BLAS count may not be lowered: one block at a time, each GEMM on the BLAS's threads
    if workers <= 1 or in_worker() or not all(len(items) for _, items, _ in phases):
        for fn, items, after in phases:
            for item in items:
                fn(item)
            if after is not None:
                after()
        return
    pool = _helpers(workers - 1)
    spin = spin_reads(workers)
    if local is None:
        with _BlasLimit(1):
            pool.run(phases, workers - 1, spin)
        return
    before = [set_local(1) for set_local in local]  # the caller runs blocks too: its own BLAS limit
    try:
        pool.run(phases, workers - 1, spin)
    finally:
        for set_local, n in zip(local, before, strict=True):
            set_local(n)
