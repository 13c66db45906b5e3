"""Pieces shared by the compiled CPU kernels (numba) of the NumPy backend.

Each kernel runs on the calling thread over a part of the work given by its arguments (images and
output rows, output planes, tile rows); the backend's workers run parts in parallel, so no two
threads write the same element. Index ranges of the valid (non-padding) part of a row are computed
once per row, so the inner loops carry no bounds test and vectorise for unit stride.
"""

from __future__ import annotations

import numpy as np
from numba import njit


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


@njit(inline="always")
def tap_ranges(kh, kw, h_, w_, oh, ow, sh, sw, pt, pl, dh, dw):  # pragma: no cover - compiled
    """For each tap (r, s) of a kernel that reads inside an input plane of ``h_ x w_`` for some output of an
    ``oh x ow`` plane, a row ``(r, s, o_lo, o_hi, q_lo, q_hi)``: the output rows ``[o_lo, o_hi)`` and columns
    ``[q_lo, q_hi)`` whose input ``(o·sh + r·dh - pt, q·sw + s·dw - pl)`` lies inside the plane. Computed once
    per call of a kernel; its loops over rows then need no bounds tests."""
    taps = np.empty((kh * kw, 6), dtype=np.int64)
    count = 0
    for r in range(kh):
        o_lo, o_hi = valid_range(h_, r * dh - pt, sh, oh)
        for s in range(kw):
            q_lo, q_hi = valid_range(w_, s * dw - pl, sw, ow)
            if o_lo < o_hi and q_lo < q_hi:
                row = taps[count]
                row[0], row[1], row[2], row[3], row[4], row[5] = r, s, o_lo, o_hi, q_lo, q_hi
                count += 1
    return taps[:count]

