"""The wall-clock timer shared by the CPU benchmark scripts."""

from __future__ import annotations

import statistics
import time


def median_time(fn, reps: int, settle: float = 0.0) -> float:
    """Median seconds of ``reps`` calls of ``fn``, after an optional pause and one untimed call."""
    if settle:
        time.sleep(settle)
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def runnable(strategies, x, w, b, conv_args) -> list[str]:
    """The strategies that accept this convolution, each run once (so that its kernels are compiled)."""
    import gemmconv

    ok = []
    for s in strategies:
        try:
            gemmconv.conv2d(x, w, b, strategy=s, **conv_args)
            ok.append(s)
        except gemmconv.StrategyNotSupportedError:
            pass
    return ok
