"""Measuring one strategy on one convolution: time, error and workspace.

Shared by :func:`gemmconv.compare` and the autotuner, on any backend: times come
from the backend (``perf_counter`` on the CPU, CUDA events on the GPU), memory
from the backend's tracer (tracemalloc, CuPy's memory hook).

:func:`measure` is the autotuner's: a fixed number of untimed calls, then the timed ones.
:func:`measure_settled` is :func:`gemmconv.compare`'s: it warms a strategy up until its calls
stop getting faster (its first calls compile, load caches, allocate workspace and start
threads) or a time budget is spent, times it, and times it again (a bounded number of
times) when the interquartile range of the timed calls says that something else disturbed
the measurement. Both take the timer as a function of a call count, so that the warm-up and
re-measuring logic can be driven by scripted timings.
"""

from __future__ import annotations

import functools
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..backends.base import Backend

__all__ = [
    "DISTURBED",
    "SETTLED",
    "Measurement",
    "Settings",
    "measure",
    "measure_settled",
    "reference",
    "relative_error",
    "settled",
    "timed",
    "warm_up",
]

#: a measurement is *disturbed* when its interquartile range exceeds this fraction of its median
#: (a stall of another process, frequency changes, a strategy still warming up)
DISTURBED = 0.25

#: warm-up stops when a round of calls is not faster than the best earlier round by more than
#: this fraction of it: the strategy no longer gets faster
SETTLED = 0.10

#: ``timer(n)``: the seconds taken by each of ``n`` calls of the measured function
Timer = Callable[[int], list[float]]


@dataclass
class Measurement:
    """Timings of one strategy: seconds per timed call, and how they were obtained.

    Attributes
    ----------
    times : list of float
        Seconds of each timed call (warm-up excluded), in call order.
    warmup_calls : int
        Untimed calls made before them.
    warmup_settled : bool
        Whether the warm-up ended because the calls stopped getting faster (False: its budget ran out,
        or it was a fixed number of calls).
    attempts : int
        How many times the calls were timed (more than 1: earlier attempts were disturbed).
    """

    times: list[float]
    warmup_calls: int = 0
    warmup_settled: bool = False
    attempts: int = 1

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def q1(self) -> float:
        """First quartile of the times (linear interpolation, as ``numpy.percentile``)."""
        return float(np.percentile(self.times, 25))

    @property
    def q3(self) -> float:
        """Third quartile of the times."""
        return float(np.percentile(self.times, 75))

    @property
    def iqr(self) -> float:
        """Interquartile range ``q3 - q1`` in seconds: the spread of the middle half of the calls."""
        return self.q3 - self.q1

    @property
    def rel_iqr(self) -> float:
        """``iqr / median`` (0 for a zero median)."""
        return self.iqr / self.median if self.median > 0 else 0.0

    @property
    def spread(self) -> float:
        """(max - min) / median of the timed calls: one stall sets it; see :attr:`rel_iqr`."""
        return (max(self.times) - min(self.times)) / self.median if self.median > 0 else 0.0

    @property
    def disturbed(self) -> bool:
        """Whether :attr:`rel_iqr` exceeds :data:`DISTURBED`."""
        return self.rel_iqr > DISTURBED


