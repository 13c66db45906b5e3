"""How long a row should be when a long 1-D signal is folded into rows (``gemmconv/strategies/rows.py``).

    python benchmarks/rows_sweep.py [--outputs -1 0 256 512 1024 2048] [--batches 1 4] [--rounds 3] [--reps 5]
                                    [--layers sig_k9_16000 ...] [--dtype float32] [--strategy auto]

For each round, layer, batch and pass, torch's pass and one gemmconv plan per row length are timed back to back
(median of ``--reps`` calls after a pause and one untimed call). Each plan is made with its row length in force
(``rows.OUTPUTS``, the other bounds of the fold lifted), so the plans differ only in the fold: ``0`` is the signal
unfolded (one row), ``-1`` the package's own rule. The table gives the median time over rounds in ms and its ratio
to torch's (float32 only). Needs torch (pip install torch==2.13.0) and rich.
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _timing import median_time  # benchmarks/ is on sys.path when this script runs
from rich.console import Console
from rich.table import Table

import gemmconv
from gemmconv.strategies import rows
from gemmconv.tools.layers import LAYERS_ND

PASSES = ("forward", "grad_input", "grad_weight")
UNFOLDED = 10**9  # rows this long never fit twice in a signal


def plans(pass_: str, x: Any, w: Any, b: Any, gy: Any, args: dict, strategy: str, outputs: list[int]) -> dict:
    """One plan of ``pass_`` per row length, each made with that length in force, as calls of no arguments."""
    made = {}
    saved = rows.OUTPUTS, rows.ROW_BYTES, rows.FOLD_BYTES
    try:
        for s in outputs:
            rows.OUTPUTS, rows.ROW_BYTES, rows.FOLD_BYTES = saved if s < 0 else (s or UNFOLDED, 0, 0)
            gemmconv.clear_caches()
            if pass_ == "forward":
                p = gemmconv.plan(x, w, b, strategy=strategy, **args)
                made[s] = lambda p=p: p(x, w, b)
            elif pass_ == "grad_input":
                p = gemmconv.plan_grad_input(x.shape, w, gy, strategy=strategy, **args)
                made[s] = lambda p=p: p(w, gy)
            else:
                p = gemmconv.plan_grad_weight(x, w.shape, gy, strategy=strategy, **args)
                made[s] = lambda p=p: p(x, gy)
    finally:
        rows.OUTPUTS, rows.ROW_BYTES, rows.FOLD_BYTES = saved
        gemmconv.clear_caches()
    return made


def torch_pass(pass_: str, x: Any, w: Any, b: Any, gy: Any, layer: Any) -> Any:
    tx, tw, tb, tgy = (torch.from_numpy(a) for a in (x, w, b, gy))
    if pass_ == "forward":
        return lambda: F.conv1d(tx, tw, tb, **layer.conv_args)
    mask = [pass_ == "grad_input", pass_ == "grad_weight", False]
    return lambda: torch.ops.aten.convolution_backward(tgy, tx, tw, None, [layer.stride], [layer.padding], [1], False,
                                                       [0], layer.groups, mask)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outputs", type=int, nargs="+", default=[-1, 0, 256, 512, 1024, 2048])
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--layers", nargs="+", default=[n for n, v in LAYERS_ND.items() if v.ndim == 1])
    ap.add_argument("--passes", nargs="+", default=list(PASSES), choices=PASSES)
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--strategy", default="auto")
    opts = ap.parse_args()
    rng = np.random.default_rng(0)
    cases = {}
    for name in opts.layers:
        layer = LAYERS_ND[name]
        for n in opts.batches:
            x, w, b = layer.arrays(n, opts.dtype)
            y = gemmconv.conv1d(x, w, b, **layer.conv_args)
            gy = rng.standard_normal(y.shape).astype(opts.dtype)
            for pass_ in opts.passes:
                calls = plans(pass_, x, w, b, gy, layer.conv_args, opts.strategy, opts.outputs)
                calls["torch"] = torch_pass(pass_, x, w, b, gy, layer) if opts.dtype == "float32" else None
                cases[(name, n, pass_)] = {k: v for k, v in calls.items() if v is not None}
    times: dict[tuple, list[float]] = {}
    for _ in range(opts.rounds):
        for key, calls in cases.items():
            for who, call in calls.items():
                times.setdefault((*key, who), []).append(median_time(call, opts.reps, settle=0.05))
    table = Table(title=f"{opts.dtype}, strategy {opts.strategy}: ms (ratio to torch), median of {opts.rounds} rounds")
    for col in ("layer", "N", "pass", *({-1: "rule", 0: "one row"}.get(s, f"S={s}") for s in opts.outputs), "torch"):
        table.add_column(col)
    for key, calls in cases.items():
        med = {who: statistics.median(times[(*key, who)]) * 1e3 for who in calls}
        base = med.get("torch")
        cells = [f"{med[s]:.2f}" + (f" ({med[s] / base:.2f}x)" if base else "") for s in opts.outputs]
        table.add_row(key[0], str(key[1]), key[2], *cells, f"{base:.2f}" if base else "-")
    Console(width=200).print(table)


if __name__ == "__main__":
    main()
