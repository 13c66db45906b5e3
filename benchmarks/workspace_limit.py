"""im2col with and without a workspace limit: time (interleaved) and peak extra memory.

    python benchmarks/workspace_limit.py [--limit-mib 64] [--batches 1 8] [--rounds 5] [--reps 3]

For every layer of ``gemmconv.tools.layers.LAYERS``: the median time of im2col unbounded and with the
limit (alternating in one process, median per round, ratio per round), and the peak memory each
holds beyond its result (tracemalloc, buffers not reused for the measured call).
"""

from __future__ import annotations

import argparse
import statistics

from _timing import median_time  # benchmarks/ is on sys.path when this script runs
from rich.console import Console
from rich.table import Table

import gemmconv
from gemmconv.tools.layers import LAYERS


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--limit-mib", type=float, default=64)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    limit = int(args.limit_mib * 2**20)
    table = Table(title=f"im2col, workspace_limit={args.limit_mib:g} MiB against unbounded, float32, "
                        f"median of {args.rounds} interleaved rounds")
    for col in ("N", "layer", "unbounded ms", "limited ms", "ratio (range)", "peak unbounded", "peak limited",
                "under limit"):
        table.add_column(col, justify="right")
    worst = 0.0
    for n in args.batches:
        for name, layer in LAYERS.items():
            x, w, b = layer.arrays(n)
            backend = gemmconv.get_backend(x)

            def run(lim):
                return gemmconv.conv2d(x, w, b, strategy="im2col", workspace_limit=lim, **layer.conv_args)

            ratios, t_full, t_lim = [], [], []
            for _ in range(args.rounds):
                a = median_time(lambda: run(None), args.reps)
                c = median_time(lambda: run(limit), args.reps)
                t_full.append(a)
                t_lim.append(c)
                ratios.append(c / a)
            _, peak_full = backend.profiler.peak_memory(lambda: run(None))
            _, peak_lim = backend.profiler.peak_memory(lambda: run(limit))
            r = statistics.median(ratios)
            worst = max(worst, r)
            table.add_row(str(n), name, f"{statistics.median(t_full) * 1e3:.2f}",
                          f"{statistics.median(t_lim) * 1e3:.2f}", f"{r:.2f}x ({min(ratios):.2f}-{max(ratios):.2f})",
                          f"{peak_full / 2**20:.1f} MiB", f"{peak_lim / 2**20:.1f} MiB",
                          "yes" if peak_lim <= limit else "NO")
    console = Console(width=160)
    console.print(table)
    console.print(f"worst median ratio limited/unbounded: {worst:.2f}x (target <= 1.1x)")


if __name__ == "__main__":
    main()
