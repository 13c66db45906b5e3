"""The FFT strategy's inverse transforms, every position transformed then cut ("full"), against only the kept
positions' axes (``ScipyFFT.signal(..., keep=)``, "pruned"), interleaved in one process.

    python benchmarks/fft_signal_ab.py [--rounds 5]

Each round times each case both ways (median of three calls after one untimed call); the median over rounds is
printed. Float32.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
from _timing import median_time  # benchmarks/ is on sys.path when this script runs

import gemmconv
from gemmconv.backends._scipy_fft import ScipyFFT
from gemmconv.tools.layers import LAYERS_LARGE

CASES = [("k7_56", 1, "forward"), ("k11_56", 1, "forward"), ("vol5_32", 1, "forward"), ("k7_56", 1, "grad_weight"),
         ("k11_56", 1, "grad_weight"), ("vol9_32", 1, "grad_weight"), ("k11_56", 8, "grad_weight")]
PRUNED = ScipyFFT.signal


def full(self: ScipyFFT, a: Any, shape: tuple[int, ...], axes: tuple[int, ...], real: bool, overwrite: bool = False,
         keep: tuple[slice, ...] | None = None) -> Any:
    """Every position transformed, then cut to ``keep``."""
    r = PRUNED(self, a, shape, axes, real, overwrite)
    return r if keep is None else r[tuple(keep)]


def call(name: str, n: int, pass_: str) -> Callable[[], Any]:
    layer = LAYERS_LARGE[name]
    x, w, b = layer.arrays(n)
    d = layer.ndim
    y = getattr(gemmconv, f"conv{d}d")(x, w, **layer.conv_args)
    gy = np.random.default_rng(0).standard_normal(y.shape).astype(np.float32)
    if pass_ == "forward":
        return lambda: getattr(gemmconv, f"conv{d}d")(x, w, b, strategy="fft", **layer.conv_args)
    return lambda: getattr(gemmconv, f"conv{d}d_grad_weight")(x, w.shape, gy, strategy="fft", **layer.conv_args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    opts = parser.parse_args()
    calls = {case: call(*case) for case in CASES}
    times: dict[tuple, list[float]] = {}
    try:
        for _ in range(opts.rounds):
            for case, fn in calls.items():
                for way, signal in (("full", full), ("pruned", PRUNED)):
                    ScipyFFT.signal = signal  # type: ignore[method-assign]
                    times.setdefault((*case, way), []).append(median_time(fn, 3))
    finally:
        ScipyFFT.signal = PRUNED  # type: ignore[method-assign]
    for case in CASES:
        a, b = (statistics.median(times[(*case, way)]) * 1e3 for way in ("full", "pruned"))
        print(f"{case[2]:11s} N={case[1]} {case[0]:8s} full {a:7.2f} ms  pruned {b:7.2f} ms  ratio {b / a:.2f}")


if __name__ == "__main__":
    main()
