"""Per-call time of a tiny convolution, gemmconv against torch, interleaved in one process (the per-call
cost that the plans of 2026-11-29 cut; figures in ``benchmarks/CPU_NOTES.md``).

    python benchmarks/overhead.py [--rounds 7] [--calls 2000] [--base CHECKOUT]

The convolution is so small (x 1x8x8x8, w 8x8x3x3, padding 1: 74 kFLOP) that its time is the cost of a call:
validation, dispatch and the launch of the kernel. Each round times ``--calls`` calls of torch's
``F.conv2d`` and of ``gemmconv.conv2d`` with each strategy, one after the other; the table gives the median
over rounds of the mean time per call and of its ratio to torch's in the same round. Where gemmconv has
plans (``gemmconv.plan``), a planned call is timed too. Needs torch (pip install torch==2.13.0).
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from _packages import load_package  # benchmarks/ is on sys.path when this script runs

import gemmconv

STRATEGIES = ["direct", "im2col", "winograd", "winograd_f2", "auto"]


def per_call(fn: Callable[[], object], calls: int) -> float:
    """Mean seconds per call over ``calls`` calls (after 50 untimed ones)."""
    for _ in range(50):
        fn()
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


def cases_of(mod, x, w, b) -> dict[str, Callable[[], object]]:
    """The timed calls of package ``mod`` (this gemmconv, or another checkout's loaded by ``--base``)."""
    cases: dict[str, Callable[[], object]] = {
        f"conv2d {s}": (lambda s=s: mod.conv2d(x, w, b, padding=1, strategy=s)) for s in STRATEGIES}
    if hasattr(mod, "plan"):
        for s in STRATEGIES:
            p = mod.plan(x, w, b, padding=1, strategy=s)
            cases[f"plan {s}"] = lambda p=p: p(x, w, b)
        out = np.empty((1, 8, 8, 8), np.float32)
        p_auto = mod.plan(x, w, b, padding=1)
        cases["plan auto, out="] = lambda: p_auto(x, w, b, out=out)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--base", help="a checkout of another commit (e.g. a git worktree): its gemmconv is timed "
                                       "too, interleaved, and the table gives both and their ratio")
    opts = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 8, 8, 8)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
    packages = {"": gemmconv}
    if opts.base:
        packages = {"base": load_package(opts.base), "": gemmconv}
    cases = {(who, name): fn for who, mod in packages.items() for name, fn in cases_of(mod, x, w, b).items()}
    times: dict[object, list[float]] = {key: [] for key in ["torch", *cases]}
    ratios: dict[object, list[float]] = {key: [] for key in cases}
    with torch.no_grad():
        for r in range(opts.rounds):
            t_torch = per_call(lambda: F.conv2d(tx, tw, tb, padding=1), opts.calls)
            times["torch"].append(t_torch)
            order = list(cases.items())
            for key, fn in order if r % 2 == 0 else order[::-1]:  # which package goes first alternates
                t = per_call(fn, opts.calls)
                times[key].append(t)
                ratios[key].append(t / t_torch)
    print(f"tiny convolution (x 1x8x8x8, w 8x8x3x3, padding 1), float32, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads; median of {opts.rounds} rounds of {opts.calls} calls")
    if opts.base:
        print(f"before: gemmconv from {opts.base}; after: {gemmconv.__file__}; interleaved in this process")
    for who in packages:
        print(f"\n{'before' if who else 'after' if opts.base else ''}")
        print(f"{'case':22s} {'us per call':>12s} {'x torch':>8s}" + (f" {'after/before':>13s}" if opts.base else ""))
        print(f"{'torch F.conv2d':22s} {statistics.median(times['torch']) * 1e6:12.1f} {1.0:8.2f}")
        for (owner, name) in cases:
            if owner != who:
                continue
            us, ratio = statistics.median(times[who, name]) * 1e6, statistics.median(ratios[who, name])
            row = f"{name:22s} {us:12.1f} {ratio:8.2f}"
            if opts.base and not who and ("base", name) in times:
                change = statistics.median(a / b for a, b in zip(times["", name], times["base", name], strict=True))
                row += f" {change:13.2f}"
            print(row)


if __name__ == "__main__":
    main()
