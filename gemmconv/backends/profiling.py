"""How a backend measures: timers and peak memory (for ``gemmconv.compare`` and the autotuner).

:class:`Profiler` times on the host (``perf_counter``, after waiting for the device) and traces
memory with ``tracemalloc``; the CuPy backend's profiler (in :mod:`.cupy_backend`) uses CUDA
events and a CuPy memory hook.
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Callable
from typing import Any

__all__ = ["Profiler"]


class Profiler:
    """Host timers and tracemalloc."""

    #: size of the square matrices whose product measures the backend's GEMM peak
    peak_gemm_size: int = 1024

    def __init__(self, before_peak: Callable[[], None] | None = None) -> None:
        #: called before a peak-memory measurement (the NumPy backend frees its reused buffers, so the
        #: measured call allocates, and reports, its workspace)
        self._before_peak = before_peak

    def synchronize(self) -> None:
        """Wait until work queued on the current device is done (nothing to wait for on the CPU)."""

    def time_calls(self, fn: Callable[[], Any], repeat: int) -> list[float]:
        """Seconds taken by each of ``repeat`` calls of ``fn`` (device work included)."""
        times = []
        for _ in range(repeat):
            self.synchronize()
            t0 = time.perf_counter()
            fn()
            self.synchronize()
            times.append(time.perf_counter() - t0)
        return times

    def peak_memory(self, fn: Callable[[], Any]) -> tuple[Any, int]:
        """``fn()`` and the peak bytes it held beyond what it returns (workspace), traced by tracemalloc."""
        if self._before_peak is not None:
            self._before_peak()
        was_tracing = tracemalloc.is_tracing()
        if not was_tracing:
            tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            result = fn()
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            if not was_tracing:
                tracemalloc.stop()
        return result, max(0, peak - int(getattr(result, "nbytes", 0)))
