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
def direct(x, w, b, has_bias, out, sh, sw, pt, pl, dh, dw, groups):  # pragma: no cover - compiled
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
        bias = b[k] if has_bias else 0.0
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


@njit(inline="always")
def _sandwich(left, tile, tmp, res):  # pragma: no cover - compiled
    """``res = left @ tile @ left.T`` for small matrices: (r, T) @ (T, T) @ (T, r)."""
    rows, t = left.shape
    for a in range(rows):  # tmp = left @ tile    (r, T) @ (T, T)
        for e in range(t):
            acc = left[a, 0] * tile[0, e]
            for z in range(1, t):
                acc += left[a, z] * tile[z, e]
            tmp[a, e] = acc
    for a in range(rows):  # res = tmp @ left.T   (r, T) @ (T, r)
        for e in range(rows):
            acc = tmp[a, 0] * left[e, 0]
            for z in range(1, t):
                acc += tmp[a, z] * left[e, z]
            res[a, e] = acc


@njit(parallel=True, **_OPTS)
def winograd_input(x, v, bt, m, th, tw, pt, pl):  # pragma: no cover - compiled
    """``v`` (T, T, C, N·th·tw) = B^T d B for every input tile d (T×T, stepping by m)."""
    n_, c_, h_, w_ = x.shape
    t = bt.shape[0]
    for nc in prange(n_ * c_):
        n = nc // c_
        c = nc % c_
        d = np.empty((t, t), dtype=x.dtype)
        tmp = np.empty((t, t), dtype=x.dtype)
        res = np.empty((t, t), dtype=x.dtype)
        for i in range(th):
            for j in range(tw):
                p = (n * th + i) * tw + j
                for a in range(t):
                    ih = i * m - pt + a
                    for e in range(t):
                        iw = j * m - pl + e
                        if 0 <= ih < h_ and 0 <= iw < w_:
                            d[a, e] = x[n, c, ih, iw]
                        else:
                            d[a, e] = 0
                _sandwich(bt, d, tmp, res)  # B^T d B
                for a in range(t):
                    for e in range(t):
                        v[a, e, c, p] = res[a, e]


@njit(parallel=True, **_OPTS)
def winograd_output(mt, out, at, b, has_bias, m, th, tw):  # pragma: no cover - compiled
    """``out`` (N, K, OH, OW) = A^T M A + b for every tile M of ``mt`` (T, T, K, N·th·tw), cropped."""
    n_, k_, oh, ow = out.shape
    t = at.shape[1]
    for nk in prange(n_ * k_):
        n = nk // k_
        k = nk % k_
        bias = b[k] if has_bias else 0.0
        tile = np.empty((t, t), dtype=out.dtype)
        tmp = np.empty((m, t), dtype=out.dtype)
        res = np.empty((m, m), dtype=out.dtype)
        for i in range(th):
            for j in range(tw):
                p = (n * th + i) * tw + j
                for a in range(t):
                    for e in range(t):
                        tile[a, e] = mt[a, e, k, p]
                _sandwich(at, tile, tmp, res)  # A^T M A
                for a in range(min(m, oh - i * m)):  # cropped at the border
                    for e in range(min(m, ow - j * m)):
                        out[n, k, i * m + a, j * m + e] = res[a, e] + bias
