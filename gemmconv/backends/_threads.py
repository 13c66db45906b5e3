"""Worker threads for the NumPy backend's blocked pipelines, and NumPy's BLAS thread count.

A blocked strategy (im2col, Winograd, 1x1; ``direct``'s output planes) hands the backend a list of
independent blocks. With more than one core, each worker thread takes blocks one at a time and
runs the whole pipeline of a block (pack or transform, GEMM, unpack) on its own core: single-threaded
compiled kernels, a single-threaded BLAS call, buffers that stay in that core's cache.

How many workers (:func:`worker_count`): the count given to :func:`set_threads`, else the smaller of
the process's allowed cores (``os.sched_getaffinity``) and the BLAS thread count in force
(``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` at start-up, ``threadpoolctl.threadpool_limits`` at
run time). Plans are sized for that count; each call then uses no more threads than other processes
leave cores free (:class:`CallThreads`, :mod:`._load`), unless a count was set. Workers are not
pinned to cores unless asked (``set_threads(pin=True)`` or ``GEMMCONV_PIN_THREADS=1``): the scheduler
places them among the allowed cores.

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

import contextlib
import functools
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np  # NumPy's BLAS is loaded, so that threadpoolctl finds it
from threadpoolctl import ThreadpoolController

from .._forksafe import ForkSafeLock
from ._load import allowed_cpus, free_cores

__all__ = ["CallThreads", "ThreadSettings", "available", "blas_threads", "get_threads", "in_worker", "run_blocks",
           "run_phases", "set_threads", "worker_count"]

class _Local(threading.local):
    """Per thread: whether it is a pool worker, and the threads the call it runs may use (None: no call)."""

    worker: bool = False
    available: int | None = None


_local = _Local()
_lock = ForkSafeLock()
_single: dict[str, Any] = {"depth": 0, "saved": [], "limit": None}
_pool: dict[str, Any] = {"executor": None, "size": 0, "pinned": False}


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "0") not in ("", "0")


@dataclass(frozen=True)
class ThreadSettings:
    """How gemmconv runs blocks on the CPU; see :func:`set_threads`."""

    threads: int | None = None  #: workers (None: allowed cores and BLAS threads decide)
    pin: bool = False  #: whether worker i is pinned to the i-th allowed core
    keep_blas: bool = False  #: never change the process-wide BLAS thread count


def _from_env() -> ThreadSettings:
    threads = os.environ.get("GEMMCONV_THREADS", "")
    return ThreadSettings(int(threads) if threads.strip().isdigit() and int(threads) > 0 else None,
                          _env_flag("GEMMCONV_PIN_THREADS"), _env_flag("GEMMCONV_KEEP_BLAS"))


_settings = _from_env()


def get_threads() -> ThreadSettings:
    """The thread settings in force."""
    return _settings


def set_threads(threads: int | None = None, *, pin: bool = False, keep_blas: bool = False) -> ThreadSettings:
    """Set how many worker threads run a convolution's blocks, whether they are pinned, and whether
    the process-wide BLAS thread count may be lowered while they run; returns the previous settings.

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
    """
    global _settings
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be an int >= 1 or None, got {threads!r}")
    with _lock:
        old, _settings = _settings, ThreadSettings(threads, bool(pin), bool(keep_blas))
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
    getters: list[Callable[[], Any]] = []
    for c in _blas_controllers():
        symbol = "omp_get_max_threads" if getattr(c, "threading_layer", "") == "openmp" else "openblas_get_num_threads"
        find = getattr(c, "_get_symbol", None)
        native = find(symbol) if c.internal_api == "openblas" and find is not None else None
        getters.append(native if native is not None else c.get_num_threads)
    return tuple(getters)


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
                _single["saved"] = [(c, c.num_threads) for c in _blas_controllers()]
                _single["limit"] = None
            limit = self.threads if _single["limit"] is None else min(_single["limit"], self.threads)
            if limit != _single["limit"]:
                for c, n in _single["saved"]:
                    c.set_num_threads(min(n, limit))
                _single["limit"] = limit
            _single["depth"] += 1

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _single["depth"] -= 1
            if _single["depth"] == 0:
                for c, n in _single["saved"]:
                    if c.num_threads == min(n, _single["limit"]):  # still ours: put the previous count back
                        c.set_num_threads(n)


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's pool threads: start afresh (and undo a BLAS limit in force)."""
    if _single["depth"]:
        for c, n in _single["saved"]:
            c.set_num_threads(n)
    _single["depth"], _single["saved"], _single["limit"] = 0, [], None
    _pool["executor"], _pool["size"] = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _start_worker(index: Any, pin: bool) -> None:
    """Initialiser of a pool thread: mark it a worker, give it a BLAS limit of one thread of its own where
    the BLAS has one, and, if asked, pin it to its own core (benchmarks/CPU_NOTES.md: pinning)."""
    _local.worker = True
    for set_local in _thread_local_limits() or ():
        set_local(1)
    if pin and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[next(index) % len(cpus)]})  # 0: this thread (Linux)


