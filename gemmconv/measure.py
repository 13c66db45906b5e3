"""Measuring one strategy on one convolution: time, error and workspace.

Shared by :func:`gemmconv.compare` and the autotuner, on any backend: times come
from the backend (``perf_counter`` on the CPU, CUDA events on the GPU), memory
from the backend's tracer (tracemalloc, CuPy's memory hook).
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


def measure(fn: Callable[[], Any], backend: Any, repeat: int, warmup: int = 1) -> tuple[Any, Measurement]:
    """Result and timings of ``fn()`` on ``backend`` (after ``warmup`` untimed calls)."""
    y = None
    for _ in range(warmup):
        y = fn()
    times = backend.profiler.time_calls(fn, repeat)
    if y is None:
        y = fn()
    return y, Measurement(times)


def reference(backend: Any, x: Any, w: Any, b: Any, runner_for: Callable[[str], Any], yardstick: str = "im2col") -> Any:
    """The convolution (or the pass ``runner_for`` prepares) in float64: ``runner_for(yardstick)`` on float64
    copies (im2col's: a float64 GEMM), the yardstick for errors."""
    x64, w64 = x.astype("float64"), w.astype("float64")
    b64 = None if b is None else b.astype("float64")
    return runner_for(yardstick)(x64, w64, b64, None)


def relative_error(y: Any, ref: Any, xp: Any) -> float:
    """max|y - ref| / max|ref| (0 for empty results)."""
    if ref.size == 0:
        return 0.0
    denom = float(xp.max(xp.abs(ref)))
    num = float(xp.max(xp.abs(y.astype("float64") - ref)))
    return num / denom if denom > 0 else num
