"""A busy machine: free cores measured from other processes' CPU time, and each call's threads sized to them."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

import gemmconv
from gemmconv.backends import _load, _threads, get_backend

NUMPY = get_backend(np.zeros(1))
STAT = """cpu  500 0 500 9000 0 0 0 0 0 0
cpu0 100 10 200 4000 50 5 5 30 0 0
cpu1 400 0 300 5000 0 0 0 0 0 0
intr 12345
"""


def test_busy_ticks_sum_the_allowed_cores_without_idle_and_iowait(tmp_path):
    (tmp_path / "stat").write_text(STAT)
    path = str(tmp_path / "stat")
    assert _load.busy_ticks(frozenset({0}), path) == 100 + 10 + 200 + 5 + 5 + 30
    assert _load.busy_ticks(frozenset({1}), path) == 700
    assert _load.busy_ticks(frozenset({0, 1}), path) == 350 + 700
    assert _load.busy_ticks(frozenset({0}), str(tmp_path / "missing")) is None


def test_runnable_others_excludes_this_process_threads(tmp_path):
    tasks = tmp_path / "task"
    for tid, state in ((11, "R"), (12, "S"), (13, "R")):
        (tasks / str(tid)).mkdir(parents=True)
        (tasks / str(tid) / "stat").write_text(f"{tid} (python (x)) {state} 1 2 3\n")
    (tmp_path / "loadavg").write_text("2.50 1.00 0.50 5/120 4567\n")
    assert _load.runnable_others(str(tmp_path / "loadavg"), str(tasks)) == 3  # 5 runnable, 2 of them ours
    (tmp_path / "loadavg").write_text("0.00 0.00 0.00 1/120 4567\n")
    assert _load.runnable_others(str(tmp_path / "loadavg"), str(tasks)) == 0
    assert _load.runnable_others(str(tmp_path / "missing"), str(tasks)) is None
    assert _load._runnable_threads(str(tmp_path / "missing")) == 1  # the caller at least


@pytest.mark.parametrize(("cores", "others", "free"), [
    (2, 0.0, 2), (2, 0.5, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 1.4, 1), (2, 3.0, 1), (16, 5.2, 11), (16, 5.7, 10),
    (1, 0.0, 1)])
def test_free_cores_round_and_keep_one(cores, others, free):
    assert _load._free(cores, others) == free


def test_monitor_counts_others_busy_time_less_its_own(monkeypatch):
    """Over an interval, ticks beyond this process's own CPU time are other processes'."""
    clock = {"now": 100.0, "ticks": 0, "ours": 0.0}
    monkeypatch.setattr(_load.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(_load.time, "process_time", lambda: clock["ours"])
    monkeypatch.setattr(_load, "busy_ticks", lambda cpus: clock["ticks"])
    monkeypatch.setattr(_load, "runnable_others", lambda: 0)
    monkeypatch.setattr(_load, "allowed_cpus", lambda: frozenset({0, 1}))
    monitor = _load.LoadMonitor()
    monitor._hz = 100
    assert monitor.free_cores() == 2  # first look: the run queue (nobody else runnable)
    # 1 s later: 150 ticks busy on the two cores, 0.5 s of them ours: others kept one core busy
    clock.update(now=101.0, ticks=150, ours=0.5)
    assert monitor.free_cores() == 1
    clock.update(now=101.1, ticks=400, ours=0.5)  # within MIN_INTERVAL: the last answer, no new look
    assert monitor.free_cores() == 1
    clock.update(now=102.0, ticks=150 + 190, ours=2.4)  # we kept both cores busy ourselves: both are ours
    assert monitor.free_cores() == 2
    clock.update(now=110.0, ticks=10_000, ours=2.4)  # a stale interval: the run queue instead
    assert monitor.free_cores() == 2


def _spinners(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


@pytest.mark.skipif(not os.path.exists("/proc/stat") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs Linux's /proc/stat and two cores")
def test_other_processes_spinning_leave_one_free_core():
    cores = len(os.sched_getaffinity(0))
    procs = _spinners(cores)
    try:
        monitor = _load.LoadMonitor()
        time.sleep(0.5)
        monitor.free_cores()
        time.sleep(0.5)
        assert monitor.free_cores() == 1
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_call_threads_hold_workers_and_blas_to_the_free_cores(monkeypatch):
    if _threads.blas_threads() < 2 or _threads.worker_count() < 2:
        pytest.skip("needs a BLAS and gemmconv with two threads or more")
    before = _threads.blas_threads()
    monkeypatch.setattr(_threads, "free_cores", lambda: 1)
    with _threads.CallThreads() as threads:
        assert threads == 1 and _threads.available() == 1
        if _threads._thread_local_limits() is None:
            assert _threads.blas_threads() == 1  # process-wide while the call runs
    assert _threads.blas_threads() == before and _threads.available() == _threads.worker_count()
    old = gemmconv.set_threads(2)  # an explicit count is used as given
    try:
        with _threads.CallThreads() as threads:
            assert threads == 2 and _threads.blas_threads() == before
    finally:
        gemmconv.set_threads(old.threads, pin=old.pin, keep_blas=old.keep_blas)
    old = gemmconv.set_threads(keep_blas=True)  # the BLAS count is never touched
    try:
        with _threads.CallThreads() as threads:
            assert threads == 1 and _threads.blas_threads() == before
    finally:
        gemmconv.set_threads(old.threads, pin=old.pin, keep_blas=old.keep_blas)


def test_a_busy_machine_runs_blocks_on_the_calling_thread(monkeypatch):
    """With one free core, a blocked strategy hands nothing to the workers, and the result is unchanged."""
    import threading

    x = np.random.default_rng(0).standard_normal((4, 64, 28, 28)).astype(np.float32)
    w = np.random.default_rng(1).standard_normal((64, 64, 3, 3)).astype(np.float32)
    expected = gemmconv.conv2d(x, w, padding=1, strategy="im2col")
    monkeypatch.setattr(_threads, "free_cores", lambda: 1)
    seen = set()
    real = NUMPY.matmul

    def spy(*args, **kwargs):
        seen.add(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(NUMPY, "matmul", spy)
    y = gemmconv.conv2d(x, w, padding=1, strategy="im2col")
    assert seen == {threading.current_thread().name}
    np.testing.assert_array_equal(y, expected)
