"""The Python frames between a plan's call and its first compiled kernel, per strategy.

    python benchmarks/call_path.py

For a small convolution (x 1x8x16x16, w 8x8x3x3, padding 1: one block, on the calling thread) each strategy's
plan of each pass (forward, grad_input, grad_weight, the transposed convolution) is called once with the NumPy
backend's compiled kernels wrapped, and the stack at the first kernel launch on the calling thread is printed
from the plan's ``__call__`` down: the frames a reader follows from a plan into its kernel. Run it on another
checkout with ``PYTHONPATH=/path/to/checkout python benchmarks/call_path.py`` from outside this one.
"""

from __future__ import annotations

import traceback

import numpy as np

import gemmconv
from gemmconv.backends import numpy_backend


def plans(strategy: str) -> list[tuple[str, object, tuple]]:
    """``(label, plan, its arguments)`` of each pass of ``strategy`` on the small layer (the 1x1 on a 1x1 one)."""
    x = np.ones((1, 8, 16, 16), np.float32)
    w = np.ones((8, 8, 1, 1) if strategy == "1x1" else (8, 8, 3, 3), np.float32)
    pad = 0 if strategy == "1x1" else 1
    gy = np.ones((1, 8, 16, 16), np.float32)
    found = [(strategy, gemmconv.plan(x, w, padding=pad, strategy=strategy), (x, w))]
    if strategy == "winograd_f2":
        return found
    found.append((f"{strategy} grad_input", gemmconv.plan_grad_input(x.shape, w, gy, padding=pad, strategy=strategy),
                  (w, gy)))
    found.append((f"{strategy} grad_weight", gemmconv.plan_grad_weight(x, w.shape, gy, padding=pad,
                                                                       strategy=strategy), (x, gy)))
    found.append((f"{strategy} transposed", gemmconv.plan_conv_transpose2d(gy, w, padding=pad, strategy=strategy),
                  (gy, w)))
    return found


def main() -> None:
    for strategy in ("im2col", "winograd", "winograd_f2", "direct", "1x1"):
        for label, p, args in plans(strategy):
            path(label, p, args)


def path(label: str, p, args: tuple) -> None:
    """Print the frames from ``p``'s ``__call__`` to the first compiled kernel it launches."""
    saved = dict(numpy_backend._KERNELS)
    stacks: list[tuple[str, list[traceback.FrameSummary]]] = []

    def wrap(name, fn):
        def launch(*args, **kwargs):
            stacks.append((name, traceback.extract_stack()[:-1]))
            return fn(*args, **kwargs)
        return launch

    numpy_backend._KERNELS.update({k: wrap(k, f) for k, f in saved.items()})
    try:
        p(*args)
    finally:
        numpy_backend._KERNELS.update(saved)
    if not stacks:  # a GEMM alone (the unstrided 1x1): no compiled kernel of gemmconv's
        listed = " -> ".join(getattr(p, "kernels", ()))  # (plans before 65c438c do not list them)
        print(f"{label}: kernels {listed}; no compiled kernel of gemmconv's runs")
        return
    def calls(stack: list[traceback.FrameSummary]) -> list[int]:  # the plan's __call__ frames in a stack
        return [i for i, f in enumerate(stack) if f.name == "__call__" and f.filename.endswith("plan.py")]

    # the first kernel the calling thread launches (a pool thread's stack does not reach the plan)
    name, stack = next((s for s in stacks if calls(s[1])), stacks[0])
    if not calls(stack):
        print(f"{label}: kernel {name!r} ran on a pool thread only")
        return
    start = max(calls(stack))
    frames = [(f.filename.split("gemmconv/")[-1], f.name) for f in stack[start:]]
    modules = dict.fromkeys(m for m, _ in frames)
    print(f"{label}: first kernel {name!r} after {len(frames)} frames in {len(modules)} modules")
    print("    " + " -> ".join(f"{m}:{fn}" for m, fn in frames))


if __name__ == "__main__":
    main()
