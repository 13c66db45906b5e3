"""gemmconv.compat.sigpy against sigpy's own CPU code, the three functions, interleaved in one process.

    python benchmarks/vs_sigpy.py [--rounds 3] [--reps 3] [--cases ...]

For each round and case, sigpy 0.1.27's ``convolve``, ``convolve_data_adjoint`` and ``convolve_filter_adjoint``
(one ``scipy.signal`` call per batch element and channel pair) and gemmconv's (:mod:`gemmconv.compat.sigpy`) are
timed back to back (median of ``--reps`` calls after one untimed call); the table gives the median over rounds,
the speed-up (sigpy's time / gemmconv's) and the largest difference relative to the largest magnitude of sigpy's
result; then the geometric mean of the speed-ups. Needs sigpy (pip install sigpy==0.1.27) and rich.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
import sigpy.conv
from _timing import geo_mean, median_time  # benchmarks/ is on sys.path when this script runs
from rich.console import Console
from rich.table import Table

from gemmconv.compat import sigpy as gsp

#: name -> (data shape, filter shape, mode); multi-channel, complex64
CASES: dict[str, tuple[tuple[int, ...], tuple[int, ...], str]] = {
    "mri3d_8to8_64^3_5^3": ((8, 64, 64, 64), (8, 8, 5, 5, 5), "full"),
    "img2d_8to8_256^2_7x7": ((8, 256, 256), (8, 8, 7, 7), "full"),
    "sig1d_16to16_4096_33": ((16, 4096), (16, 16, 33), "full"),
    "mri3d_8to8_64^3_5^3_valid": ((8, 64, 64, 64), (8, 8, 5, 5, 5), "valid"),
}
FUNCTIONS = ("convolve", "convolve_data_adjoint", "convolve_filter_adjoint")


def calls(name: str, dtype: str) -> dict[str, tuple[Callable[[], Any], Callable[[], Any]]]:
    """For each function: (sigpy's call, gemmconv's call)."""
    data_shape, filt_shape, mode = CASES[name]
    rng = np.random.default_rng(0)

    def draw(shape: tuple[int, ...]) -> np.ndarray:
        return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)

    data, filt = draw(data_shape), draw(filt_shape)
    kw = dict(mode=mode, multi_channel=True)
    out = draw(gsp.shapes(data_shape, filt_shape, mode, None, True).output_shape(True))
    args = {"convolve": (data, filt), "convolve_data_adjoint": (out, filt, data_shape),
            "convolve_filter_adjoint": (out, data, filt_shape)}
    return {fn: (lambda fn=fn: getattr(sigpy.conv, fn)(*args[fn], **kw),
                 lambda fn=fn: getattr(gsp, fn)(*args[fn], **kw)) for fn in FUNCTIONS}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    p.add_argument("--dtype", default="complex64", choices=("complex64", "complex128"))
    opts = p.parse_args()
    found = {(case, fn): pair for case in opts.cases for fn, pair in calls(case, opts.dtype).items()}
    errors = {}
    for key, (theirs, ours) in found.items():
        ref, got = theirs(), ours()
        errors[key] = float(np.max(np.abs(got - ref)) / np.max(np.abs(ref)))
    times: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(opts.rounds):
        for key, (theirs, ours) in found.items():
            times.setdefault((*key, "sigpy"), []).append(median_time(theirs, opts.reps, settle=0.15))
            times.setdefault((*key, "gemmconv"), []).append(median_time(ours, opts.reps, settle=0.15))
    console = Console(width=200)
    table = Table(title=f"gemmconv.compat.sigpy / sigpy {sigpy.__version__} on the CPU, {opts.dtype}, median of "
                        f"{opts.rounds} interleaved rounds")
    for col in ("case", "function", "sigpy ms", "gemmconv ms", "speed-up", "error / max|ref|"):
        table.add_column(col, justify="right")
    speedups = []
    for case, fn in found:
        t_sigpy = statistics.median(times[case, fn, "sigpy"])
        t_ours = statistics.median(times[case, fn, "gemmconv"])
        speedups.append(t_sigpy / t_ours)
        table.add_row(case, fn, f"{t_sigpy * 1e3:.1f}", f"{t_ours * 1e3:.2f}", f"{t_sigpy / t_ours:.1f}x",
                      f"{errors[case, fn]:.1e}")
    console.print(table)
    console.print(f"geometric mean speed-up {geo_mean(speedups):.1f}x over {len(speedups)} cases; slowest "
                  f"{min(speedups):.1f}x")


if __name__ == "__main__":
    main()
