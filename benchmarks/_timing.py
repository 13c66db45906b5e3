"""The wall-clock timer shared by the CPU benchmark scripts."""

from __future__ import annotations

import math
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


def write_times(path: str, kind: str, times: dict[tuple, list[float]]) -> None:
    """Write ``times`` (case key ending in the library or strategy -> seconds per round) as JSON, with the CPU,
    for ``benchmarks/run_spread.py``."""
    import json
    import platform

    rows = [{"case": [str(k) for k in key[:-1]], "who": key[-1], "seconds": ts} for key, ts in times.items()]
    with open(path, "w") as f:
        json.dump({"kind": kind, "cpu": _cpu_name(), "machine": platform.machine(), "times": rows}, f, indent=1)


def _cpu_name() -> str:
    """The CPU as ``lscpu`` names it (model name, family, model), read from /proc/cpuinfo."""
    from machine_name import cpuinfo  # benchmarks/ is on sys.path when a benchmark script runs

    try:
        with open("/proc/cpuinfo") as f:
            fields = cpuinfo(f.read())
    except OSError:
        return "unknown"
    return f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"


def geo_mean(values) -> float:
    """The geometric mean of positive ``values`` (NaN for none)."""
    values = list(values)
    return math.exp(statistics.fmean(math.log(v) for v in values)) if values else float("nan")


def alternate(f, old, new, rounds: int = 15, calls: int = 5) -> tuple[float, float]:
    """Median seconds per call of ``f(old)`` and ``f(new)``, alternated in each round (which goes first
    alternating too), ``calls`` calls per round."""
    times: dict[str, list[float]] = {"old": [], "new": []}
    for r in range(rounds):
        for label, mod in ((("old", old), ("new", new)) if r % 2 else (("new", new), ("old", old))):
            t0 = time.perf_counter()
            for _ in range(calls):
                f(mod)
            times[label].append((time.perf_counter() - t0) / calls)
    return statistics.median(times["old"]), statistics.median(times["new"])
