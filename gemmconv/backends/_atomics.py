"""Shared counters that threads read and bump without the GIL: atomic loads and adds, and spinning on them.

numba has no atomic operations for CPU code, so these are three LLVM instructions made available to compiled
code (:func:`numba.extending.intrinsic`): an atomic load and an atomic add, both sequentially consistent (so that
"add to one counter, then read another" is never reordered: :mod:`._pool` relies on it to know who sleeps), and
the CPU's spin-wait hint (``pause`` on x86, ``yield`` on ARM; nothing elsewhere). A counter is a one-element
``int64`` NumPy array that every thread holds.

:func:`bump` and :func:`load` keep the GIL: releasing it for a few nanoseconds of work would hand it to another
thread that waits for it, and taking it back would then cost this thread a sleep and a wake-up (tens of
microseconds on a virtual machine). :func:`spin_until` and :func:`bump_then_spin` run without the GIL
(``nogil``), so a spinning thread never keeps another from running Python code; :func:`bump_then_spin` signals
and goes back to waiting in one call, without taking the GIL in between.

A spin is bounded by a count of reads, not by a clock (numba's compiled code has none):
:func:`reads_per_microsecond` measures once per process how many reads take a microsecond here.
"""

from __future__ import annotations

import functools
import platform
import time
from typing import Any

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from ._kernel_cache import compiled

__all__ = ["bump", "bump_then_spin", "counter", "load", "reads_per_microsecond", "spin_until"]

_ARCH = platform.machine().lower()


@intrinsic
def _load_acquire(typingctx: Any, ary: Any) -> Any:
    """``ary[0]``, read atomically (sequentially consistent: every write made before a matching add is seen)."""
    sig = ary.dtype(ary)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        return builder.load_atomic(data, ordering="seq_cst", align=8)

    return sig, codegen


@intrinsic
def _fetch_add(typingctx: Any, ary: Any, value: Any) -> Any:
    """Add ``value`` to ``ary[0]`` atomically (sequentially consistent); return the value before the add."""
    sig = ary.dtype(ary, ary.dtype)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        data = context.make_array(sig.args[0])(context, builder, args[0]).data
        return builder.atomic_rmw("add", data, args[1], ordering="seq_cst")

    return sig, codegen


@intrinsic
def _cpu_relax(typingctx: Any) -> Any:
    """The CPU's spin-wait hint: lets the other hardware thread of the core run, and saves power."""
    sig = types.void()

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        if _ARCH in ("x86_64", "amd64", "i386", "i686"):
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        elif _ARCH in ("aarch64", "arm64"):
            hint = ir.FunctionType(ir.VoidType(), [ir.IntType(32)])
            builder.call(cgutils.get_or_insert_function(builder.module, hint, "llvm.aarch64.hint"),
                         [ir.Constant(ir.IntType(32), 1)])  # 1: YIELD
        return context.get_dummy_value()

    return sig, codegen


@compiled(nogil=False)
def _load(ary):  # pragma: no cover - compiled
    return _load_acquire(ary)


@compiled(nogil=False)
def _bump(ary, value):  # pragma: no cover - compiled
    return _fetch_add(ary, value) + value


@compiled()
def _spin_until(ary, target, reads):  # pragma: no cover - compiled
    """Read ``ary[0]`` until it is at least ``target`` or ``reads`` reads were made; return the last value."""
    value = _load_acquire(ary)
    for _ in range(reads):
        if value >= target:
            break
        _cpu_relax()
        value = _load_acquire(ary)
    return value


@compiled()
def _bump_then_spin(ary, sleepers, watch, target, reads):  # pragma: no cover - compiled
    """Add one to ``ary``; then, unless ``sleepers`` is above 0 (return -1: someone must be woken), spin as
    :func:`_spin_until` does on ``watch``."""
    _fetch_add(ary, 1)
    if _load_acquire(sleepers) > 0:
        return -1
    return _spin_until(watch, target, reads)


def counter() -> np.ndarray:
    """A new counter at 0 (a one-element int64 array: 8-byte aligned, as the atomic instructions need)."""
    return np.zeros(1, np.int64)


def load(ary: np.ndarray) -> int:
    """The counter's value now."""
    return int(_load(ary))


def bump(ary: np.ndarray, value: int = 1) -> int:
    """Add ``value`` to the counter atomically; return the new value."""
    return int(_bump(ary, value))


def spin_until(ary: np.ndarray, target: int, reads: int) -> int:
    """Spin, without the GIL, until the counter reaches ``target`` or ``reads`` reads were made; return its
    value (below ``target`` when the spin ran out)."""
    return int(_spin_until(ary, target, reads))


def bump_then_spin(ary: np.ndarray, sleepers: np.ndarray, watch: np.ndarray, target: int, reads: int) -> int:
    """Add one to ``ary``, then spin as :func:`spin_until` on ``watch``, in one call without the GIL; return -1
    at once, after the add, where the counter ``sleepers`` says that threads sleep and must be woken."""
    return int(_bump_then_spin(ary, sleepers, watch, target, reads))


@functools.cache
def reads_per_microsecond() -> float:
    """How many reads of :func:`spin_until` take one microsecond on this CPU: the fastest of three runs of
    20 000 reads (a fraction of a millisecond each), so that another process slowing one run does not count."""
    never = counter()
    spin_until(never, 1, 10)  # compiled (or loaded) before it is timed
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        spin_until(never, 1, 20_000)
        best = min(best, time.perf_counter() - start)
    return 20_000 / max(best * 1e6, 1.0)
