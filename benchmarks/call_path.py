"""The Python frames between a plan's call and its first compiled kernel, per strategy.

    python benchmarks/call_path.py

For a small convolution (x 1x8x16x16, w 8x8x3x3, padding 1: one block, on the calling thread) each strategy's
plan is called once with the NumPy backend's compiled kernels wrapped, and the stack at the first kernel launch
is printed from ``ConvPlan.__call__`` down: the frames a reader follows from a plan into its kernel.
"""

from __future__ import annotations

import traceback

import numpy as np

import gemmconv
from gemmconv.backends import numpy_backend


def main() -> None:
    x = np.ones((1, 8, 16, 16), np.float32)
    w = np.ones((8, 8, 3, 3), np.float32)
    for strategy in ("im2col", "winograd", "winograd_f2", "1x1"):
        kernel_w = w[:, :, :1, :1] if strategy == "1x1" else w
        p = gemmconv.plan(x, np.ascontiguousarray(kernel_w), padding=0 if strategy == "1x1" else 1, strategy=strategy)
        saved = dict(numpy_backend._KERNELS)
        stacks: list[tuple[str, list[traceback.FrameSummary]]] = []

        def wrap(name, fn):
            def launch(*args, **kwargs):
                stacks.append((name, traceback.extract_stack()[:-1]))
                return fn(*args, **kwargs)
            return launch

        numpy_backend._KERNELS.update({k: wrap(k, f) for k, f in saved.items()})
        try:
            p(x, np.ascontiguousarray(kernel_w))
        finally:
            numpy_backend._KERNELS.update(saved)
        if not stacks:  # a GEMM alone (the unstrided 1x1): no compiled kernel of gemmconv's
            listed = " -> ".join(getattr(p, "kernels", ()))  # (plans before 65c438c do not list them)
            print(f"{strategy}: kernels {listed}; no compiled kernel of gemmconv's runs")
            continue
        name, stack = stacks[0]
        start = max(i for i, f in enumerate(stack) if f.name == "__call__" and f.filename.endswith("plan.py"))
        path = [(f.filename.split("gemmconv/")[-1], f.name) for f in stack[start:]]
        modules = dict.fromkeys(m for m, _ in path)
        print(f"{strategy}: first kernel {name!r} after {len(path)} frames in {len(modules)} modules")
        print("    " + " -> ".join(f"{m}:{fn}" for m, fn in path))


if __name__ == "__main__":
    main()
