"""Worker threads for the NumPy backend's blocked pipelines, and NumPy's BLAS thread count.

A blocked strategy (im2col, Winograd, 1x1; ``direct``'s output planes) hands the backend a list of
independent blocks. With more than one core, each worker thread takes blocks one at a time and
runs the whole pipeline of a block (pack or transform, GEMM, unpack) on its own core: single-threaded compiled kernels, a
single-threaded BLAS call, buffers that stay in that core's cache. Nothing is handed between cores
inside a call, and no library's idle threads spin on a core another library needs (OpenBLAS's
threads spin ~0.1 s after each GEMM, and took the cores from the compiled kernel that followed).

Each worker thread is pinned to one of the process's cores (see :func:`_start_worker`).
The number of workers is NumPy's BLAS thread count, so the usual controls apply:
``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS`` before start-up, or ``threadpoolctl.threadpool_limits``
at run time. While blocks run, that BLAS is set to one thread (reference-counted across concurrent
calls) and restored afterwards.
"""

from __future__ import annotations

import functools
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .._forksafe import ForkSafeLock

__all__ = ["blas_threads", "in_worker", "run_blocks", "run_phases"]

_local = threading.local()
_lock = ForkSafeLock()
_single = {"depth": 0, "saved": []}
_pool: dict[str, Any] = {"executor": None, "size": 0}


@functools.lru_cache(maxsize=None)
def _blas_controllers() -> tuple[Any, ...]:
    """threadpoolctl controllers of the BLAS libraries loaded when first asked (NumPy's among them)."""
    import numpy  # noqa: F401 - NumPy's BLAS must be loaded to be found
    from threadpoolctl import ThreadpoolController

    return tuple(ThreadpoolController().select(user_api="blas").lib_controllers)


def blas_threads() -> int:
    """NumPy's BLAS thread count now (1 if no BLAS library is found)."""
    controllers = _blas_controllers()
    return max((c.num_threads for c in controllers), default=1)


def in_worker() -> bool:
    """Whether this thread is a worker of :func:`run_blocks` (a nested :func:`run_blocks` then runs inline)."""
    return getattr(_local, "worker", False)


class _SingleThreadedBlas:
    """BLAS at one thread while any caller is inside; the previous counts restored by the last to leave."""

    def __enter__(self) -> None:
        with _lock:
            if _single["depth"] == 0:
                _single["saved"] = [(c, c.num_threads) for c in _blas_controllers()]
                for c, _ in _single["saved"]:
                    c.set_num_threads(1)
            _single["depth"] += 1

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _single["depth"] -= 1
            if _single["depth"] == 0:
                for c, n in _single["saved"]:
                    c.set_num_threads(n)


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's pool threads: start afresh (and undo a BLAS limit in force)."""
    if _single["depth"]:
        for c, n in _single["saved"]:
            c.set_num_threads(n)
    _single["depth"], _single["saved"] = 0, []
    _pool["executor"], _pool["size"] = None, 0


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _start_worker(index: Any) -> None:
    """Initialiser of a pool thread: mark it a worker and pin it to its own core.

    Pinned, because a thread woken for a job of a millisecond or two is often woken on the core of
    the thread that woke it, and the scheduler takes longer than the job to move it: measured on
    2 cores after a 10 ms pause, two 1.3 ms single-threaded GEMMs took 3.2 ms on unpinned threads
    (one core) and 1.8 ms on pinned ones.
    """
    _local.worker = True
    if hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[next(index) % len(cpus)]})  # 0: this thread (Linux)


def _executor(workers: int) -> ThreadPoolExecutor:
    with _lock:
        if _pool["size"] < workers:
            old = _pool["executor"]
            _pool["executor"] = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gemmconv",
                                                   initializer=_start_worker, initargs=(itertools.count(),))
            _pool["size"] = workers
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
    so phases never wait on a worker busy elsewhere. One hand-out instead of one per phase saves
    ~75 µs of waking the workers and ~50 µs of waking the caller per phase (Winograd on 256
    channels at 14², N=1: ~1.25 ms). The first error raised is raised here; later phases are skipped.
    """
    work = [_Phase(fn, items, after) for fn, items, after in phases]
    workers = min(workers, max((len(items) for _, items, _ in phases), default=0))
    if workers <= 1 or in_worker():
        for fn, items, after in phases:
            for item in items:
                fn(item)
            if after is not None:
                after()
        return
    with _SingleThreadedBlas():
        pool = _executor(workers)
        futures = [pool.submit(_work_phases, work) for _ in range(workers)]
        for f in futures:
            f.result()
    for phase in work:
        if phase.error is not None:
            raise phase.error
