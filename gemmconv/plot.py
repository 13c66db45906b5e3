"""Plots of comparison records (matplotlib, from the ``benchmarks`` extra)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np


def plot_records(records: Sequence[Any], path: str | os.PathLike, peaks: dict[str, float]) -> None:
    """Write a PNG: per-layer time bars (one per strategy) and a roofline of every measurement.

    The roofline's ceilings are the GEMM rate and the copy bandwidth measured in the same run
    (``peaks`` from :func:`gemmconv.compare.machine_peaks`); a point's intensity is its layer's
    direct flop count over the bytes of x, w, b and y.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in records if r.status == "ok"]
    layers = list(dict.fromkeys(r.layer for r in records))
    strategies = list(dict.fromkeys(r.strategy for r in ok))
    fig, (bars, roof) = plt.subplots(1, 2, figsize=(15, 5.5))

    width = 0.8 / max(1, len(strategies))
    for i, s in enumerate(strategies):
        ms = [next((r.median_s * 1e3 for r in ok if r.layer == lay and r.strategy == s), np.nan) for lay in layers]
        bars.bar(np.arange(len(layers)) + i * width, ms, width, label=s)
    bars.set_xticks(np.arange(len(layers)) + 0.4 - width / 2)
    bars.set_xticklabels(layers, rotation=30, ha="right")
    bars.set_yscale("log")
    bars.set_ylabel("median time per call (ms)")
    bars.set_title("time per layer and strategy")
    bars.legend(fontsize=8)

    gemm, bw = peaks["gemm_gflops"], peaks["bandwidth_gbs"]
    intensity = np.array([r.flops / r.min_bytes for r in ok]) if ok else np.array([1.0])
    xs = np.logspace(np.log10(max(intensity.min() / 4, 1e-2)), np.log10(intensity.max() * 4), 200)
    roof.plot(xs, np.minimum(gemm, bw * xs), "k-", label=f"roof: GEMM {gemm:.0f} GFLOP/s, copy {bw:.0f} GB/s")
    for s in strategies:
        pts = [(r.flops / r.min_bytes, r.gflops) for r in ok if r.strategy == s]
        roof.scatter(*zip(*pts, strict=False), label=s, s=22)
    roof.set_xscale("log")
    roof.set_yscale("log")
    roof.set_xlabel("arithmetic intensity (direct flops / bytes of x, w, b, y)")
    roof.set_ylabel("effective GFLOP/s (direct count)")
    roof.set_title("roofline, ceilings measured in this run")
    roof.legend(fontsize=8)
    meta = records[0] if records else None
    if meta is not None:
        fig.suptitle(f"gemmconv compare: {meta.backend}, {meta.dtype}, N={meta.batch}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
