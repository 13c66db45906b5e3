"""gemmconv.conv2d on Dask arrays: batch sharding, spatial tiling and a larger-than-memory image.

    python benchmarks/dask_scaling.py [--only batch tiling huge] [--reps 5] [--huge 50000] [--memory-limit 1.5GB]

- batch: a ResNet 3x3 layer (64 channels at 56², N=32) in chunks of 4, 8 and 16 images on a
  distributed.LocalCluster of 1 and then 2 worker processes (one thread each, BLAS one thread): median seconds
  of ``persist`` + ``wait`` (the input persisted on, and replicated to, the workers first), and the speedup;
  then 8 such calls submitted together (a stream of batches), per call.
- tiling: 8x64x224x224 (64 output channels, 3x3, padding 1) in 2x2 spatial chunks, computed in this process by
  Dask's synchronous scheduler (each block on gemmconv's own threads) and by its threaded scheduler, against the
  in-memory call on the whole array; interleaved, median of ``--reps``.
- huge: a lazily generated 1x1xSxS float32 image (S = ``--huge``; 50000: 10 GB) in 5000x5000 chunks, each chunk
  made by a seeded generator inside its task, through 2 worker processes with ``--memory-limit`` each, a 3x3
  convolution reduced to its sum. Prints the time, the workers' peak resident memory (sampled every 0.2 s), the
  throughput against the in-memory call on one 5000x5000 tile (its generation included on both sides; the
  workers are warmed on a 10000x10000 image first, as the in-memory call is), and checks a window across a
  chunk corner against the in-memory result.

Needs dask[array], distributed and rich (pip install "gemmconv[dask,benchmarks]").
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import threading
import time
import warnings

import dask
import dask.array as da
import numpy as np
from _timing import median_time  # benchmarks/ is on sys.path when this script runs
from distributed import Client, LocalCluster, wait
from rich.console import Console
from rich.table import Table

import gemmconv

TILE = 5000
STREAM = 8  # calls submitted at once in the batch case's stream
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GEMMCONV_THREADS": "1"}


def batch(reps: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((32, 64, 56, 56)).astype(np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) / 24).astype(np.float32)
    times = {}
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          env=ONE_THREAD) as cluster, Client(cluster) as client:
            for chunk in (4, 8, 16):
                with warnings.catch_warnings():  # the input is sent to the workers once, before the timings
                    warnings.simplefilter("ignore", UserWarning)
                    xd = client.persist(da.from_array(x, chunks=(chunk, 64, 56, 56)))
                    wait(xd)
                client.replicate(xd)  # on every worker, so that where a chunk was loaded does not decide
                fresh = iter(range(1, 1 << 30))

                def run(xd=xd, client=client, fresh=fresh, calls=1):
                    ys = []
                    for _ in range(calls):
                        wi = w.copy()
                        wi.flat[0] *= 1 + next(fresh) * 1e-5  # new weights, new keys: no earlier result is reused
                        ys.append(gemmconv.conv2d(xd, wi, padding=1))
                    ys = client.persist(ys)
                    wait(ys)
                    del ys

                times[workers, chunk] = median_time(run, reps)
                if chunk == 8:  # a stream of calls (a dataset in batches of 32): Dask's round trip overlapped
                    times[workers, "stream"] = median_time(functools.partial(run, calls=STREAM), reps) / STREAM
                del xd
    rows = []
    for chunk in (4, 8, 16):
        one, two = times[1, chunk], times[2, chunk]
        rows.append((f"batch: 3x3 64ch 56², N=32 in chunks of {chunk}: 1 / 2 worker processes",
                     f"{one * 1e3:.1f} / {two * 1e3:.1f} ms, speedup {one / two:.2f}x (target >= 1.6x)"))
    one, two = times[1, "stream"], times[2, "stream"]
    rows.append((f"batch: the same, chunks of 8, {STREAM} calls submitted together, per call",
                 f"{one * 1e3:.1f} / {two * 1e3:.1f} ms, speedup {one / two:.2f}x"))
    return rows


def tiling(reps: int) -> list[tuple[str, str]]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((8, 64, 224, 224)).astype(np.float32)
    w = (rng.standard_normal((64, 64, 3, 3)) / 24).astype(np.float32)
    xd = da.from_array(x, chunks=(8, 64, 112, 112))
    ref = gemmconv.conv2d(x, w, padding=1)
    np.testing.assert_allclose(gemmconv.conv2d(xd, w, padding=1).compute(scheduler="sync"), ref, rtol=1e-4,
                               atol=1e-4)
    calls = {"in-memory": lambda: gemmconv.conv2d(x, w, padding=1),
             "sync": lambda: gemmconv.conv2d(xd, w, padding=1).compute(scheduler="sync"),
             "threads": lambda: gemmconv.conv2d(xd, w, padding=1).compute(scheduler="threads", num_workers=2)}
    rounds: dict[str, list[float]] = {k: [] for k in calls}
    for _ in range(reps):  # interleaved
        for k, fn in calls.items():
            rounds[k].append(median_time(fn, 1))
    t = {k: statistics.median(v) for k, v in rounds.items()}
    return [("tiling: 8x64x224², 3x3 64->64, in memory", f"{t['in-memory'] * 1e3:.0f} ms"),
            ("tiling: 2x2 spatial chunks, synchronous scheduler", f"{t['sync'] * 1e3:.0f} ms "
             f"({t['sync'] / t['in-memory']:.2f}x, target <= 1.25x)"),
            ("tiling: 2x2 spatial chunks, threaded scheduler (2)", f"{t['threads'] * 1e3:.0f} ms "
             f"({t['threads'] / t['in-memory']:.2f}x)")]


def _tile(block_id=None, seed=7) -> np.ndarray:
    """The chunk ``block_id`` of the huge image, made inside its task."""
    i, j = block_id[2], block_id[3]
    return np.random.default_rng((seed, i, j)).random((1, 1, TILE, TILE), dtype=np.float32)


def _huge_image(size: int):
    chunks = ((1,), (1,), (TILE,) * (size // TILE), (TILE,) * (size // TILE))
    return da.map_blocks(_tile, chunks=chunks, dtype=np.float32, meta=np.empty((0, 0, 0, 0), np.float32))


def huge(size: int, memory_limit: str) -> list[tuple[str, str]]:
    w = np.full((1, 1, 3, 3), 1 / 9, np.float32)
    # the in-memory rate: one tile made and convolved here, as each task does
    one = median_time(lambda: gemmconv.conv2d(_tile((0, 0, 0, 0)), w, padding=1), 3)
    x = _huge_image(size)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      memory_limit=memory_limit, env=ONE_THREAD) as cluster, Client(cluster) as client:
        peak = {}
        done = threading.Event()

        def sample():
            while not done.is_set():
                for addr, rss in client.run(lambda: __import__("psutil").Process().memory_info().rss).items():
                    peak[addr] = max(peak.get(addr, 0), rss)
                time.sleep(0.2)

        # warm the workers (imports, compiled kernels, plans) on a smaller image of the same tiles, as the
        # in-memory figure is taken warm
        client.compute(gemmconv.conv2d(_huge_image(2 * TILE), w, padding=1).sum()).result()
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        total = float(client.compute(gemmconv.conv2d(x, w, padding=1).sum(dtype=np.float64)).result())
        elapsed = time.perf_counter() - t0
        done.set()
        sampler.join()
        # a window across the corner of four chunks, against the in-memory convolution of those four chunks
        c = TILE
        window = client.compute(gemmconv.conv2d(x, w, padding=1)[0, 0, c - 3:c + 3, c - 3:c + 3]).result()
        near = np.block([[_tile((0, 0, 0, 0)), _tile((0, 0, 0, 1))], [_tile((0, 0, 1, 0)), _tile((0, 0, 1, 1))]])
        local = gemmconv.conv2d(near, w, padding=1)[0, 0, c - 3:c + 3, c - 3:c + 3]
        np.testing.assert_allclose(window, local, rtol=1e-6, atol=1e-6)
        restarts = sum(1 for _ in client.run(lambda: None))  # both workers still there
    tiles = (size // TILE) ** 2
    rate, one_rate = tiles * TILE * TILE / elapsed, TILE * TILE / one
    gb = size * size * 4 / 1e9
    return [(f"huge: 1x1x{size}² float32 ({gb:.1f} GB), 3x3, sum, 2 workers of {memory_limit}", f"{elapsed:.1f} s"),
            ("huge: peak resident memory per worker", ", ".join(f"{v / 2**30:.2f} GiB" for v in peak.values())),
            ("huge: throughput", f"{rate / 1e6:.0f} Mpx/s against {one_rate / 1e6:.0f} Mpx/s in memory on one "
                                 f"tile ({rate / one_rate:.2f}; target >= 0.6)"),
            ("huge: workers alive at the end; window across a chunk corner", f"{restarts}; equal"),
            ("huge: sum (a check)", f"{total:.6e}")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", nargs="+", choices=["batch", "tiling", "huge"], default=["batch", "tiling", "huge"])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--huge", type=int, default=50000, help="side of the huge image, a multiple of 5000")
    parser.add_argument("--memory-limit", default="1.5GB")
    opts = parser.parse_args()
    dask.config.set({"distributed.worker.daemon": False})
    rows: list[tuple[str, str]] = []
    if "batch" in opts.only:
        rows += batch(opts.reps)
    if "tiling" in opts.only:
        rows += tiling(opts.reps)
    if "huge" in opts.only:
        rows += huge(opts.huge, opts.memory_limit)
    table = Table(title=f"gemmconv on Dask, {os.cpu_count()} cores")
    table.add_column("case")
    table.add_column("result")
    for row in rows:
        table.add_row(*row)
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
