"""The CPU scheduler's sizes on this machine: block bytes and the grain below which work stays on the calling thread.

    python benchmarks/scheduler_knobs.py block_bytes 3145728 1048576 [--layers ...] [--passes forward]
    python benchmarks/scheduler_knobs.py grain 32000000,10000000 4000000,1000000 --layers dw3x3_56 conv1x1s2_56 \\
        --batches 1 --passes forward grad_input grad_weight

Each value of the knob is set on :class:`gemmconv.backends.scheduling.WorkerThreads` in turn (``block_bytes``: the
bytes of workspace a block should hold; ``grain``: ``min_block_flops,min_direct_flops``, the sizes below which a
blocked strategy's work or ``direct``'s output planes stay on the calling thread), the plans are dropped
(``clear_caches``) and ``auto`` is timed on each case, then torch's same pass, interleaved over ``--rounds``
rounds in one process (median of ``--reps`` calls after a short pause and one untimed call). Prints each case's
median times and the geometric mean of the ratio to torch per value, with the CPU. Needs torch and the layers
of ``gemmconv.tools.layers``.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from _timing import _cpu_name, geo_mean, median_time  # benchmarks/ is on sys.path when this script runs
from vs_torch_backward import gradient_cases

import gemmconv
from gemmconv.backends.scheduling import WorkerThreads
from gemmconv.tools.layers import LAYERS

RESNET18 = ["stem7x7s2", "conv3x3_56", "conv3x3_28", "conv3x3_14", "conv3x3_7", "conv3x3s2_56", "conv1x1s2_56",
            "dw3x3_56"]


def apply(knob: str, value: str) -> None:
    """Set ``value`` of ``knob`` on the CPU scheduler."""
    if knob == "block_bytes":
        WorkerThreads.block_bytes = int(value)
    else:
        blocks, direct = (int(v) for v in value.split(","))
        WorkerThreads.min_block_flops, WorkerThreads.min_direct_flops = blocks, direct


def calls(pass_: str, name: str, n: int) -> tuple[Callable[[], Any], Callable[[], Any]]:
    """gemmconv's ``auto`` and torch's call of one pass of layer ``name`` at batch ``n`` (the backward passes as
    ``vs_torch_backward.py`` times them)."""
    if pass_ != "forward":
        ref, ours = gradient_cases(pass_, n, name, ["auto"], {"": gemmconv})
        return ours["auto"], ref
    layer = LAYERS[name]
    x, w, b = layer.arrays(n)
    args = layer.conv_args
    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
    return (lambda: gemmconv.conv2d(x, w, b, **args),
            lambda: F.conv2d(tx, tw, tb, args["stride"], args["padding"], 1, args["groups"]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("knob", choices=["block_bytes", "grain"])
    p.add_argument("values", nargs="+", help="block_bytes: bytes; grain: min_block_flops,min_direct_flops")
    p.add_argument("--layers", nargs="+", default=RESNET18, choices=list(LAYERS))
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--passes", nargs="+", default=["forward"], choices=["forward", "grad_input", "grad_weight"])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=7)
    opts = p.parse_args()
    for value in opts.values:  # each one valid before any work
        apply(opts.knob, value)
    times: dict[tuple[str, str, int, str], list[float]] = {}
    with torch.no_grad():
        for pass_ in opts.passes:
            for name in opts.layers:
                for n in opts.batches:
                    ours, ref = calls(pass_, name, n)
                    for _ in range(opts.rounds):
                        for value in opts.values:
                            apply(opts.knob, value)
                            gemmconv.clear_caches()
                            times.setdefault((pass_, name, n, value), []).append(median_time(ours, opts.reps, 0.05))
                        times.setdefault((pass_, name, n, "torch"), []).append(median_time(ref, opts.reps, 0.05))
                    row = {v: statistics.median(times[pass_, name, n, v]) * 1e3 for v in (*opts.values, "torch")}
                    print(f"{pass_:11s} {name:13s} N={n}  " + "  ".join(f"{v}: {t:.3f} ms" for v, t in row.items()),
                          flush=True)
    print(f"CPU: {_cpu_name()}; {opts.knob}; geometric mean of the ratio to torch (medians over rounds):")
    for value in opts.values:
        ratios = [statistics.median(times[key]) / statistics.median(times[(*key[:3], "torch")])
                  for key in times if key[3] == value]
        print(f"  {value}: {geo_mean(ratios):.3f} ({len(ratios)} cases)")


if __name__ == "__main__":
    main()
