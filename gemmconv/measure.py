"""Measuring one strategy on one convolution: time, error and workspace.

Shared by :func:`gemmconv.compare` and the autotuner, on any backend: times come
from the backend (``perf_counter`` on the CPU, CUDA events on the GPU), memory
from the backend's tracer (tracemalloc, CuPy's memory hook).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from .registry import get_strategy
from .spec import ConvSpec
from .validate import pad_explicitly

__all__ = ["Measurement", "measure", "reference", "relative_error"]


@dataclass
class Measurement:
    """Timings of one strategy: seconds per call (warm-up excluded)."""

    times: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> float:
        """(max - min) / median of the timed calls."""
        return (max(self.times) - min(self.times)) / self.median if self.median > 0 else 0.0


def run_strategy(name: str, backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    """Run a registered strategy on validated arrays, padding first where it needs it (as conv2d does)."""
    strat = get_strategy(name)
    if spec.padded and (spec.padding_mode != "zeros" or not strat.pads_zeros):
        x, spec = pad_explicitly(backend, x, spec)
    return strat.run(backend, x, w, b, spec)


def measure(name: str, backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec, repeat: int,
            warmup: int = 1) -> tuple[Any, Measurement]:
    """Result and timings of strategy ``name`` (after ``warmup`` untimed calls)."""
    y = None
    for _ in range(warmup):
        y = run_strategy(name, backend, x, w, b, spec)
    times = backend.time_calls(lambda: run_strategy(name, backend, x, w, b, spec), repeat)
    if y is None:
        y = run_strategy(name, backend, x, w, b, spec)
    return y, Measurement(times)


def reference(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    """The convolution in float64 (im2col: a float64 GEMM), the yardstick for errors."""
    f64 = [None if a is None else a.astype("float64") for a in (x, w, b)]
    return run_strategy("im2col", backend, *f64, spec)


def relative_error(y: Any, ref: Any, xp: Any) -> float:
    """max|y - ref| / max|ref| (0 for empty results)."""
    if ref.size == 0:
        return 0.0
    denom = float(xp.max(xp.abs(ref)))
    num = float(xp.max(xp.abs(y.astype("float64") - ref)))
    return num / denom if denom > 0 else num
