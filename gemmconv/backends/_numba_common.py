"""Pieces shared by the compiled CPU kernels (numba) of the NumPy backend.

Each kernel runs on the calling thread over a part of the work given by its arguments (images and
output rows, output planes, tile rows); the backend's workers run parts in parallel, so no two
threads write the same element. Index ranges of the valid (non-padding) part of a row are computed
once per row, so the inner loops carry no bounds test and vectorise for unit stride.
"""

from __future__ import annotations

from typing import Any

from numba import njit

#: compile options of every kernel: cached on disk, and free of the GIL (workers run them at once)
OPTS: dict[str, Any] = {"cache": True, "nogil": True}


@njit(inline="always")
def valid_range(size: int, offset: int, stride: int, count: int) -> tuple[int, int]:
    """Range [lo, hi) of output positions o with 0 <= o*stride + offset < size, within [0, count]
    (lo <= hi <= count: loops up to lo and from hi to count stay inside a row of count)."""
    lo = 0 if offset >= 0 else min(count, (-offset + stride - 1) // stride)
    last = size - 1 - offset
    hi = 0 if last < 0 else min(count, last // stride + 1)
    return lo, max(lo, hi)


@njit(inline="always")
def copy_rows(plane, buf, ih0, pl, lo, hi):  # pragma: no cover - compiled
    """Row a of ``buf``, columns lo:hi = row ih0 + a of ``plane`` from column lo - pl on, or zeros where
    that row lies outside the plane; the other columns of ``buf`` (its zero padding) are left alone."""
    for a in range(buf.shape[0]):
        ih = ih0 + a
        dst = buf[a, lo:hi]
        if 0 <= ih < plane.shape[0]:
            src = plane[ih, lo - pl:]
            for e in range(hi - lo):
                dst[e] = src[e]
        else:
            for e in range(hi - lo):
                dst[e] = 0
