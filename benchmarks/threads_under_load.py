"""What the thread rule on a busy machine costs: gemmconv's default against an explicit thread count, under load.

    python benchmarks/threads_under_load.py [--load 2] [--threads 2] [--rounds 3]

By default a call keeps no more threads busy than the cores other processes leave free (one thread beside
two CPU-bound processes on two cores). This times some of ``vs_torch.py``'s cases (``auto``, float32) with the
default and with ``gemmconv.set_threads(--threads)`` (a count used as given, busy or not; nothing spins while
the cores are taken), alternated, first idle and then beside ``--load`` processes running ``while True: pass``:
the medians over rounds of the median of five calls, and each under load over the default's idle time.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from _timing import median_time  # benchmarks/ is on sys.path when this script runs

import gemmconv
from gemmconv.tools.layers import LAYERS

CASES = [(8, "dw3x3_56"), (8, "conv3x3_56"), (8, "conv3x3s2_56"), (8, "stem7x7s2"), (8, "conv3x3_7"),
         (1, "conv3x3s2_56"), (1, "conv3x3_7"), (1, "stem7x7s2")]


def _times(data: dict, threads: int, rounds: int) -> dict:
    out: dict = {}
    for r in range(rounds):
        for key, (layer, x, w, b) in data.items():
            for variant in (("default", "set") if r % 2 == 0 else ("set", "default")):
                old = gemmconv.set_threads(threads) if variant == "set" else None
                try:
                    t = median_time(lambda: gemmconv.conv2d(x, w, b, **layer.conv_args), 5, settle=0.15)
                finally:
                    if old is not None:
                        gemmconv.set_threads(old.threads, pin=old.pin, keep_blas=old.keep_blas, spin_us=old.spin_us)
                out.setdefault((key, variant), []).append(t)
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--load", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    opts = p.parse_args()
    data = {}
    for n, name in CASES:
        layer = LAYERS[name]
        data[n, name] = (layer, *layer.arrays(n))
        gemmconv.conv2d(*data[n, name][1:], **layer.conv_args)
    idle = _times(data, opts.threads, opts.rounds)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(opts.load)]
    try:
        time.sleep(1.0)  # one interval of the load seen by gemmconv's monitor
        busy = _times(data, opts.threads, opts.rounds)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
    print(f"ms; default: gemmconv's own thread rule; set: set_threads({opts.threads}); (x): over the default's idle "
          f"time; load: {opts.load} busy processes")
    for key in data:
        base = idle[key, "default"]
        print(f"N={key[0]} {key[1]:14s} idle: default {base * 1e3:6.2f}, set {idle[key, 'set'] * 1e3:6.2f} | "
              f"load: default {busy[key, 'default'] * 1e3:6.2f} ({busy[key, 'default'] / base:.2f}x), "
              f"set {busy[key, 'set'] * 1e3:6.2f} ({busy[key, 'set'] / base:.2f}x)")


if __name__ == "__main__":
    main()
