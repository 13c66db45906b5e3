"""Compiled CPU kernels (numba) for the NumPy backend.

Each kernel parallelises its outer loop with ``prange`` over independent
output slices, so the threads never write the same element. Index ranges of
the valid (non-padding) part of a row are computed once per row, so the inner
loops carry no bounds test and vectorise for unit stride.
"""

from __future__ import annotations

import os

import numba
import numpy as np
from numba import njit, prange

# numba's threading layer is process-wide and fixed at the first parallel launch. Its OpenMP
# layer keeps idle workers spinning after each kernel, which on a small machine takes the
# cores away from the BLAS threads of the GEMM that follows (measured: im2col on a 256-channel
# 14x14 layer took 8.0 ms with OpenMP, 2.6 ms with workqueue, 1.5 ms of it kernel + GEMM).
# So unless the user chose a layer (NUMBA_THREADING_LAYER), use workqueue. It does not allow
# concurrent launches; the NumPy backend serialises its kernel launches with a lock.
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

_OPTS = dict(cache=True, nogil=True)


@njit(inline="always")
def _valid_range(size: int, offset: int, stride: int, count: int) -> tuple[int, int]:
    """Range [lo, hi) of output positions o with 0 <= o*stride + offset < size."""
    lo = 0 if offset >= 0 else (-offset + stride - 1) // stride
    last = size - 1 - offset
    hi = 0 if last < 0 else min(count, last // stride + 1)
    return lo, max(lo, hi)


@njit(parallel=True, **_OPTS)
def im2col(x, cols, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow):  # pragma: no cover - compiled
    """Fill ``cols`` (N, C·KH·KW, OH·OW) from ``x`` (N, C, H, W); padding reads as zero."""
    n_, c_, h_, w_ = x.shape
    rows = c_ * kh * kw
    for nr in prange(n_ * rows):
        n = nr // rows
        row = nr % rows
        c = row // (kh * kw)
        r = (row // kw) % kh
        s = row % kw
        iw0 = s * dw - pl
        q_lo, q_hi = _valid_range(w_, iw0, sw, ow)
        dst = cols[n, row]
        plane = x[n, c]
        for o in range(oh):
            seg = dst[o * ow:(o + 1) * ow]
            ih = o * sh - pt + r * dh
            if ih < 0 or ih >= h_:
                seg[:] = 0
                continue
            seg[:q_lo] = 0
            src = plane[ih, q_lo * sw + iw0:]
            for q in range(q_hi - q_lo):
                seg[q_lo + q] = src[q * sw]
            seg[q_hi:] = 0


@njit(parallel=True, **_OPTS)
def direct(x, w, b, out, sh, sw, pt, pl, dh, dw, groups):  # pragma: no cover - compiled
    """``out`` (N, K, OH, OW) = conv(x, w) + b by loops over output pixels and taps."""
    n_, c_, h_, w_ = x.shape
    k_, cg_, kh, kw = w.shape
    _, _, oh, ow = out.shape
    kg_ = k_ // groups
    for nk in prange(n_ * k_):
        n = nk // k_
        k = nk % k_
        c0 = (k // kg_) * cg_
        acc = out[n, k]
        bias = b[k]
        for o in range(oh):
            for q in range(ow):
                acc[o, q] = bias
        for cg in range(cg_):
            plane = x[n, c0 + cg]
            for r in range(kh):
                for s in range(kw):
                    wv = w[k, cg, r, s]
                    iw0 = s * dw - pl
                    q_lo, q_hi = _valid_range(w_, iw0, sw, ow)
                    for o in range(oh):
                        ih = o * sh - pt + r * dh
                        if ih < 0 or ih >= h_:
                            continue
                        # slices start at valid offsets, so the loop indexes from 0 with no
                        # negative-index wraparound test and vectorises
                        seg_out = acc[o, q_lo:q_hi]
                        seg_in = plane[ih, q_lo * sw + iw0:]
                        for q in range(q_hi - q_lo):
                            seg_out[q] += wv * seg_in[q * sw]


# Winograd transforms, written out for each tile size: the 1-D transforms below are the rows of
# B^T and A^T (Lavin & Gray's points 0, ±1, ±2, ∞) with their zeros and ones folded away, so a tile
# costs ~3x fewer operations than a generic (T, T) @ (T, T) product and no loop has an unknown
# trip count.
@njit(inline="always")
def _x2(a):  # pragma: no cover - compiled
    return a + a  # not 2 * a: an integer factor would promote float32 to float64 in numba


@njit(inline="always")
def _x4(a):  # pragma: no cover - compiled
    return _x2(_x2(a))


@njit(inline="always")
def _bt2(d0, d1, d2, d3):  # pragma: no cover - compiled
    return d0 - d2, d1 + d2, d2 - d1, d1 - d3


@njit(inline="always")
def _at2(m0, m1, m2, m3):  # pragma: no cover - compiled
    return m0 + m1 + m2, m1 - m2 - m3


@njit(inline="always")
def _bt4(d0, d1, d2, d3, d4, d5):  # pragma: no cover - compiled
    return (_x4(d0 - d2) - d2 + d4, d3 + d4 - _x4(d1 + d2), _x4(d1 - d2) - d3 + d4,
            _x2(d3 - d1) - d2 + d4, _x2(d1 - d3) - d2 + d4, _x4(d1 - d3) - d3 + d5)


@njit(inline="always")
def _at4(m0, m1, m2, m3, m4, m5):  # pragma: no cover - compiled
    s12, d12, s34, d34 = m1 + m2, m1 - m2, m3 + m4, m3 - m4
    return m0 + s12 + s34, d12 + _x2(d34), s12 + _x4(s34), d12 + _x2(_x4(d34)) + m5


@njit(parallel=True, **_OPTS)
def winograd_input(x, v, m, th, tw, pt, pl):  # pragma: no cover - compiled
    """``v`` (T, T, C, N·th·tw) = B^T d B for every input tile d (T×T, stepping by m), T = m + 2."""
    n_, c_, h_, w_ = x.shape
    t = m + 2
    for nc in prange(n_ * c_):
        n = nc // c_
        c = nc % c_
        d = np.zeros((6, 6), dtype=x.dtype)
        for i in range(th):
            for j in range(tw):
                p = (n * th + i) * tw + j
                ih0, iw0 = i * m - pt, j * m - pl
                inside = ih0 >= 0 and iw0 >= 0 and ih0 + t <= h_ and iw0 + t <= w_
                for a in range(t):
                    for e in range(t):
                        ih, iw = ih0 + a, iw0 + e
                        if inside or (0 <= ih < h_ and 0 <= iw < w_):
                            d[a, e] = x[n, c, ih, iw]
                        else:
                            d[a, e] = 0
                if m == 4:
                    for e in range(6):  # columns: B^T d
                        d[0, e], d[1, e], d[2, e], d[3, e], d[4, e], d[5, e] = _bt4(
                            d[0, e], d[1, e], d[2, e], d[3, e], d[4, e], d[5, e])
                    for a in range(6):  # rows: (B^T d) B
                        r = _bt4(d[a, 0], d[a, 1], d[a, 2], d[a, 3], d[a, 4], d[a, 5])
                        for e in range(6):
                            v[a, e, c, p] = r[e]
                else:
                    for e in range(4):
                        d[0, e], d[1, e], d[2, e], d[3, e] = _bt2(d[0, e], d[1, e], d[2, e], d[3, e])
                    for a in range(4):
                        r = _bt2(d[a, 0], d[a, 1], d[a, 2], d[a, 3])
                        for e in range(4):
                            v[a, e, c, p] = r[e]


@njit(parallel=True, **_OPTS)
def winograd_output(mt, out, b, m, th, tw):  # pragma: no cover - compiled
    """``out`` (N, K, OH, OW) = A^T M A + b for every tile M of ``mt`` (T, T, K, N·th·tw), cropped."""
    n_, k_, oh, ow = out.shape
    for nk in prange(n_ * k_):
        n = nk // k_
        k = nk % k_
        bias = b[k]
        tmp = np.empty((4, 6), dtype=out.dtype)
        for i in range(th):
            for j in range(tw):
                p = (n * th + i) * tw + j
                if m == 4:
                    for e in range(6):  # columns: A^T M
                        tmp[0, e], tmp[1, e], tmp[2, e], tmp[3, e] = _at4(
                            mt[0, e, k, p], mt[1, e, k, p], mt[2, e, k, p], mt[3, e, k, p], mt[4, e, k, p],
                            mt[5, e, k, p])
                    rows = 4
                else:
                    for e in range(4):
                        tmp[0, e], tmp[1, e] = _at2(mt[0, e, k, p], mt[1, e, k, p], mt[2, e, k, p], mt[3, e, k, p])
                    rows = 2
                for a in range(min(rows, oh - i * m)):  # rows: (A^T M) A, cropped at the border
                    if m == 4:
                        r = _at4(tmp[a, 0], tmp[a, 1], tmp[a, 2], tmp[a, 3], tmp[a, 4], tmp[a, 5])
                    else:
                        r2 = _at2(tmp[a, 0], tmp[a, 1], tmp[a, 2], tmp[a, 3])
                        r = (r2[0], r2[1], r2[0], r2[1])
                    for e in range(min(m, ow - j * m)):
                        out[n, k, i * m + a, j * m + e] = r[e] + bias
