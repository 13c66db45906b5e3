"""The NumPy backend's worker pool: helpers that are awake when work arrives, and asleep at rest.

A hand-out (:meth:`SpinPool.run`) is a :class:`Job`: phases of independent items that the calling thread and
up to ``helpers`` pool threads work through together, each taking the next item of the current phase. The
caller takes items like any helper, so a job completes even if no helper shows up in time; helpers only
make it faster.

**Awake.** Waking a thread that sleeps costs from tens of microseconds to more than a millisecond on virtual
machines (benchmarks/CPU_NOTES.md), as long as a small convolution. So a thread that would wait, a helper
between hand-outs or any thread at the end of a phase, first spins for a bounded time on a shared counter
(:mod:`._atomics`: atomic reads without the GIL, with the CPU's pause hint between reads), and only then sleeps
on one of the pool's conditions. The spin budget is set at each hand-out by the caller
(:func:`._threads.spin_reads`): none when the machine is busy, so that spinning never takes a core another
process needs. Only helpers that took a seat in the latest job spin for the next (the others sleep at once),
and a helper that finds no hand-out within its budget sleeps until the next one: at rest the pool uses no CPU.

**The GIL.** A thread that wants the GIL while another holds it sleeps, and pays a wake-up to get it. So
counters are read and bumped without releasing the GIL (a release would hand it over), and a helper that ends
a job bumps the job's last counter and goes back to spinning in one compiled call, so that it never holds the
GIL while the caller wakes up to the end of the job.

**Placement.** Unpinned, the scheduler often puts a woken helper on its waker's CPU, and a thread that spins
never sleeps to be placed again: the caller and a helper then share one CPU while another stands idle, for as
long as the load balancer takes (a whole call, measured: benchmarks/CPU_NOTES.md). So during a job whose
threads spin, the caller stays on the CPU it runs on (unless another caller holds it; its own affinity is set
back when the job ends, also after an error), and a helper restricts itself to the CPUs the caller may use that
its job's threads do not hold, which moves it at once where it shares the caller's. A helper's affinity is
never wider than its caller's, so ``taskset`` and ``os.sched_setaffinity`` on the process still confine it.
With pinned helpers (``set_threads(pin=True)``: helper i on the (i+1)-th allowed CPU) the caller holds the
first allowed CPU during a job instead. Without a spin (a busy machine) nobody holds a CPU: a thread that
sleeps is placed again when it wakes.

**Interrupts.** Items run inside ``try`` (an item's error, ``KeyboardInterrupt`` included, is raised by
:meth:`SpinPool.run` once the phase is done). An interrupt elsewhere on the calling thread gives the job up
(:meth:`Job.abort`): its counters are pushed past every target, so no helper waits for an item that will never
be counted.

Counters only grow, so "wait until counter >= target" is the one kind of wait: hand-outs so far (helpers wait
for the next), and per phase the items done and whether the phase is finished (its ``after()`` run).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import itertools
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ._atomics import bump, bump_then_spin, counter, load, spin_until

__all__ = ["Job", "SpinPool", "current", "replace"]

#: ``(fn, items, after)``: ``fn(item)`` for every item, then ``after()`` once, before the next phase starts
PhaseSpec = tuple[Callable[[Any], None], Sequence[Any], "Callable[[], None] | None"]


class _Released(Exception):
    """The error a released job's failed phases keep (never raised): a failure without a traceback."""


_RELEASED = _Released("a released job's phase failed")


def _skip(item: Any) -> None:
    """A released phase's function (:meth:`Job.release`)."""


def _skip_after() -> None:
    """A released phase's ``after()``."""


class _Phase:
    """One phase of a :class:`Job`: its items, the next to take, and counters of items done and of
    whether the phase is finished (its ``after()`` run; the last phase of a job without one is finished when
    its items are done)."""

    __slots__ = ("after", "done", "error", "finished", "fn", "items", "next")

    def __init__(self, fn: Callable[[Any], None], items: Sequence[Any], after: Callable[[], None] | None) -> None:
        self.fn, self.items, self.after = fn, items, after
        self.next = itertools.count()  # next() on itertools.count is atomic under the GIL
        self.done = counter()
        self.finished = counter()
        self.error: BaseException | None = None

    def run(self, i: int) -> None:
        try:
            if self.error is None:  # after an error, the items left are skipped
                self.fn(self.items[i])
        except BaseException as e:  # noqa: BLE001 - kept for the caller; later phases are skipped
            self.error = self.error or e


