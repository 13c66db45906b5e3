"""Fit the FFT strategy's tiling cost model to this machine: every large-kernel layer at every candidate length.

    python benchmarks/fft_tiles_fit.py [--json times.json]

For each layer of :data:`gemmconv.tools.layers.LAYERS_LARGE` (N=1, and N=8 for four 2-D ones) and three smaller
ones, the forward pass of ``strategy="fft"`` is timed (median of 3 calls after one untimed) with its transform
length forced to each candidate of the cost model in turn. The three terms of the model (transform flops, mixing
flops, spectra bytes; ``gemmconv/strategies/fft_spectra.py``) are fitted to the times by non-negative least squares
on the relative error; the script prints the fitted rates, and per layer the fastest length against the one the
fitted model picks. Needs SciPy.
"""

from __future__ import annotations

import argparse
import collections
import json
import math

import numpy as np
from _timing import median_time  # benchmarks/ is on sys.path when this script runs
from scipy.optimize import nnls

import gemmconv
from gemmconv.strategies import fft_tiling
from gemmconv.tools.layers import LAYERS_LARGE, LayerND

EXTRA = [LayerND("k5_28", 64, (28, 28), 64, (5, 5), padding=2), LayerND("k3_56", 64, (56, 56), 64, (3, 3), padding=1),
         LayerND("sig_k33_4096", 16, (4096,), 16, (33,), padding=16)]
FEATURES = ("fft", "mix", "moved")


def measure() -> list[dict]:
    layers = {**LAYERS_LARGE, **{layer.name: layer for layer in EXTRA}}
    cases = [(name, 1) for name in layers] + [(name, 8) for name in ("k7_56", "k11_56", "k15_56", "dw31_28")]
    backend = gemmconv.get_backend(np.zeros(1))
    candidates = fft_tiling._fast_lengths
    rows = []
    for name, n in cases:
        layer = layers[name]
        dtype = "complex64" if name.startswith("sigpy") else "float32"
        real = dtype == "float32"
        x, w, b = layer.arrays(n, dtype)
        outputs = tuple(s + 2 * layer.padding - k + 1 for s, k in zip(layer.size, layer.kernel, strict=True))
        cg = layer.c // layer.groups
        try:
            for t in candidates(backend, layer.kernel[0], outputs[0], real):
                def forced(b_, e, o, r, t=t):
                    return [min(max(t, e), candidates(b_, e, o, r)[-1])]

                fft_tiling._fast_lengths = forced
                gemmconv.clear_caches()
                geometry = fft_tiling.Geometry(outputs, layer.kernel, n, layer.c, layer.k, cg, real, 4)
                tile = fft_tiling.tiling(backend, geometry)
                size = math.prod(tile.length)
                transforms = n * (layer.c + layer.k) * tile.tiles
                if transforms * size > 4e8:  # too slow to be worth timing
                    continue
                plan = gemmconv.plan(x, w, b, strategy="fft", **layer.conv_args)
                seconds = median_time(lambda p=plan: p(x, w, b), 3)
                rows.append(dict(layer=name, n=n, length=tile.length[0], seconds=seconds,
                                 fft=2.5 * size * math.log2(size) * transforms * (1 if real else 2),
                                 mix=8 * layer.k * cg * n * tile.tiles * tile.frequencies,
                                 moved=(2 * transforms + layer.k * cg) * tile.frequencies * 8))
                print(rows[-1], flush=True)
        finally:
            fft_tiling._fast_lengths = candidates
            gemmconv.clear_caches()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the timings here")
    opts = ap.parse_args()
    rows = measure()
    if opts.json:
        with open(opts.json, "w") as f:
            json.dump(rows, f)
    a = np.array([[r[k] for k in FEATURES] for r in rows])
    t = np.array([r["seconds"] for r in rows])
    coef, _ = nnls(a / t[:, None], np.ones(len(t)))
    print("rates:", ", ".join(f"{k} {1 / c:.3g}/s" if c > 0 else f"{k} unused" for k, c in zip(FEATURES, coef,
                                                                                                strict=True)))
    by = collections.defaultdict(list)
    for r, p in zip(rows, a @ coef, strict=True):
        by[(r["layer"], r["n"])].append((r["seconds"], p, r["length"]))
    for (name, n), found in by.items():
        best, pick = min(found), min(found, key=lambda v: v[1])
        print(f"{name} N={n}: fastest length {best[2]} ({best[0] * 1e3:.1f} ms), the model picks {pick[2]} "
              f"({pick[0] * 1e3:.1f} ms, {pick[0] / best[0]:.2f}x)")


if __name__ == "__main__":
    main()
