"""The worker pool: atomic counters, spinning then sleeping, the caller's share, no CPU at rest, spin settings."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from numba import njit

import gemmconv
from gemmconv.backends import _atomics, _pool, _threads

LINUX_TASKS = os.path.isdir("/proc/self/task")


def test_bump_is_atomic_across_threads():
    c = _atomics.counter()
    results: list[list[int]] = [[] for _ in range(4)]

    def add(k: int) -> None:
        results[k] = [_atomics.bump(c) for _ in range(5000)]

    threads = [threading.Thread(target=add, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _atomics.load(c) == 20_000
    seen = sorted(v for r in results for v in r)
    assert seen == list(range(1, 20_001))  # every add returned a value of its own


@njit(nogil=True)
def _add_many(ary, n):  # pragma: no cover - compiled
    for _ in range(n):
        _atomics._fetch_add(ary, 1)


def test_fetch_add_is_atomic_without_the_gil():
    """bump() keeps the GIL, which serialises its adds; here two threads add at once in compiled code, where a
    plain load and store loses updates."""
    c = _atomics.counter()
    _add_many(c, 1)  # compiled before the race
    c[0] = 0
    threads = [threading.Thread(target=_add_many, args=(c, 5_000_000)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _atomics.load(c) == 10_000_000


def test_spin_until_returns_when_the_target_comes_or_the_reads_run_out():
    c = _atomics.counter()
    assert _atomics.spin_until(c, 1, 1000) == 0  # ran out
    threading.Timer(0.01, _atomics.bump, args=(c, 3)).start()
    start = time.perf_counter()
    assert _atomics.spin_until(c, 2, 10**12) == 3  # would spin for hours without the bump
    assert time.perf_counter() - start < 5
    assert _atomics.reads_per_microsecond() > 0


def _cpu_seconds(thread: threading.Thread) -> float:
    """The CPU time of one thread so far (Linux: /proc/self/task/<id>/stat, in clock ticks)."""
    with open(f"/proc/self/task/{thread.native_id}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


@pytest.mark.skipif(not LINUX_TASKS, reason="reads per-thread CPU time from /proc (Linux)")
def test_helpers_spin_for_the_budget_then_sleep():
    pool = _pool.SpinPool(1, lambda i: None)
    try:
        reads = int(0.3e6 * _atomics.reads_per_microsecond())  # about 0.3 s of spinning
        pool.run([(lambda i: None, range(4), None)], 1, reads)
        # on a busy machine the spinning helper gets a share of a core only: wait for its CPU time, up to 3 s
        deadline = time.perf_counter() + 3
        while (spun := _cpu_seconds(pool.threads[0])) < 0.04 and time.perf_counter() < deadline:
            time.sleep(0.02)
        assert spun >= 0.04, f"the helper used {spun:.3f} s of CPU in 3 s after a hand-out: it did not spin"
        rest = spun
        while time.perf_counter() < deadline + 5:  # the spin is over when its CPU time stops growing
            time.sleep(0.2)
            if (now := _cpu_seconds(pool.threads[0])) == rest:
                break
            rest = now
        time.sleep(1.0)
        assert _cpu_seconds(pool.threads[0]) - rest <= 0.011  # asleep: at most one clock tick in 1 s
    finally:
        pool.stop()
    assert not pool.threads[0].is_alive()


def test_the_caller_completes_a_job_without_its_helpers():
    gate = threading.Event()
    pool = _pool.SpinPool(2, lambda i: gate.wait(30))  # helpers held back until the job is done
    try:
        here = threading.current_thread()
        ran: list[threading.Thread] = []
        after: list[int] = []
        pool.run([(lambda i: ran.append(threading.current_thread()), range(5), lambda: after.append(len(ran))),
                  (lambda i: ran.append(threading.current_thread()), range(3), None)], 2, 1000)
        assert ran == [here] * 8 and after == [5]
    finally:
        gate.set()
        pool.stop()


def test_late_helpers_skip_a_finished_job_and_take_the_next():
    gate = threading.Event()
    pool = _pool.SpinPool(1, lambda i: gate.wait(30))
    try:
        pool.run([(lambda i: None, range(3), None)], 1, 0)  # done by the caller alone
        gate.set()
        names: set[str] = set()
        lock = threading.Lock()

        def slow(i: int) -> None:
            time.sleep(0.005)
            with lock:
                names.add(threading.current_thread().name)

        for _ in range(20):
            pool.run([(slow, range(8), None)], 1, 10**6)
            if "gemmconv-0" in names:
                break
        assert "gemmconv-0" in names  # the helper joined a later job
    finally:
        pool.stop()


def test_errors_from_helpers_reach_the_caller_and_skip_later_phases():
    pool = _pool.SpinPool(1, lambda i: None)
    try:
        ran: list[int] = []
        raised = threading.Event()

        def boom(i: int) -> None:
            if threading.current_thread().name == "gemmconv-0":
                raised.set()
                raise KeyError("from the helper")
            raised.wait(10)  # the caller's items wait for the helper's error

        with pytest.raises(KeyError, match="from the helper"):
            pool.run([(boom, range(8), None), (ran.append, range(2), None)], 1, 1000)
        assert raised.is_set() and ran == []
        pool.run([(ran.append, range(2), None)], 1, 1000)  # the pool still works
        assert sorted(ran) == [0, 1]
    finally:
        pool.stop()


def test_a_pool_stopped_mid_job_still_completes_the_job():
    """The helper runs the job's last item when its pool is stopped (set_threads from another thread): it
    still counts that item, or the caller would wait for it forever."""
    pool = _pool.SpinPool(1, lambda i: None)
    helper_in_item, release = threading.Event(), threading.Event()

    def item(i: int) -> None:
        if threading.current_thread().name == "gemmconv-0":
            helper_in_item.set()
            release.wait(10)
        else:
            helper_in_item.wait(10)

    caller = threading.Thread(target=pool.run, args=([(item, range(2), None)], 1, 0), daemon=True)
    caller.start()
    assert helper_in_item.wait(10)
    pool.stop(0)
    release.set()
    caller.join(10)
    assert not caller.is_alive(), "the caller hangs: the stopped helper never counted the last item"


def test_an_interrupt_on_the_caller_does_not_strand_the_helpers(monkeypatch):
    """A KeyboardInterrupt on the calling thread between running an item and counting it: the helper, waiting
    at the end of that phase for the count, is released and takes the next job."""
    pool = _pool.SpinPool(1, lambda i: None)
    try:
        real = pool.bump_and_wake
        fired: list[int] = []

        def interrupted(ary: np.ndarray) -> int:
            if not fired and threading.current_thread() is threading.main_thread():
                fired.append(1)
                raise KeyboardInterrupt  # what Ctrl-C there does
            return real(ary)

        monkeypatch.setattr(pool, "bump_and_wake", interrupted)
        with pytest.raises(KeyboardInterrupt):
            pool.run([(lambda i: time.sleep(0.001), range(40), None), (lambda i: None, range(4), None)], 1, 0)
        monkeypatch.setattr(pool, "bump_and_wake", real)
        names: set[str] = set()

        def slow(i: int) -> None:
            time.sleep(0.003)
            names.add(threading.current_thread().name)

        pool.run([(slow, range(20), None)], 1, 0)
        assert "gemmconv-0" in names, "the helper still waits at the end of the interrupted job's first phase"
    finally:
        pool.stop(0)


def test_several_callers_at_once_run_every_item_and_after_once():
    pool = _pool.SpinPool(1, lambda i: None)
    try:
        counts = np.zeros((4, 64), np.int64)
        afters = np.zeros(4, np.int64)
        lock = threading.Lock()

        def add(k: int, i: int) -> None:
            with lock:
                counts[k, i] += 1

        def call(k: int) -> None:
            for _ in range(20):
                pool.run([(lambda i: add(k, i), range(64), lambda: afters.__setitem__(k, afters[k] + 1)),
                          (lambda i: None, range(3), None)], 1, 1000)

        threads = [threading.Thread(target=call, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)
        assert (counts == 20).all() and (afters == 20).all()
    finally:
        pool.stop()


@pytest.mark.skipif(not LINUX_TASKS, reason="reads per-thread CPU time from /proc (Linux)")
def test_helpers_without_a_seat_do_not_spin():
    pool = _pool.SpinPool(3, lambda i: None)
    try:
        time.sleep(0.1)
        reads = int(0.2e6 * _atomics.reads_per_microsecond())  # about 0.2 s
        before = [_cpu_seconds(t) for t in pool.threads]
        pool.run([(lambda i: None, range(4), None)], 1, reads)  # one seat
        time.sleep(0.3)
        spent = sorted(_cpu_seconds(t) - b for t, b in zip(pool.threads, before, strict=True))
        assert spent[1] <= 0.02, f"helpers without a seat spun: {spent}"
    finally:
        pool.stop()


def test_spin_setting_is_validated_and_read_from_the_environment():
    old = gemmconv.set_threads(spin_us=0)
    try:
        assert gemmconv.get_threads().spin_us == 0
        gemmconv.set_threads(spin_us=250)
        assert gemmconv.get_threads().spin_us == 250
        for bad in (-1, float("nan"), float("inf"), True, "100", 1e9):
            with pytest.raises(ValueError, match=r"spin_us must be a number of microseconds from 0 to 100000"):
                gemmconv.set_threads(spin_us=bad)
    finally:
        gemmconv.set_threads(old.threads, pin=old.pin, keep_blas=old.keep_blas, spin_us=old.spin_us)
    code = "import gemmconv; print(gemmconv.get_threads().spin_us)"
    for value, expected in (("40", "40.0"), ("0", "0.0"), ("nonsense", str(_threads.DEFAULT_SPIN_US))):
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "GEMMCONV_SPIN_US": value},
                             capture_output=True, text=True, check=True).stdout.strip()
        assert out == expected


def test_no_spinning_where_other_processes_need_the_cores(monkeypatch):
    old = gemmconv.set_threads(2, spin_us=200)
    try:
        monkeypatch.setattr(_threads, "free_cores", lambda: 2)
        assert _threads.spin_reads(2) == int(200 * _atomics.reads_per_microsecond())
        monkeypatch.setattr(_threads, "free_cores", lambda: 1)
        assert _threads.spin_reads(2) == 0
        gemmconv.set_threads(2, spin_us=0)
        monkeypatch.setattr(_threads, "free_cores", lambda: 2)
        assert _threads.spin_reads(2) == 0
    finally:
        gemmconv.set_threads(old.threads, pin=old.pin, keep_blas=old.keep_blas, spin_us=old.spin_us)


_AT_REST = """
import resource, time
import numpy as np
import gemmconv
gemmconv.set_threads(2, spin_us={spin})
x = np.random.default_rng(0).standard_normal((2, 64, 28, 28)).astype(np.float32)
w = np.random.default_rng(1).standard_normal((64, 64, 3, 3)).astype(np.float32)
for _ in range(20):
    gemmconv.conv2d(x, w, padding=1, strategy="im2col")