class Job:
    """Phases worked through by the caller and up to ``helpers`` pool threads (each claims a seat first).

    ``allowed`` is the set of CPUs the caller may run on (its affinity before the job; empty where helpers do not
    move) and ``cpus`` those the job's threads hold (the caller's first): a helper that moves goes to
    ``allowed - cpus``, so that it never runs where the caller may not."""

    __slots__ = ("allowed", "cpus", "helpers", "phases", "seats")

    def __init__(self, phases: Sequence[PhaseSpec], helpers: int, cpu: int | None = None,
                 allowed: frozenset[int] = frozenset()) -> None:
        self.phases = [_Phase(fn, items, after) for fn, items, after in phases]
        self.helpers = helpers
        self.seats = itertools.count()
        self.cpus = set() if cpu is None else {cpu}
        self.allowed = allowed

    def release(self) -> BaseException | None:
        """Drop the phases' functions, items and errors (they, and an error's traceback, may hold the caller's
        arrays) once the caller is done with the job, and return its first error: every item has run or been
        skipped, so a helper that comes late finds none left to take (and a failed phase still reads as failed)."""
        error = self.error()
        for phase in self.phases:
            phase.fn, phase.items = _skip, range(len(phase.items))
            if phase.after is not None:
                phase.after = _skip_after
            if phase.error is not None:
                phase.error = _RELEASED
        return error

    def error(self) -> BaseException | None:
        """The first error raised by an item or an ``after()`` (later phases were then skipped)."""
        return next((p.error for p in self.phases if p.error is not None), None)

    def end(self) -> tuple[np.ndarray, int]:
        """The counter and value that say the job is done: the last phase's items, or its ``after()``."""
        last = self.phases[-1]
        return (last.done, len(last.items)) if last.after is None else (last.finished, 1)

    def abort(self, error: BaseException, pool: SpinPool) -> None:
        """Give up on the job after ``error`` interrupted the caller (a ``KeyboardInterrupt`` between taking an
        item and counting it, say): mark every phase failed (items not yet started are skipped) and push every
        counter past its target, so that no helper waits for an item that will never be counted."""
        for phase in self.phases:
            phase.error = phase.error or error
            bump(phase.done, len(phase.items) + 1)
            bump(phase.finished)
        pool.wake()

    def work(self, pool: SpinPool, caller: bool) -> np.ndarray | None:
        """Take items until every phase is taken; wait at the end of a phase for the items others are still
        running (the caller also at the end of the last). A helper that ran the last phase's final item it could
        take returns that phase's ``done`` counter un-bumped where the phase has no ``after()``: it bumps it in
        the same call that waits for the next hand-out (:func:`bump_then_spin`), so it never holds the GIL
        while the caller wakes up to it."""
        with np.errstate(all="ignore"):  # as on the calling thread (NumpyBackend.device_context)
            for phase in self.phases:
                last = len(phase.items)
                owed = not caller and phase is self.phases[-1] and phase.after is None
                i = next(phase.next)
                while i < last:
                    phase.run(i)
                    i = next(phase.next)
                    if owed and i >= last:
                        return phase.done
                    if pool.bump_and_wake(phase.done) == last and phase.after is not None:
                        try:
                            if phase.error is None:
                                phase.after()
                        except BaseException as e:  # noqa: BLE001
                            phase.error = e
                        pool.bump_and_wake(phase.finished)
                if phase is self.phases[-1]:
                    break
                # every item is taken, each by a thread running it now: this wait cannot outlast them
                waited, target = (phase.done, last) if phase.after is None else (phase.finished, 1)
                pool.wait_until(waited, target, pool.spin_reads)
                if phase.error is not None:
                    return None
        if caller:
            pool.wait_until(*self.end(), pool.spin_reads)
        return None