def _executor(workers: int) -> ThreadPoolExecutor:
    pin = _settings.pin
    with _lock:
        if _pool["size"] < workers or _pool["pinned"] != pin:
            old = _pool["executor"]
            _pool["executor"] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gemmconv",
                                                   initializer=_start_worker, initargs=(itertools.count(), pin))
            _pool["size"], _pool["pinned"] = workers, pin
            if old is not None:
                old.shutdown(wait=False)
        return _pool["executor"]


def run_blocks(fn: Callable[[Any], None], items: Sequence[Any], workers: int) -> None:
    """``fn(item)`` for every item, on ``workers`` pool threads (one per core), each taking the next item.

    With one worker or one item, ``fn`` runs on the calling thread. The calling thread only waits:
    taking blocks itself beside W-1 pinned workers (it is not pinned, and may share a core with one)
    measured slower and erratic (im2col at N=1 on 256 channels at 14²: 1.6x torch's time -> 3.1x).
    The first error raised by ``fn`` is raised here (items not yet started are then skipped).
    """
    run_phases([(fn, items, None)], workers)


class _Phase:
    """One phase of :func:`run_phases`: its items, the next to take, how many are done, and whether all are."""

    def __init__(self, fn: Callable[[Any], None], items: Sequence[Any], after: Callable[[], None] | None) -> None:
        self.fn, self.items, self.after = fn, items, after
        self.next = itertools.count()
        self.done = 0
        self.lock = threading.Lock()
        self.finished = threading.Event()
        self.error: BaseException | None = None


def _work_phases(phases: list[_Phase]) -> None:
    with np.errstate(all="ignore"):  # as on the calling thread (NumpyBackend.device_context)
        _work(phases)


def _work(phases: list[_Phase]) -> None:
    for phase in phases:
        # the end of a phase is kept track of only where something waits for it (a phase or an after())
        tracked = phase is not phases[-1] or phase.after is not None
        while (i := next(phase.next)) < len(phase.items):  # next() on itertools.count is atomic under the GIL
            try:
                if phase.error is None:  # after an error, the items left are skipped
                    phase.fn(phase.items[i])
            except BaseException as e:  # noqa: BLE001 - kept for the caller; later phases are skipped
                phase.error = phase.error or e
            if not tracked:
                continue
            with phase.lock:
                phase.done += 1
                last = phase.done == len(phase.items)
            if last:
                try:
                    if phase.error is None and phase.after is not None:
                        phase.after()
                except BaseException as e:  # noqa: BLE001
                    phase.error = e
                phase.finished.set()
        if phase is phases[-1]:  # nothing follows: the caller waits for every worker anyway
            return
        # every item is taken, each by a worker running it now: this wait cannot outlast them
        phase.finished.wait()
        if phase.error is not None:
            return


def run_phases(phases: Sequence[tuple[Callable[[Any], None], Sequence[Any], Callable[[], None] | None]],
               workers: int) -> None:
    """Phases ``(fn, items, after)`` one after the other in one hand-out to the workers: ``fn(item)``
    for every item of a phase, then ``after()`` once (by the worker that finished the phase's last
    item), before any item of the next phase starts.

    A worker waits at the end of a phase only for items other workers have taken and are running,
    so phases never wait on a worker busy elsewhere. One hand-out instead of one per phase saves waking
    the workers and the caller once per phase (measured: CPU_NOTES.md). The first error raised is raised
    here; later phases are skipped.
    """
    workers = min(workers, max((len(items) for _, items, _ in phases), default=0))
    local = _thread_local_limits() is not None
    if workers > 1 and not local and _settings.keep_blas and blas_threads() > 1:
        workers = 1  # the BLAS count may not be lowered: one block at a time, each GEMM on the BLAS's threads
    if workers <= 1 or in_worker():
        for fn, items, after in phases:
            for item in items:
                fn(item)
            if after is not None:
                after()
        return
    work = [_Phase(fn, items, after) for fn, items, after in phases]
    with contextlib.nullcontext() if local else _BlasLimit(1):
        pool = _executor(workers)
        futures = [pool.submit(_work_phases, work) for _ in range(workers)]
        for f in futures:
            f.result()
    for phase in work:
        if phase.error is not None:
            raise phase.error
