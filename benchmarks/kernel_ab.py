"""In-process A/B of the compiled kernels of another checkout (old) and this one (new) on the paths the
memory-safety fixes of 2026-11-29 changed (7c41359 and after): ``python benchmarks/kernel_ab.py
/path/to/old/checkout`` (e.g. a ``git worktree`` of 246dd96).

Both kernel modules are loaded side by side and called on the same arrays, old and new alternated (15 rounds
of 5 calls each); the medians and their ratio are printed. Results: ``benchmarks/SAFETY_NOTES.md``.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import numpy as np
from _timing import alternate  # benchmarks/ is on sys.path when this script runs

HERE = pathlib.Path(__file__).resolve().parent.parent
RNG = np.random.default_rng(0)


def load(path: pathlib.Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def direct_case(c: int, h: int, k: int, groups: int, kk: int, s: int, p: int) -> Callable[[Any], None]:
    x = RNG.standard_normal((1, c, h, h)).astype(np.float32)
    w = RNG.standard_normal((k, c // groups, kk, kk)).astype(np.float32)
    oh = (h + 2 * p - kk) // s + 1
    b, out = np.zeros(k, np.float32), np.empty((1, k, oh, oh), np.float32)
    return lambda mod: mod.direct(x, w, b, out, s, s, p, p, 1, 1, groups, 0, k)


def im2col_case(c: int, h: int, kk: int, s: int, p: int, ob: int) -> Callable[[Any], None]:
    x = RNG.standard_normal((1, c, h, h)).astype(np.float32)
    ow = (h + 2 * p - kk) // s + 1
    cols = np.empty((1, c * kk * kk, ob * ow), np.float32)  # a band of ob output rows
    return lambda mod: mod.im2col(x, cols, kk, kk, s, s, p, p, 1, 1, ow, 0, 0)


CASES = {
    "direct dw3x3/2 112² 32ch": direct_case(32, 112, 32, 32, 3, 2, 1),
    "direct dw3x3/1 56² 128ch": direct_case(128, 56, 128, 128, 3, 1, 1),
    "direct dense3x3/2 28² 16ch": direct_case(16, 28, 16, 1, 3, 2, 1),
    "im2col 3x3/2 56² 64ch band4": im2col_case(64, 56, 3, 2, 1, 4),
    "im2col 7x7/2 224² 3ch band8": im2col_case(3, 224, 7, 2, 3, 8),
    "im2col 3x3/1 14² 256ch band14": im2col_case(256, 14, 3, 1, 1, 14),
    "im2col 3x3/1 7² 512ch band7": im2col_case(512, 7, 3, 1, 1, 7),
}


def main() -> None:
    # the old checkout's kernels in one file (before they were split by strategy); this checkout's as installed
    old = load(pathlib.Path(sys.argv[1]) / "gemmconv/backends/_numba_kernels.py", "old_kernels")
    from gemmconv.backends import _numba_direct, _numba_im2col

    new = SimpleNamespace(direct=_numba_direct.direct, im2col=_numba_im2col.im2col)
    for name, f in CASES.items():
        f(old), f(new)  # compiled
        mo, mn = alternate(f, old, new)
        print(f"{name:32s} old {mo * 1e6:8.1f} us  new {mn * 1e6:8.1f} us  new/old {mn / mo:.2f}")


if __name__ == "__main__":
    main()
