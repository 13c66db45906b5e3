"""Two processes side by side against one process twice: does gemmconv share a machine with itself?

    python benchmarks/two_process.py [--rounds 3] [--calls 5]

A worker process runs the 16 forward cases of ``benchmarks/vs_torch.py`` (ResNet-18's layers and a depthwise
3x3 at N=1 and N=8, ``auto``), ``--calls`` calls each, on one thread (``OPENBLAS_NUM_THREADS=1``: one worker
and a single-threaded BLAS), unpinned. Each round times, interleaved:

- **two at once**: two worker processes started together, until both have finished;
- **one, twice**: one worker process that runs the cases twice in a row.

The target: two at once within 10% of one twice. On two free cores the two at once should in fact take about half
as long, so the script also gives the slowdown of a process beside the other: two at once over half of one
twice (1.0: no interference). The worker processes first compile or load their kernels and build their
arrays; only the runs of the cases are timed (each process waits at a barrier file, so that both start
together). Prints each round's wall times and the median ratio, with the CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from _timing import _cpu_name  # benchmarks/ is on sys.path when this script runs

WORKER = r"""
import os, sys, time
import numpy as np
import gemmconv
from gemmconv.tools.layers import LAYERS
layers = ["stem7x7s2", "conv3x3_56", "conv3x3_28", "conv3x3_14", "conv3x3_7", "conv3x3s2_56", "conv1x1s2_56",
          "dw3x3_56"]
cases = [(LAYERS[name], LAYERS[name].arrays(n)) for n in (1, 8) for name in layers]
for layer, (x, w, b) in cases:
    gemmconv.conv2d(x, w, b, **layer.conv_args)  # compiled and planned before the clock starts
go, repeat, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.001)
start = time.perf_counter()
for _ in range(repeat):
    for layer, (x, w, b) in cases:
        for _ in range(calls):
            gemmconv.conv2d(x, w, b, **layer.conv_args)
print(time.perf_counter() - start, flush=True)
"""


def _run(count: int, repeat: int, calls: int) -> float:
    """Wall seconds from the start signal until ``count`` workers, each running the cases ``repeat`` times, end."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        go = os.path.join(tmp, "go")
        procs = [subprocess.Popen([sys.executable, "-c", WORKER, go, str(repeat), str(calls)], env=env,
                                  stdout=subprocess.PIPE, text=True) for _ in range(count)]
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        time.sleep(0.2)
        start = time.perf_counter()
        open(go, "w").close()
        for p in procs:
            p.wait()
        wall = time.perf_counter() - start
        if any(p.returncode for p in procs):
            raise SystemExit("a worker process failed")
    return wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--calls", type=int, default=5, help="calls of each case per pass")
    args = p.parse_args()
    ratios, slowdowns = [], []
    print(f"CPU: {_cpu_name()}; {len(os.sched_getaffinity(0))} allowed cores; {args.calls} calls of each of the 16 "
          f"cases per pass, one thread per process")
    for r in range(args.rounds):
        two = _run(2, 1, args.calls)
        one = _run(1, 2, args.calls)
        ratios.append(two / one)
        slowdowns.append(two / (one / 2))
        print(f"round {r + 1}: two processes at once {two:.2f} s, one process twice {one:.2f} s, ratio {two / one:.2f},"
              f" slowdown of each beside the other {two / (one / 2):.2f}")
    print(f"median ratio {statistics.median(ratios):.2f} (target: at most 1.10); median slowdown of a process beside "
          f"the other {statistics.median(slowdowns):.2f}")


if __name__ == "__main__":
    main()
