"""Every strategy against torch.nn.functional.conv2d on the named layer set, interleaved in one process.

    python benchmarks/vs_torch.py [--batch 1] [--rounds 5] [--reps 5] [--dtype float32]

For each round and layer, torch and each strategy are timed back to back (median of
``--reps`` calls each, after a short pause and one untimed call, so that no library's idle
threads are still spinning), and the ratio strategy/torch is taken per round.
The table shows the median time over rounds and the median ratio with its spread
(min-max over rounds): single absolute times on a shared machine are noise, ratios of
interleaved runs are not. Needs torch (pip install torch==2.13.0) and rich.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

import gemmconv
from gemmconv.layers import LAYERS


def _median_time(fn, reps: int, settle: float = 0.02) -> float:
    # Let the previous library's idle worker threads (torch's OpenMP, BLAS, numba) stop spinning
    # first: on a 2-core machine a spinning pool of one library slows the other one down.
    time.sleep(settle)
    fn()
    ts = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--layers", nargs="*", default=list(LAYERS))
    args = p.parse_args()
    strategies = gemmconv.list_strategies()
    times: dict[tuple[str, str], list[float]] = {}
    ratios: dict[tuple[str, str], list[float]] = {}
    errors: dict[tuple[str, str], float] = {}
    refused: dict[tuple[str, str], str] = {}

    cases = {}
    for name in args.layers:
        layer = LAYERS[name]
        x, w, b = layer.arrays(args.batch, args.dtype)
        tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
        ref = F.conv2d(tx.double(), tw.double(), tb.double(), **layer.conv_args).numpy()
        cases[name] = (layer, x, w, b, tx, tw, tb, ref)
        for s in strategies:  # warm-up, error, refusals
            try:
                y = gemmconv.conv2d(x, w, b, strategy=s, **layer.conv_args)
                errors[name, s] = float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))
            except gemmconv.StrategyNotSupportedError as e:
                refused[name, s] = e.reason.split(" (received")[0]
        F.conv2d(tx, tw, tb, **layer.conv_args)

    for _ in range(args.rounds):
        for name, (layer, x, w, b, tx, tw, tb, ref) in cases.items():
            t_torch = _median_time(lambda: F.conv2d(tx, tw, tb, **layer.conv_args), args.reps)
            times.setdefault((name, "torch"), []).append(t_torch)
            for s in strategies:
                if (name, s) in refused:
                    continue
                t = _median_time(lambda: gemmconv.conv2d(x, w, b, strategy=s, **layer.conv_args), args.reps)
                times.setdefault((name, s), []).append(t)
                ratios.setdefault((name, s), []).append(t / t_torch)

    table = Table(title=f"gemmconv / torch {torch.__version__} conv2d, N={args.batch}, {args.dtype}, "
                        f"{torch.get_num_threads()} threads, median of {args.rounds} interleaved rounds "
                        "(ms, ratio to torch, ratio spread)")
    table.add_column("layer")
    table.add_column("torch ms", justify="right")
    for s in strategies:
        table.add_column(s, justify="right")
    for name in cases:
        row = [name, f"{statistics.median(times[name, 'torch']) * 1e3:.2f}"]
        for s in strategies:
            if (name, s) in refused:
                row.append("-")
                continue
            r = ratios[name, s]
            row.append(f"{statistics.median(times[name, s]) * 1e3:.2f} ({statistics.median(r):.2f}x "
                       f"{min(r):.2f}-{max(r):.2f})")
        table.add_row(*row)
    console = Console(width=250)
    console.print(table)
    err = Table(title="relative error max|y-ref|/max|ref| vs torch float64")
    err.add_column("layer")
    for s in strategies:
        err.add_column(s, justify="right")
    for name in cases:
        err.add_row(name, *(f"{errors[name, s]:.1e}" if (name, s) in errors else "-" for s in strategies))
    console.print(err)
    chosen = {name: gemmconv.choose_strategy(c[1], c[2], c[3], **c[0].conv_args) for name, c in cases.items()}
    console.print("auto chose: " + ", ".join(f"{k}: {v}" for k, v in chosen.items()))


if __name__ == "__main__":
    main()
