"""How much one layer's time depends on the process it runs in: the same calls in several fresh processes.

    python benchmarks/call_spread.py LAYER [--batch 1] [--processes 5] [--rounds 16] [--torch] [--package DIR]

Each process (started afresh, one after the other) times ``--rounds`` rounds of five ``gemmconv.conv2d`` calls
of the layer (``gemmconv.tools.layers.LAYERS``, float32, ``auto``), each round after a 0.15 s pause and one untimed
call, as ``vs_torch.py`` does; with ``--torch`` also ``F.conv2d`` the same way, alternating with gemmconv round
by round. Per process: quantiles of the single calls (min, 10%, 25%, median, 75%, 90%, max), in ms. Then the
spread of the processes' medians (largest / smallest): the figure a three-run table's "spread of own time"
samples, here from more processes and more calls. ``--package DIR`` imports the ``gemmconv`` package found in
``DIR`` instead (a ``git worktree`` of another commit), to compare two commits.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import json
import statistics
import subprocess
import sys
import time

QUANTILES = (0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


class _PackageFrom:
    """A finder for ``gemmconv`` in one directory, ahead of the installed (or editable) package."""

    def __init__(self, root: str) -> None:
        self.root = root

    def find_spec(self, name: str, path: object = None, target: object = None) -> object:
        if name != "gemmconv":
            return None
        return importlib.machinery.PathFinder.find_spec(name, [self.root])


def child(layer_name: str, batch: int, rounds: int, with_torch: bool) -> dict[str, list[float]]:
    """Seconds of every timed call in this process, per library."""
    import gemmconv
    from gemmconv.tools.layers import LAYERS

    layer = LAYERS[layer_name]
    x, w, b = layer.arrays(batch)
    calls = {"gemmconv": lambda: gemmconv.conv2d(x, w, b, **layer.conv_args)}
    if with_torch:
        import torch
        import torch.nn.functional as F

        tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
        calls["torch"] = lambda: F.conv2d(tx, tw, tb, **layer.conv_args)
    for fn in calls.values():
        fn()  # compiled kernels, plans, thread pools
    times: dict[str, list[float]] = {who: [] for who in calls}
    for r in range(rounds):
        for who in (list(calls) if r % 2 == 0 else list(reversed(calls))):
            fn = calls[who]
            time.sleep(0.15)
            fn()
            for _ in range(5):
                t0 = time.perf_counter()
                fn()
                times[who].append(time.perf_counter() - t0)
    return times


def quantiles(values: list[float]) -> list[float]:
    s = sorted(values)
    return [s[round(q * (len(s) - 1))] for q in QUANTILES]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("layer")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--processes", type=int, default=5)
    p.add_argument("--rounds", type=int, default=16)
    p.add_argument("--torch", action="store_true", help="also time torch's F.conv2d, alternating by round")
    p.add_argument("--package", help="import gemmconv from this directory (a checkout of another commit)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    opts = p.parse_args()
    if opts.child:
        if opts.package:
            sys.meta_path.insert(0, _PackageFrom(opts.package))
        import gemmconv

        print(json.dumps({"package": gemmconv.__file__,
                          "times": child(opts.layer, opts.batch, opts.rounds, opts.torch)}))
        return
    medians: dict[str, list[float]] = {}
    where = f" (gemmconv from {opts.package})" if opts.package else ""
    print(f"{opts.layer}, N={opts.batch}{where}: ms per call, quantiles {', '.join(f'{q:.0%}' for q in QUANTILES)}")
    for i in range(opts.processes):
        cmd = [sys.executable, __file__, opts.layer, "--batch", str(opts.batch), "--rounds", str(opts.rounds),
               "--child"] + (["--torch"] if opts.torch else []) + (["--package", opts.package] if opts.package else [])
        found = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        times = found["times"]
        if i == 0:
            print(f"gemmconv imported from {found['package']}")
        for who, ts in times.items():
            qs = quantiles(ts)
            medians.setdefault(who, []).append(qs[3])
            print(f"process {i + 1} {who:8s} " + " ".join(f"{q * 1e3:6.2f}" for q in qs))
    for who, ms in medians.items():
        print(f"{who}: medians {' '.join(f'{m * 1e3:.2f}' for m in ms)} ms; spread between processes "
              f"{max(ms) / min(ms):.2f}; median of medians {statistics.median(ms) * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