class SpinPool:
    """``size`` helper threads that spin ``spin_reads`` reads (set per hand-out) before sleeping.

    Two conditions, each with a count of the threads asleep on it: ``idle`` for helpers waiting for a hand-out,
    ``cond`` for threads waiting at the end of a phase, so that the end of a phase never wakes idle helpers."""

    def __init__(self, size: int, start: Callable[[int], None], pinned: bool = False) -> None:
        self.size = size
        self.place = _getcpu is not None  # whether a spinning job's threads each hold a CPU of their own
        #: helpers pinned by ``start`` (helper i to the (i+1)-th allowed CPU): the caller holds the first during a
        #: job; else None, the caller holds the CPU it runs on and helpers move off it
        self.caller_cpu = min(os.sched_getaffinity(0)) if pinned and self.place else None
        self.moves = self.place and not pinned  # whether helpers set their own affinity
        self.held: set[int] = set()  # CPUs held by callers now (one caller per CPU)
        self.held_lock = threading.Lock()
        self.handed = counter()  # hand-outs so far
        self.current: Job | None = None  # the latest hand-out (set before ``handed`` is bumped)
        self.idle = threading.Condition(threading.Lock())
        self.idlers = counter()  # helpers asleep on ``idle``, or about to be (see wait_until)
        self.cond = threading.Condition(threading.Lock())
        self.sleepers = counter()  # threads asleep on ``cond``, or about to be
        self.spin_reads = 0
        self.stopped = False
        self.threads = [threading.Thread(target=self._serve, args=(i, start), name=f"gemmconv-{i}", daemon=True)
                        for i in range(size)]
        for t in self.threads:
            t.start()

    def run(self, phases: Sequence[PhaseSpec], helpers: int, spin_reads: int) -> None:
        """Work through ``phases`` on this thread and up to ``helpers`` pool threads; raise the first error."""
        allowed = frozenset(os.sched_getaffinity(0)) if self.place else frozenset()
        cpu = self._hold(allowed, spin_reads)
        job = Job(phases, min(helpers, self.size), cpu, allowed if self.moves else frozenset())
        try:
            self._hand_out(job, spin_reads)
        finally:
            if cpu is not None:
                self._release(cpu, allowed)
            error = job.release()  # the pool keeps its latest job (a helper that wakes late still takes a seat)
        if error is not None:
            raise error

    def _hold(self, allowed: frozenset[int], spin_reads: int) -> int | None:
        """Keep the calling thread on one of the ``allowed`` CPUs during a job whose threads spin
        (``caller_cpu``, else the one it runs on) and return that CPU; None where it does not: no spin (a thread
        that sleeps is placed again when it wakes), fewer than two allowed CPUs, or that CPU held by another
        caller."""
        if _getcpu is None or spin_reads <= 0 or len(allowed) < 2:
            return None
        cpu = self.caller_cpu if self.caller_cpu is not None else _getcpu()
        with self.held_lock:
            if cpu not in allowed or cpu in self.held:
                return None
            try:
                os.sched_setaffinity(0, {cpu})  # 0: this thread
            except OSError:
                return None
            self.held.add(cpu)
        return cpu

    def _release(self, cpu: int, allowed: frozenset[int]) -> None:
        """Let the calling thread run where it could before :meth:`_hold`."""
        with self.held_lock:
            self.held.discard(cpu)
            with contextlib.suppress(OSError):  # those CPUs were taken away meanwhile: leave it as it is
                os.sched_setaffinity(0, allowed)

    def _hand_out(self, job: Job, spin_reads: int) -> None:
        try:
            with self.idle:
                self.spin_reads = spin_reads
                self.current = job
                bump(self.handed)  # after current is set: a helper that sees the count sees the job
                if load(self.idlers):
                    self.idle.notify_all()
            job.work(self, caller=True)
        except BaseException as e:  # items' errors are kept by the job: this is an interrupt
            job.abort(e, self)
            raise

    def bump_and_wake(self, ary: np.ndarray) -> int:
        """Add one to a counter and wake the threads asleep at the end of a phase (they check whether what they
        wait for has come); return the counter's new value.

        A sleeper adds itself to ``sleepers`` and then checks its counter; this thread adds to the counter and
        then reads ``sleepers``; all four are sequentially consistent (:mod:`._atomics`). So either the sleeper
        counted itself before that read (and is woken here: it holds ``cond`` from its check to its wait) or its
        check comes after the add (and sees it)."""
        value = bump(ary)
        if load(self.sleepers):
            self.wake()
        return value

    def wake(self) -> None:
        """Wake every thread asleep at the end of a phase."""
        with self.cond:
            self.cond.notify_all()

    def wait_until(self, ary: np.ndarray, target: int, spin_reads: int, idle: bool = False) -> None:
        """Return once the counter is at least ``target``: spin up to ``spin_reads`` reads, then sleep (on
        ``idle`` for a helper waiting for a hand-out, else on ``cond``)."""
        if spin_until(ary, target, spin_reads) >= target:
            return
        cond, count = (self.idle, self.idlers) if idle else (self.cond, self.sleepers)
        with cond:
            bump(count)
            try:
                while load(ary) < target:
                    cond.wait()
            finally:
                bump(count, -1)

    def stop(self, timeout: float = 0.5) -> None:
        """Stop the helpers (each finishes the item it runs) and wait up to ``timeout`` s for each."""
        with self.idle:
            self.stopped = True
            self.current = None
            bump(self.handed)
            self.idle.notify_all()
        for t in self.threads:
            if t is not threading.current_thread():
                t.join(timeout)

    def _serve(self, index: int, start: Callable[[int], None]) -> None:
        start(index)
        seen = 0
        spin = False  # whether this thread spins before sleeping: only a helper seated in the latest job
        owed: np.ndarray | None = None  # a done counter this thread still has to bump
        while True:
            reads = self.spin_reads if spin else 0  # the budget of the latest hand-out
            if owed is not None:  # bump it and go back to waiting without taking the GIL in between
                if self.stopped:
                    self.bump_and_wake(owed)  # the caller still waits for it
                elif bump_then_spin(owed, self.sleepers, self.handed, seen + 1, reads) < 0:
                    self.wake()  # someone sleeps: wake them, then wait as usual
                else:
                    reads = 0  # the spin is spent
                owed = None
            if self.stopped:
                return
            self.wait_until(self.handed, seen + 1, reads, idle=True)
            seen = load(self.handed)  # first the count, then the job: a later job is never missed
            job = self.current
            spin = job is not None and next(job.seats) < job.helpers
            if spin and job is not None:
                if self.moves and job.allowed:
                    _move_off(job.cpus, job.allowed)
                owed = job.work(self, caller=False)


