"""What one hand-out to the worker pool costs: a job of ``workers`` items of T microseconds of compiled work each.

    python benchmarks/handout.py [--work-us 200] [--calls 300] [--gaps 0 100 1000 10000]

Ideally such a job takes T: each thread runs one item. The excess over T is the hand-out's cost (waking the
helpers, the caller's wait at the end). Each setting is timed over ``--calls`` jobs, with a pause of
``gap`` microseconds between two jobs (the caller sleeps, as a program does between two layers that do
something else), and the settings are interleaved round by round in one process:

- ``executor``: a ``concurrent.futures.ThreadPoolExecutor`` of ``workers`` threads, each job submitted to all of
  them while the caller waits (how gemmconv's pool worked until 2026-12-05);
- ``spin 0``, ``spin 150``, ...: gemmconv's pool (``_threads.run_phases``) with ``set_threads(spin_us=...)``,
  unpinned, then pinned (``pin``).

Prints the median excess per setting and gap, in microseconds, and the CPU.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from _timing import _cpu_name  # benchmarks/ is on sys.path when this script runs

import gemmconv
from gemmconv.backends import _threads
from gemmconv.backends._atomics import counter, reads_per_microsecond, spin_until


def _busy(reads: int):
    """An item: ``reads`` reads of a counter that never moves, without the GIL (compiled work of known length)."""
    never = counter()

    def item(_: object) -> None:
        spin_until(never, 1, reads)

    return item


def _executor_job(pool: ThreadPoolExecutor, item, workers: int) -> None:
    for f in [pool.submit(item, i) for i in range(workers)]:
        f.result()


def _time_jobs(job, calls: int, gap_us: float) -> list[float]:
    out = []
    for _ in range(calls):
        if gap_us:
            time.sleep(gap_us * 1e-6)
        t0 = time.perf_counter()
        job()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work-us", type=float, default=200.0, help="compiled work per item, microseconds")
    p.add_argument("--calls", type=int, default=300, help="jobs per setting, gap and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--gaps", type=float, nargs="+", default=[0, 100, 1000, 10000], help="pause between jobs, us")
    p.add_argument("--spins", type=float, nargs="+", default=[0, 50, 150, 500], help="spin_us settings")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()

    workers = args.workers
    reads = int(args.work_us * reads_per_microsecond())
    item = _busy(reads)
    solo = statistics.median(_time_jobs(lambda: item(0), 200, 0))  # one item on this thread: the ideal
    old = gemmconv.get_threads()
    executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="executor")
    settings: dict[str, object] = {"executor": None}
    for pin in (False, True):
        for spin in args.spins:
            settings[f"spin {spin:g}{' pin' if pin else ''}"] = (pin, spin)
    excess: dict[tuple[str, float], list[float]] = {}
    try:
        for _ in range(args.rounds):
            for gap in args.gaps:
                for name, setting in settings.items():
                    if setting is None:
                        job = lambda: _executor_job(executor, item, workers)  # noqa: E731
                    else:
                        pin, spin = setting
                        gemmconv.set_threads(workers, pin=pin, spin_us=spin)
                        job = lambda: _threads.run_phases([(item, range(workers), None)], workers)  # noqa: E731
                    job()
                    ts = _time_jobs(job, args.calls, gap)
                    excess.setdefault((name, gap), []).append((statistics.median(ts) - solo) * 1e6)
    finally:
        executor.shutdown()
        gemmconv.set_threads(old.threads, pin=old.pin, keep_blas=old.keep_blas, spin_us=old.spin_us)

    print(f"CPU: {_cpu_name()}; {workers} threads; item {args.work_us:g} us of compiled work (measured alone: "
          f"{solo * 1e6:.0f} us); {threading.active_count()} threads alive")
    print("median excess of a job over one item, us (range over rounds); pause between jobs in columns")
    print(f"{'setting':<16}" + "".join(f"{f'gap {g:g} us':>22}" for g in args.gaps))
    for name in settings:
        cells = []
        for gap in args.gaps:
            v = excess[(name, gap)]
            cells.append(f"{statistics.median(v):7.0f} ({min(v):.0f}-{max(v):.0f})")
        print(f"{name:<16}" + "".join(f"{c:>22}" for c in cells))


if __name__ == "__main__":
    main()
