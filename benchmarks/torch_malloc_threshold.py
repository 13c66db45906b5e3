"""torch's own time on one layer before and after glibc's malloc raises its mmap threshold, in one process.

    python benchmarks/torch_malloc_threshold.py [--layer stem7x7s2] [--batch 1]

glibc serves a large allocation with a fresh ``mmap`` (page faults on first touch, ``munmap`` on free) until a
freed mmapped block raises the threshold to that block's size (up to 32 MiB); from then on blocks of that size
come from the heap, reused. A process's history thus decides how some of torch's per-call buffers are served.
This times ``F.conv2d`` (eight rounds of eight calls, each round after a 0.15 s pause; the median of the rounds'
medians), then frees a 20 MiB array and times it again, then once more; gemmconv's ``conv2d`` is timed beside it
each time. The benchmarks against torch create and free large arrays before they time anything, so torch runs
there in the second state.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

import gemmconv
from gemmconv.tools.layers import LAYERS


def _ms(fn) -> float:
    rounds = []
    for _ in range(8):
        time.sleep(0.15)
        fn()
        ts = []
        for _ in range(8):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        rounds.append(statistics.median(ts))
    return statistics.median(rounds) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--layer", default="stem7x7s2", choices=list(LAYERS))
    p.add_argument("--batch", type=int, default=1)
    opts = p.parse_args()
    layer = LAYERS[opts.layer]
    x, w, b = layer.arrays(opts.batch)
    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))

    def report(label: str) -> None:
        t = _ms(lambda: F.conv2d(tx, tw, tb, **layer.conv_args))
        g = _ms(lambda: gemmconv.conv2d(x, w, b, **layer.conv_args))
        print(f"{label:24s} torch {t:6.2f} ms, gemmconv {g:6.2f} ms")

    print(f"{opts.layer}, N={opts.batch}, float32, torch {torch.__version__} ({torch.get_num_threads()} threads)")
    report("as started:")
    big = np.ones(20 << 20, np.uint8)  # mmapped (over the 128 KiB default threshold) ...
    del big  # ... and freed: the threshold is now 20 MiB
    report("after a 20 MiB free:")
    report("again:")


if __name__ == "__main__":
    main()