@dataclass(frozen=True)
class Settings:
    """How :func:`measure_settled` warms up and times a strategy.

    Attributes
    ----------
    repeat : int
        Timed calls per attempt.
    warmup : int
        Untimed calls always made first (the first one's result is returned; with 0, a call after the
        timed ones gives it).
    warmup_s : float
        Seconds of further warm-up at most, in rounds of ``round_calls`` timed calls, until a round is
        not faster than the best before it by more than :data:`SETTLED`. 0: ``warmup`` calls only.
    retries : int
        Times a disturbed measurement (:data:`DISTURBED`) is repeated at most; the attempt with the
        smallest relative interquartile range is kept.
    round_calls : int
        Calls per warm-up round (their median is compared, so one stall does not end or prolong it).
    """

    repeat: int = 10
    warmup: int = 1
    warmup_s: float = 1.0
    retries: int = 2
    round_calls: int = 3

    def __post_init__(self) -> None:
        for name, least in (("repeat", 1), ("warmup", 0), ("retries", 0), ("round_calls", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be an int >= {least}, got {value!r}")
        if isinstance(self.warmup_s, bool) or not isinstance(self.warmup_s, (int, float)) or not self.warmup_s >= 0:
            raise ValueError(f"warmup_s must be a number of seconds >= 0, got {self.warmup_s!r}")


def settled(rounds: list[float], tolerance: float = SETTLED) -> bool:
    """Whether the last of the warm-up ``rounds`` (median seconds per call, oldest first) shows no more
    warming: it is not faster than the best earlier round by more than ``tolerance`` of it.

    >>> settled([0.240, 0.00075])        # much faster than the first round: still warming
    False
    >>> settled([0.240, 0.00075, 0.00074])
    True
    >>> settled([0.001, 0.004])          # slower (a stall): not getting faster
    True
    """
    if len(rounds) < 2:
        return False
    return rounds[-1] >= (1 - tolerance) * min(rounds[:-1])


def warm_up(timer: Timer, settings: Settings, clock: Callable[[], float] = time.perf_counter) -> tuple[int, bool]:
    """Warm-up rounds after the first ``settings.warmup`` calls: ``(calls made, whether it settled)``.

    Rounds of ``settings.round_calls`` calls are timed by ``timer`` until :func:`settled` says the
    last one shows no more warming, or ``settings.warmup_s`` seconds by ``clock`` have passed.
    """
    start, rounds, calls = clock(), [], 0
    while clock() - start < settings.warmup_s:
        rounds.append(statistics.median(timer(settings.round_calls)))
        calls += settings.round_calls
        if settled(rounds):
            return calls, True
    return calls, False


def timed(timer: Timer, settings: Settings) -> tuple[list[float], int]:
    """The times of ``settings.repeat`` calls and the number of attempts: timed again, up to
    ``settings.retries`` times, while disturbed; the least disturbed attempt is kept."""
    best = Measurement(timer(settings.repeat))
    attempts = 1
    while best.disturbed and attempts <= settings.retries:
        m = Measurement(timer(settings.repeat))
        attempts += 1
        if m.rel_iqr < best.rel_iqr:
            best = m
    return best.times, attempts


def measure_settled(fn: Callable[[], Any], backend: Backend, settings: Settings, timer: Timer | None = None,
                    clock: Callable[[], float] = time.perf_counter) -> tuple[Any, Measurement]:
    """Result and timings of ``fn()`` on ``backend``, warmed up until settled and re-timed while disturbed.

    Parameters
    ----------
    fn : callable
        The call to measure (no arguments).
    backend : Backend
        Its ``profiler.time_calls`` times the calls (CUDA events on the GPU) unless ``timer`` is given.
    settings : Settings
        Warm-up, repetitions and retries.
    timer : callable, optional
        ``timer(n)`` -> seconds of each of ``n`` calls of ``fn``; default ``backend.profiler.time_calls``.
    clock : callable
        Seconds now, for the warm-up budget.

    Returns
    -------
    tuple
        ``fn()``'s result (from an untimed call) and the :class:`Measurement`.
    """
    y = None
    for _ in range(settings.warmup):
        y = fn()
    run = timer if timer is not None else functools.partial(backend.profiler.time_calls, fn)
    more, ok = warm_up(run, settings, clock)
    times, attempts = timed(run, settings)
    if settings.warmup == 0:
        y = fn()
    return y, Measurement(times, warmup_calls=settings.warmup + more, warmup_settled=ok, attempts=attempts)


def measure(fn: Callable[[], Any], backend: Backend, repeat: int, warmup: int = 1) -> tuple[Any, Measurement]:
    """Result and timings of ``fn()`` on ``backend`` (after ``warmup`` untimed calls)."""
    y = None
    for _ in range(warmup):
        y = fn()
    times = backend.profiler.time_calls(fn, repeat)
    if y is None:
        y = fn()
    return y, Measurement(times, warmup_calls=warmup)


def reference(backend: Backend, x: Any, w: Any, b: Any, runner_for: Callable[[str], Any],
              yardstick: str = "im2col") -> Any:
    """The convolution (or the pass ``runner_for`` prepares) in float64: ``runner_for(yardstick)`` on float64
    copies (im2col's: a float64 GEMM), the yardstick for errors."""
    x64, w64 = x.astype(wide(x.dtype)), w.astype(wide(w.dtype))
    b64 = None if b is None else b.astype(wide(b.dtype))
    return runner_for(yardstick)(x64, w64, b64, None)


def wide(dtype: Any) -> str:
    """The double precision of ``dtype``'s kind: complex128 for complex dtypes, else float64."""
    return "complex128" if dtype.kind == "c" else "float64"


def relative_error(y: Any, ref: Any, xp: Any) -> float:
    """max|y - ref| / max|ref| (0 for empty results)."""
    if ref.size == 0:
        return 0.0
    denom = float(xp.max(xp.abs(ref)))
    num = float(xp.max(xp.abs(y.astype(wide(y.dtype)) - ref)))
    return num / denom if denom > 0 else num