def _cpu_reader() -> Callable[[], int] | None:
    """glibc's ``sched_getcpu`` (the CPU the calling thread runs on, read without a system call), or None."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    try:
        fn = ctypes.CDLL(None).sched_getcpu
    except (OSError, AttributeError):
        return None
    fn.restype, fn.argtypes = ctypes.c_int, []
    return fn if fn() >= 0 else None


_getcpu = _cpu_reader()


def _move_off(taken: set[int], allowed: frozenset[int]) -> None:
    """Let this thread run on the ``allowed`` CPUs (its caller's) that no other thread of its job holds
    (``taken``), which moves it at once if it runs on one of those; then add the CPU it runs on to ``taken``. Its
    affinity changes only where that set changes (on two CPUs: when the caller has moved to the other one)."""
    free = allowed - taken or allowed
    try:
        if os.sched_getaffinity(0) != free:
            os.sched_setaffinity(0, free)  # 0: this thread
    except OSError:
        return  # the CPUs changed meanwhile: stay where the scheduler puts this thread
    if _getcpu is not None and taken:
        taken.add(_getcpu())


_pools: list[SpinPool] = []  # the pool in use (started by this process), stopped when replaced or at exit


def current() -> SpinPool | None:
    """The pool in use (None before the first hand-out, and in a forked child)."""
    return _pools[0] if _pools else None


def replace(size: int, start: Callable[[int], None], pinned: bool = False) -> SpinPool:
    """A new pool of ``size`` helpers in place of the one in use, which is stopped (its helpers finish the
    items they run, and its callers complete their jobs themselves); stopped at interpreter exit."""
    for old in _pools:
        old.stop(0)
    _pools[:] = [SpinPool(size, start, pinned)]
    return _pools[0]


@atexit.register
def _stop_all() -> None:
    for pool in _pools:
        pool.stop(0.1)


def _after_fork_in_child() -> None:
    _pools.clear()  # the parent's helper threads do not exist here


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
