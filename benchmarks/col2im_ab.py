"""In-process A/B of col2im (the scatter of grad_input and of the transposed convolution) from another checkout
(old) and this one (new), on the column matrices of the decoder layers of ``vs_torch_backward.py``, eight images
per call: ``python benchmarks/col2im_ab.py /path/to/old/checkout`` (e.g. a ``git worktree`` of an older commit).

The old checkout's package is loaded under another name beside this one; old and new alternate (15 rounds of 5
calls each) on the same arrays, and the medians per image and their ratio are printed. Results:
``benchmarks/CPU_NOTES.md``.
"""

from __future__ import annotations

import importlib
import pathlib
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from _packages import load_package  # benchmarks/ is on sys.path when this script runs
from _timing import alternate

RNG = np.random.default_rng(0)
N = 8

#: the transposed convolution's layers: (C_in, H, W, C_out, kernel, stride, padding, output_padding), as
#: ``vs_torch_backward.DECODER``; its columns are (N, C_out·kernel², H·W) and its output (N, C_out, H', W')
DECODER = {
    "up4x4s2_8": (256, 8, 8, 128, 4, 2, 1, 0),
    "up4x4s2_16": (128, 16, 16, 64, 4, 2, 1, 0),
    "up3x3s2_28": (128, 28, 28, 64, 3, 2, 1, 1),
    "up2x2s2_28": (128, 28, 28, 64, 2, 2, 0, 0),
}


def load_old(root: pathlib.Path) -> Any:
    """The col2im kernel module of the gemmconv package at ``root``, imported as ``gemmconv_base`` (the name every
    ``--base`` benchmark gives it: numba's disk cache of its kernels names the package they were compiled in)."""
    load_package(root)
    return importlib.import_module("gemmconv_base.backends._numba_backward")


def case(k: int, h: int, w: int, c: int, kk: int, s: int, p: int, op: int) -> Callable[[Any], None]:
    height, width = (h - 1) * s - 2 * p + kk + op, (w - 1) * s - 2 * p + kk + op
    cols = RNG.standard_normal((N, c * kk * kk, h * w)).astype(np.float32)
    dx = np.zeros((N, c, height, width), np.float32)
    def call(mod: Any) -> None:
        images = (0,) if mod.col2im.py_func.__code__.co_argcount == 18 else ()  # the argument of 908bf41 on
        mod.col2im(cols, dx, kk, kk, s, s, p, p, 1, 1, w, h, 0, 0, 0, *images, 0, c)

    return call


def main() -> None:
    old = load_old(pathlib.Path(sys.argv[1]).resolve())
    from gemmconv.backends import _numba_backward as new

    for name, args in DECODER.items():
        f = case(*args)
        f(old), f(new)  # compiled
        mo, mn = (t / N for t in alternate(f, old, new))
        print(f"{name:12s} col2im per image: old {mo * 1e6:7.1f} us  new {mn * 1e6:7.1f} us  new/old {mn / mo:.2f}")


if __name__ == "__main__":
    main()