time.sleep(1.0)  # one second after the last call
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c0, t0 = cpu(), time.perf_counter()
time.sleep(1.0)
print((cpu() - c0) / (time.perf_counter() - t0))
"""


@pytest.mark.parametrize("spin", [150, 100_000])
def test_no_cpu_at_rest(spin):
    """One second after the last call, the process uses under 1% of a core, even with the longest spin."""
    out = subprocess.run([sys.executable, "-c", _AT_REST.format(spin=spin)], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    share = float(out.strip().splitlines()[-1])
    assert share < 0.01, f"{share:.1%} of a core at rest"


def test_interpreter_exits_while_helpers_spin():
    code = ("import numpy as np, gemmconv\n"
            "gemmconv.set_threads(2, spin_us=100000)\n"
            "x = np.ones((2, 64, 28, 28), np.float32); w = np.ones((64, 64, 3, 3), np.float32)\n"
            "gemmconv.conv2d(x, w, padding=1, strategy='im2col')\n")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert time.perf_counter() - start < 30


def test_pool_threads_are_replaced_when_more_are_needed():
    old = gemmconv.set_threads(2)
    try:
        _pool.replace(1, _threads._start_worker)  # a pool of one helper, as for two workers
        _threads.run_blocks(lambda i: None, list(range(4)), 2)
        first = _pool.current()
        assert first is not None and first.size == 1
        gemmconv.set_threads(3)
        _threads.run_blocks(lambda i: time.sleep(0.001), list(range(6)), 3)
        second = _pool.current()
        assert second is not None and second.size >= 2 and second is not first
        assert first.stopped
        for t in first.threads:
            t.join(5)
            assert not t.is_alive()
    finally:
        gemmconv.set_threads(old.threads, pin=old.pin, keep_blas=old.keep_blas, spin_us=old.spin_us)


PLACES = _pool._getcpu is not None and len(os.sched_getaffinity(0)) >= 2


@pytest.mark.skipif(not PLACES, reason="needs sched_getcpu and two allowed CPUs (Linux)")
def test_each_thread_of_a_job_holds_a_cpu_of_its_own_and_the_caller_gets_its_affinity_back():
    before = os.sched_getaffinity(0)
    pool = _pool.SpinPool(1, lambda i: None)
    try:
        seen: list[tuple[str, int, int]] = []
        lock = threading.Lock()

        def item(i: int) -> None:
            time.sleep(0.002)
            with lock:
                seen.append((threading.current_thread().name, _pool._getcpu(), len(os.sched_getaffinity(0))))

        for _ in range(20):
            seen.clear()
            pool.run([(item, range(16), None)], 1, 10**6)
            if {name for name, _, _ in seen} == {threading.current_thread().name, "gemmconv-0"}:
                break
        assert os.sched_getaffinity(0) == before  # the caller's own set, back
        caller = {cpu for name, cpu, _ in seen if name != "gemmconv-0"}
        helper = {cpu for name, cpu, _ in seen if name == "gemmconv-0"}
        assert len(caller) == 1 and all(n == 1 for name, _, n in seen if name != "gemmconv-0")  # held on one CPU
        assert helper and not helper & caller  # the helper never ran on the caller's CPU
    finally:
        pool.stop()
        os.sched_setaffinity(0, before)


@pytest.mark.skipif(not PLACES, reason="needs sched_getcpu and two allowed CPUs (Linux)")
def test_the_callers_affinity_comes_back_after_an_error_and_as_the_user_set_it():
    before = os.sched_getaffinity(0)
    mine = set(sorted(before)[:2])
    pool = _pool.SpinPool(1, lambda i: None)
    try:
        os.sched_setaffinity(0, mine)  # a set of the user's own
        here = threading.current_thread()
        during: list[int] = []

        def boom(i: int) -> None:
            if threading.current_thread() is here:
                during.append(len(os.sched_getaffinity(0)))
            time.sleep(0.001)
            if i == 7:
                raise ZeroDivisionError

        with pytest.raises(ZeroDivisionError):
            pool.run([(boom, range(8), None)], 1, 1000)
        assert during and set(during) == {1}  # held on one CPU during the job
        assert os.sched_getaffinity(0) == mine
    finally:
        pool.stop()
        os.sched_setaffinity(0, before)


@pytest.mark.skipif(not PLACES, reason="needs sched_getcpu and two allowed CPUs (Linux)")
def test_nobody_holds_a_cpu_without_a_spin():
    """On a busy machine (no spin) threads sleep and are placed again when they wake: the caller keeps its
    affinity."""
    before = os.sched_getaffinity(0)
    pool = _pool.SpinPool(1, lambda i: None)
    try:
        here = threading.current_thread()
        during: list[set[int]] = []
        pool.run([(lambda i: during.append(os.sched_getaffinity(0)) if threading.current_thread() is here
                   else None, range(8), None)], 1, 0)
        assert during and all(cpus == before for cpus in during)
    finally:
        pool.stop()


@pytest.mark.skipif(not PLACES, reason="needs sched_getcpu and two allowed CPUs (Linux)")
def test_two_callers_at_once_never_hold_the_same_cpu():
    pool = _pool.SpinPool(1, lambda i: None, pinned=True)  # pinned: every caller would take the first CPU
    callers: list[threading.Thread] = []
    held: list[frozenset[int]] = []
    clashes: list[tuple[frozenset[int], frozenset[int]]] = []
    lock = threading.Lock()

    def item(i: int) -> None:
        me = threading.current_thread()
        if me in callers:
            mine = frozenset(os.sched_getaffinity(0))
            with lock:
                if len(mine) == 1:
                    held.append(mine)
                for other in callers:
                    if other is not me and other.native_id is not None:
                        try:
                            theirs = frozenset(os.sched_getaffinity(other.native_id))
                        except OSError:  # that caller has ended
                            continue
                        if len(mine) == 1 and theirs == mine:
                            clashes.append((mine, theirs))
        time.sleep(0.001)

    def call() -> None:
        for _ in range(10):
            pool.run([(item, range(8), None)], 1, 10**6)

    callers.extend(threading.Thread(target=call) for _ in range(2))
    try:
        for t in callers:
            t.start()
        for t in callers:
            t.join(60)
        assert held, "no caller held a CPU: the test checks nothing"
        assert not clashes
    finally:
        pool.stop()


@pytest.mark.skipif(not PLACES, reason="needs sched_getcpu and two allowed CPUs (Linux)")
def test_a_helper_never_widens_an_affinity_narrowed_after_it_started():
    before = os.sched_getaffinity(0)
    pool = _pool.SpinPool(1, lambda i: None)
    try:
        pool.run([(lambda i: time.sleep(0.002), range(8), None)], 1, 0)
        one = {min(before)}
        for t in (threading.current_thread(), *pool.threads):  # as taskset -a -p -c <cpu> <pid> does
            os.sched_setaffinity(t.native_id, one)
        for reads in (0, 10**6):
            pool.run([(lambda i: time.sleep(0.002), range(8), None)], 1, reads)
            assert os.sched_getaffinity(pool.threads[0].native_id) <= one
    finally:
        pool.stop()
        os.sched_setaffinity(0, before)


@pytest.mark.skipif(not PLACES, reason="needs sched_getcpu and two allowed CPUs (Linux)")
def test_with_pinned_helpers_the_caller_holds_the_first_cpu_during_a_job(monkeypatch):
    monkeypatch.setattr(_threads, "free_cores", lambda: 64)  # threads spin (and hold CPUs) even if others run
    old = gemmconv.set_threads(2, pin=True)
    before = os.sched_getaffinity(0)
    try:
        where: list[set[int]] = []
        _threads.run_blocks(lambda i: where.append(os.sched_getaffinity(0)), list(range(8)), 2)
        pool = _pool.current()
        assert pool is not None and pool.caller_cpu == min(before)
        helper = os.sched_getaffinity(pool.threads[0].native_id)
        assert helper == {sorted(before)[1]}  # helper 0 on the second allowed CPU
        assert all(cpus in ({min(before)}, helper) for cpus in where)
        assert os.sched_getaffinity(0) == before
    finally:
        gemmconv.set_threads(old.threads, pin=old.pin, keep_blas=old.keep_blas, spin_us=old.spin_us)


@pytest.mark.parametrize("fails", [False, True])
def test_a_finished_job_keeps_none_of_the_callers_arrays(fails):
    """The pool keeps its latest job (a helper that wakes late takes a seat in it), but not the functions, items or
    errors (whose tracebacks hold the caller's frames) that could keep the caller's arrays alive."""
    import gc
    import weakref

    pool = _pool.SpinPool(2, lambda i: None)
    try:
        big = np.ones(100_000)
        alive = weakref.ref(big)

        def item(i, big=big):  # the function holds the array (and the traceback of its error, the function)
            if fails and i == 3:
                raise ValueError("item 3")
            big[i] += 1

        del big
        raised = None
        try:
            pool.run([(item, list(range(8)), None)], 2, 1000)
        except ValueError as e:
            raised = str(e)
        assert raised == ("item 3" if fails else None)
        del item
        gc.collect()
        assert alive() is None
        assert pool.current is not None and (pool.current.error() is not None) == fails  # failed still reads failed
    finally:
        pool.stop()
