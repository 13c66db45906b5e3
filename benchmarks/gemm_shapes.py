"""The single-threaded GEMM rate of NumPy's BLAS on the shapes gemmconv's CPU pipelines give it.

    python benchmarks/gemm_shapes.py [--reps 15]
    OPENBLAS_CORETYPE=Haswell python benchmarks/gemm_shapes.py    # another OpenBLAS kernel, for comparison

Each product runs with the BLAS held to one thread (threadpoolctl), as a block does on a worker; the median of
``--reps`` calls after one untimed call, in GFLOP/s (2·M·N·K per product). The shapes:

- a square 1024 product (the BLAS's best case);
- the stem's forward GEMM (64 x 147 by 147 x 3136: one band of a 224² image, 7x7/2) and 3x3/2 at 56² (128 x 576
  by 576 x 784);
- grad_input at 7², 512 channels, N=8: W^T (4608 x 512, a transposed view) by one image's dL/dy (49 columns),
  eight times, against the same rows of W^T by four or eight images' dL/dy side by side (196 or 392 columns);
- grad_weight's products (a small result summed over many pixels): the stem's 147 x 64 over 3136 pixels and
  3x3/2's 576 x 128 over 784, as ``cols @ dL/dy^T`` and as ``dL/dy @ cols^T``;
- the transposed 4x4/2 convolution from 8², 256 to 128 channels, N=8: W^T (2048 x 256) by the eight images'
  inputs side by side (512 columns), and the col2im that adds its columns back (gemmconv's kernel).

Prints the BLAS's kernel name (OpenBLAS's ``architecture``) and the CPU.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import numpy as np
from _timing import _cpu_name, median_time  # benchmarks/ is on sys.path when this script runs
from threadpoolctl import threadpool_info, threadpool_limits

import gemmconv
from gemmconv.backends import get_backend
from gemmconv.core.args import ConvArgs
from gemmconv.planning.validate import validate

RNG = np.random.default_rng(0)


def ms(fn: Callable[[], Any], reps: int) -> float:
    """Median milliseconds of ``reps`` calls of ``fn`` after one untimed call."""
    return median_time(fn, reps) * 1e3


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def products() -> dict[str, tuple[Callable[[], Any], float]]:
    """Name -> (call, flops)."""
    square = randn(1024, 1024)
    stem_w, stem_cols = randn(64, 147), randn(147, 3136)
    s2_w, s2_cols = randn(128, 576), randn(576, 784)
    wt = randn(512, 4608).T  # (C·R·S, K) as grad_input takes W^T: a transposed view
    gy = randn(8, 512, 49)
    side4 = np.ascontiguousarray(gy[:4].transpose(1, 0, 2)).reshape(512, 196)
    side8 = np.ascontiguousarray(gy.transpose(1, 0, 2)).reshape(512, 392)
    gw_stem_cols, gw_stem_gy = randn(147, 3136), randn(64, 3136)
    gw_s2_cols, gw_s2_gy = randn(576, 784), randn(128, 784)
    up_wt, up_x = randn(256, 2048).T, randn(256, 512)
    return {
        "square 1024": (lambda: square @ square, 2 * 1024 ** 3),
        "stem forward, one band (64x147 @ 147x3136)": (lambda: stem_w @ stem_cols, 2 * 64 * 147 * 3136),
        "3x3/2 56² forward, one image (128x576 @ 576x784)": (lambda: s2_w @ s2_cols, 2 * 128 * 576 * 784),
        "grad_input 7², one GEMM per image (4608x512 @ 512x49, x8)": (lambda: [wt @ gy[n] for n in range(8)],
                                                                     2 * 4608 * 512 * 49 * 8),
        "grad_input 7², four images side by side (512x196, x2)": (lambda: (wt @ side4, wt @ side4),
                                                                  2 * 4608 * 512 * 196 * 2),
        "grad_input 7², eight images side by side (512x392)": (lambda: wt @ side8, 2 * 4608 * 512 * 392),
        "grad_weight stem, cols @ gy^T (147x64 over 3136)": (lambda: gw_stem_cols @ gw_stem_gy.T, 2 * 147 * 64 * 3136),
        "grad_weight stem, gy @ cols^T": (lambda: gw_stem_gy @ gw_stem_cols.T, 2 * 147 * 64 * 3136),
        "grad_weight 3x3/2, cols @ gy^T (576x128 over 784)": (lambda: gw_s2_cols @ gw_s2_gy.T, 2 * 576 * 128 * 784),
        "grad_weight 3x3/2, gy @ cols^T": (lambda: gw_s2_gy @ gw_s2_cols.T, 2 * 576 * 128 * 784),
        "transposed 4x4/2 8², N=8 (2048x256 @ 256x512)": (lambda: up_wt @ up_x, 2 * 2048 * 256 * 512),
    }


def col2im_case() -> Callable[[], Any]:
    """col2im of the transposed 4x4/2 convolution from 8², 128 output channels, N=8 (the GEMM's product above)."""
    x = np.zeros((8, 128, 16, 16), np.float32)  # the convolution whose grad_input it is: 16² -> 8², 4x4/2
    w = np.zeros((256, 128, 4, 4), np.float32)
    spec = validate(x, w, None, ConvArgs(stride=2, padding=1)).spec
    backend = get_backend(x)
    cols = randn(1, 128 * 16, 8 * 64)
    dx = np.zeros(spec.in_shape, np.float32)
    return lambda: backend.col2im_part(cols, dx, spec, 0, 0, channels=(0, 128), images=8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=15)
    opts = p.parse_args()
    blas = [i.get("architecture", "?") for i in threadpool_info() if i.get("user_api") == "blas"]
    print(f"CPU: {_cpu_name()}; gemmconv {gemmconv.__version__}; BLAS kernels {blas}; one thread")
    with threadpool_limits(1):
        for name, (fn, flops) in products().items():
            t = ms(fn, opts.reps)
            print(f"  {name:62s} {t:7.2f} ms  {flops / t / 1e6:6.1f} GFLOP/s")
        print(f"  {'col2im of the transposed 4x4/2 8², N=8':62s} {ms(col2im_case(), opts.reps):7.2f} ms")


if __name__ == "__main__":
    main()
