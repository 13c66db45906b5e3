"""A short demonstration: every strategy on one layer, with time and error.

Run it with ``gemmconv demo`` (or ``python -m gemmconv demo``). The reference
for the error is the ``direct`` strategy in float64.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from .api import choose_strategy, conv2d
from .errors import StrategyNotSupportedError
from .registry import list_strategies

__all__ = ["DemoRow", "run_demo"]


@dataclass
class DemoRow:
    """One strategy's result on the demo layer."""

    strategy: str
    ms: float | None  # median wall time in milliseconds, None if refused
    spread: float | None  # (max - min) / median of the repeats
    gflops: float | None  # direct-convolution flop count / time
    rel_error: float | None  # max|y - ref| / max|ref|, ref in float64
    note: str  # the chosen strategy for auto, or why it refused


def run_demo(
    shape: tuple[int, int, int, int, int, int, int] = (1, 64, 56, 56, 64, 3, 3),
    *,
    stride: int = 1,
    padding: int = 1,
    dtype: str = "float32",
    repeat: int = 10,
    seed: int = 0,
) -> list[DemoRow]:
    """Time every registered strategy on one layer and measure its error.

    Parameters
    ----------
    shape : (N, C, H, W, K, R, S)
        Batch, input channels, height, width, output channels, kernel height and width.
    stride, padding : int
        As in :func:`gemmconv.conv2d`.
    dtype : str
        ``"float32"`` or ``"float64"``.
    repeat : int
        Timed calls per strategy (after one warm-up call).
    seed : int
        Seed of the random input and weights.

    Returns
    -------
    list of DemoRow
    """
    n, c, h, w_, k, kh, kw = shape
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w_)).astype(dtype)
    w = (rng.standard_normal((k, c, kh, kw)) / np.sqrt(c * kh * kw)).astype(dtype)
    b = rng.standard_normal(k).astype(dtype)
    args: dict[str, Any] = dict(stride=stride, padding=padding)
    ref = conv2d(x.astype(np.float64), w.astype(np.float64), b.astype(np.float64), strategy="direct", **args)
    flops = 2 * ref.size * c * kh * kw
    rows = []
    for name in list_strategies():
        try:
            y = conv2d(x, w, b, strategy=name, **args)  # warm-up: compiles kernels, fills caches
        except StrategyNotSupportedError as e:
            rows.append(DemoRow(name, None, None, None, None, f"refused: {e.reason.split(' (received')[0]}"))
            continue
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            conv2d(x, w, b, strategy=name, **args)
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        err = float(np.max(np.abs(y - ref)) / np.max(np.abs(ref)))
        note = f"chose {choose_strategy(x, w, b, **args)}" if name == "auto" else ""
        rows.append(DemoRow(name, med * 1e3, (max(times) - min(times)) / med, flops / med / 1e9, err, note))
    return rows


def print_demo(rows: list[DemoRow], title: str) -> None:
    """Print the rows as a table (needs ``rich``: ``pip install gemmconv[benchmarks]``)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in ("strategy", "median ms", "spread", "GFLOP/s", "rel. error", "note"):
        table.add_column(col, justify="left" if col in ("strategy", "note") else "right")
    for r in rows:
        if r.ms is None:
            table.add_row(r.strategy, "-", "-", "-", "-", r.note)
        else:
            table.add_row(r.strategy, f"{r.ms:.3f}", f"±{r.spread:.0%}", f"{r.gflops:.1f}", f"{r.rel_error:.1e}", r.note)
    Console().print(table)
