"""Plots of comparison records (matplotlib, from the ``benchmarks`` extra)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np


def plain_number(value: float, _pos: object = None) -> str:
    """A tick label without powers of ten: ``0.5``, ``2``, ``20``, ``5000`` (a matplotlib tick formatter).

    >>> [plain_number(v) for v in (0.05, 0.5, 2.0, 20.0, 5000.0)]
    ['0.05', '0.5', '2', '20', '5000']
    """
    return f"{value:.10g}"


def title(records: Sequence[Any]) -> str:
    """The figure's title: the pass, the layers, backend, dtype and batch of ``records``.

    >>> from types import SimpleNamespace as R
    >>> title([R(layer="conv3x3_14", pass_="forward", backend="numpy", dtype="float32", batch=1)])
    'gemmconv compare, forward pass: conv3x3_14 (numpy, float32, N=1)'
    """
    layers = list(dict.fromkeys(r.layer for r in records))
    named = ", ".join(layers) if len(layers) <= 4 else f"{len(layers)} layers ({', '.join(layers[:3])}, ...)"
    passes = "/".join(dict.fromkeys(r.pass_ for r in records))
    meta = records[0]
    return f"gemmconv compare, {passes} pass: {named} ({meta.backend}, {meta.dtype}, N={meta.batch})"


def plot_records(records: Sequence[Any], path: str | os.PathLike, peaks: dict[str, float]) -> None:
    """Write :func:`figure` of ``records`` and ``peaks`` to ``path`` (PNG)."""
    figure(records, peaks).savefig(path, dpi=100)


def figure(records: Sequence[Any], peaks: dict[str, float]) -> Any:
    """A matplotlib ``Figure``: per-layer time bars (one per strategy, whiskers at the quartiles) and a roofline of
    every measurement, titled by :func:`title`, log axes labelled in plain numbers (:func:`plain_number`).

    The roofline's ceilings are the GEMM rate and the copy bandwidth measured in the same run
    (``peaks`` from :func:`gemmconv.tools.compare.machine_peaks`); a point's intensity is its layer's
    direct flop count over the bytes of x, w, b and y. No pyplot state is touched.
    """
    from matplotlib.figure import Figure
    from matplotlib.ticker import LogLocator, NullFormatter

    ok = [r for r in records if r.status == "ok"]
    layers = list(dict.fromkeys(r.layer for r in records))
    strategies = list(dict.fromkeys(r.strategy for r in ok))
    fig = Figure(figsize=(15, 5.5))
    bars, roof = fig.subplots(1, 2)

    width = 0.8 / max(1, len(strategies))
    for i, s in enumerate(strategies):
        found = [next((r for r in ok if r.layer == lay and r.strategy == s), None) for lay in layers]
        ms = np.array([np.nan if r is None else r.median_s * 1e3 for r in found])
        q1 = np.array([np.nan if r is None else (r.q1_s or r.median_s) * 1e3 for r in found])
        q3 = np.array([np.nan if r is None else (r.q3_s or r.median_s) * 1e3 for r in found])
        bars.bar(np.arange(len(layers)) + i * width, ms, width, label=s, yerr=np.array([ms - q1, q3 - ms]),
                 error_kw=dict(elinewidth=0.8, capsize=1.5))
    bars.set_xticks(np.arange(len(layers)) + 0.4 - width / 2)
    bars.set_xticklabels(layers, rotation=30, ha="right")
    bars.set_yscale("log")
    bars.set_ylabel("median time per call (ms), whiskers: quartiles")
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
    for axis in (bars.yaxis, roof.xaxis, roof.yaxis):
        axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(plain_number)
        axis.set_minor_formatter(NullFormatter())
    if records:
        fig.suptitle(title(records))
    fig.tight_layout()
    return fig


def plot_sweep(records: Sequence[Any], path: str | os.PathLike) -> None:
    """Write :func:`sweep_figure` of ``records`` to ``path`` (PNG)."""
    sweep_figure(records).savefig(path, dpi=100)


def sweep_figure(records: Sequence[Any]) -> Any:
    """A matplotlib ``Figure`` of a kernel sweep (layers named ``<name>_k<size>``): median time per call against
    the kernel's size, one line per strategy and swept layer (refused points left out), log time axis."""
    from matplotlib.figure import Figure

    ok = [r for r in records if r.status == "ok" and r.strategy != "auto"]
    fig = Figure(figsize=(8, 5.5))
    ax = fig.subplots()
    bases = list(dict.fromkeys(r.layer.rsplit("_k", 1)[0] for r in ok))
    for base in bases:
        for s in dict.fromkeys(r.strategy for r in ok):
            pts = sorted((int(r.layer.rsplit("_k", 1)[1]), r.median_s * 1e3) for r in ok
                         if r.strategy == s and r.layer.rsplit("_k", 1)[0] == base)
            if pts:
                ax.plot(*zip(*pts, strict=True), marker="o", label=s if len(bases) == 1 else f"{base}: {s}")
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(plain_number)
    ax.set_xlabel("kernel size per axis (padding size // 2)")
    ax.set_ylabel("median time per call (ms)")
    ax.set_title(title(records))
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
