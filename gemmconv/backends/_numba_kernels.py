"""Compiled CPU kernels (numba) for the NumPy backend.

Each kernel parallelises its outer loop with ``prange`` over independent
output slices, so the threads never write the same element. Index ranges of
the valid (non-padding) part of a row are computed once per row, so the inner
loops carry no bounds test and vectorise for unit stride.
"""

from __future__ import annotations

import os
import types

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


def im2col(x, cols, kh, kw, sh, sw, pt, pl, dh, dw, ow, n0, o0):  # pragma: no cover - compiled
    """Fill ``cols`` (NB, C·KH·KW, OB·OW) from ``x`` (N, C, H, W): images n0..n0+NB, output rows o0..o0+OB.

    Padding reads as zero.
    """
    _, c_, h_, w_ = x.shape
    nb, rows, length = cols.shape
    ob = length // ow
    for nr in prange(nb * rows):
        n = nr // rows
        row = nr % rows
        c = row // (kh * kw)
        r = (row // kw) % kh
        s = row % kw
        iw0 = s * dw - pl
        q_lo, q_hi = _valid_range(w_, iw0, sw, ow)
        dst = cols[n, row]
        plane = x[n0 + n, c]
        for o in range(ob):
            seg = dst[o * ow:(o + 1) * ow]
            ih = (o0 + o) * sh - pt + r * dh
            if ih < 0 or ih >= h_:
                seg[:] = 0
                continue
            seg[:q_lo] = 0
            src = plane[ih, q_lo * sw + iw0:]
            for q in range(q_hi - q_lo):
                seg[q_lo + q] = src[q * sw]
            seg[q_hi:] = 0


def direct(x, w, b, out, sh, sw, pt, pl, dh, dw, groups):  # pragma: no cover - compiled
    """``out`` (N, K, OH, OW) = conv(x, w) + b by loops over output pixels and taps.

    Each output plane (n, k) copies the receptive field of each of its input channels, zero-padded,
    into a thread-local buffer once, then every tap is a whole-plane loop with no bounds tests
    (unit-stride and vectorised when the stride is 1).
    """
    n_, c_, h_, w_ = x.shape
    k_, cg_, kh, kw = w.shape
    _, _, oh, ow = out.shape
    kg_ = k_ // groups
    hp = (oh - 1) * sh + (kh - 1) * dh + 1  # rows and columns of padded input that the outputs read
    wp = (ow - 1) * sw + (kw - 1) * dw + 1
    e_lo, e_hi = min(pl, wp), max(min(pl + w_, wp), min(pl, wp))  # buffer columns backed by input
    for nk in prange(n_ * k_):
        n = nk // k_
        k = nk % k_
        c0 = (k // kg_) * cg_
        acc = out[n, k]
        bias = b[k]
        for o in range(oh):
            row_acc = acc[o]
            for q in range(ow):
                row_acc[q] = bias
        buf = np.zeros((hp, wp), dtype=x.dtype)
        for cg in range(cg_):
            plane = x[n, c0 + cg]
            for a in range(hp):
                ih = a - pt
                dst = buf[a, e_lo:e_hi]
                if 0 <= ih < h_:
                    src = plane[ih, e_lo - pl:]
                    for e in range(e_hi - e_lo):
                        dst[e] = src[e]
                else:
                    for e in range(e_hi - e_lo):
                        dst[e] = 0
            for r in range(kh):
                for s in range(kw):
                    wv = w[k, cg, r, s]
                    col0 = s * dw
                    for o in range(oh):
                        # index from 0 through slices: numba then knows every index is non-negative,
                        # drops its negative-index test and the loop vectorises (8x here)
                        src = buf[o * sh + r * dh, col0:]
                        dst = acc[o]
                        if sw == 1:
                            for q in range(ow):
                                dst[q] += wv * src[q]
                        else:
                            for q in range(ow):
                                dst[q] += wv * src[q * sw]


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


def winograd_input(x, v, m, th, tw, pt, pl, r0):  # pragma: no cover - compiled
    """``v`` (T, T, C, RB·tw) = B^T d B for the input tiles d (T×T, stepping by m) of tile rows r0..r0+RB.

    T = m + 2; tile row g (of N·th) is row g % th of image g // th.

    One row of tiles at a time: its T input rows are copied (zero-padded) into a strip, the tiles
    are gathered into a (T, T, tw) block, and both 1-D transforms run across the tw tiles, so the
    innermost loops are long, independent and vectorised, and the stores to ``v`` are contiguous.
    """
    _, c_, h_, w_ = x.shape
    t = m + 2
    width = tw * m + 2
    rb = v.shape[3] // tw
    q_lo, q_hi = min(pl, width), min(pl + w_, width)  # strip columns that hold input pixels
    for c in prange(c_):
        strip = np.zeros((t, width), dtype=x.dtype)
        d = np.empty((t, t, tw), dtype=x.dtype)
        for gb in range(rb):
            n = (r0 + gb) // th
            i = (r0 + gb) % th
            p0 = gb * tw
            # indices below all run from 0 over slices, so numba can drop its negative-index test
            for a in range(t):
                ih = i * m - pt + a
                dst = strip[a, q_lo:q_hi]
                if 0 <= ih < h_:
                    src = x[n, c, ih, q_lo - pl:]
                    for q in range(q_hi - q_lo):
                        dst[q] = src[q]
                else:
                    for q in range(q_hi - q_lo):
                        dst[q] = 0
            for a in range(t):
                for e in range(t):
                    src = strip[a, e:]
                    blk = d[a, e]
                    if m == 4:
                        for j in range(tw):
                            blk[j] = src[j * 4]
                    else:
                        for j in range(tw):
                            blk[j] = src[j * 2]
            if m == 4:
                for e in range(6):  # columns: B^T d
                    for j in range(tw):
                        d[0, e, j], d[1, e, j], d[2, e, j], d[3, e, j], d[4, e, j], d[5, e, j] = _bt4(
                            d[0, e, j], d[1, e, j], d[2, e, j], d[3, e, j], d[4, e, j], d[5, e, j])
                for a in range(6):  # rows: (B^T d) B
                    v0, v1, v2 = v[a, 0, c, p0:], v[a, 1, c, p0:], v[a, 2, c, p0:]
                    v3, v4, v5 = v[a, 3, c, p0:], v[a, 4, c, p0:], v[a, 5, c, p0:]
                    for j in range(tw):
                        v0[j], v1[j], v2[j], v3[j], v4[j], v5[j] = _bt4(
                            d[a, 0, j], d[a, 1, j], d[a, 2, j], d[a, 3, j], d[a, 4, j], d[a, 5, j])
            else:
                for e in range(4):
                    for j in range(tw):
                        d[0, e, j], d[1, e, j], d[2, e, j], d[3, e, j] = _bt2(
                            d[0, e, j], d[1, e, j], d[2, e, j], d[3, e, j])
                for a in range(4):
                    v0, v1, v2, v3 = v[a, 0, c, p0:], v[a, 1, c, p0:], v[a, 2, c, p0:], v[a, 3, c, p0:]
                    for j in range(tw):
                        v0[j], v1[j], v2[j], v3[j] = _bt2(d[a, 0, j], d[a, 1, j], d[a, 2, j], d[a, 3, j])


def winograd_output(mt, out, b, m, th, tw, r0, k0):  # pragma: no cover - compiled
    """``out`` (N, K, OH, OW) = A^T M A + b for the tiles M of ``mt`` (T, T, KB, RB·tw), cropped.

    ``mt`` holds output channels k0..k0+KB of tile rows r0..r0+RB (row g is row g % th of image g // th).

    One row of tiles at a time, as in :func:`winograd_input`: contiguous loads of a (T, T, tw) block,
    both 1-D transforms across the tw tiles, then the rows written out.
    """
    _, _, oh, ow = out.shape
    t = m + 2
    kb = mt.shape[2]
    rb = mt.shape[3] // tw
    for k in prange(kb):
        bias = b[k0 + k]
        blk = np.empty((t, t, tw), dtype=out.dtype)
        row = np.empty((m, tw * m), dtype=out.dtype)
        for gb in range(rb):
            n = (r0 + gb) // th
            i = (r0 + gb) % th
            p0 = gb * tw
            for a in range(t):
                for e in range(t):
                    src = mt[a, e, k, p0:]
                    dst = blk[a, e]
                    for j in range(tw):
                        dst[j] = src[j]
            if m == 4:
                for e in range(6):  # columns: A^T M
                    for j in range(tw):
                        blk[0, e, j], blk[1, e, j], blk[2, e, j], blk[3, e, j] = _at4(
                            blk[0, e, j], blk[1, e, j], blk[2, e, j], blk[3, e, j], blk[4, e, j], blk[5, e, j])
                for a in range(4):  # rows: (A^T M) A
                    for j in range(tw):
                        r = _at4(blk[a, 0, j], blk[a, 1, j], blk[a, 2, j], blk[a, 3, j], blk[a, 4, j], blk[a, 5, j])
                        for e in range(4):
                            row[a, j * 4 + e] = r[e] + bias
            else:
                for e in range(4):
                    for j in range(tw):
                        blk[0, e, j], blk[1, e, j] = _at2(blk[0, e, j], blk[1, e, j], blk[2, e, j], blk[3, e, j])
                for a in range(2):
                    for j in range(tw):
                        r = _at2(blk[a, 0, j], blk[a, 1, j], blk[a, 2, j], blk[a, 3, j])
                        row[a, j * 2] = r[0] + bias
                        row[a, j * 2 + 1] = r[1] + bias
            for a in range(min(m, oh - i * m)):  # cropped at the border
                dst = out[n, k0 + k, i * m + a]
                for q in range(ow):
                    dst[q] = row[a, q]


def _variant(fn, suffix, **opts):
    """``fn`` compiled with ``opts``, under its own name (so numba's on-disk cache keeps the variants apart)."""
    copy = types.FunctionType(fn.__code__.replace(co_name=fn.__name__ + suffix), fn.__globals__,
                              fn.__name__ + suffix, fn.__defaults__, fn.__closure__)
    copy.__qualname__ = fn.__qualname__ + suffix
    copy.__doc__ = fn.__doc__
    return njit(**opts, **_OPTS)(copy)


#: the kernels, each in two builds: ``PARALLEL[name]`` spreads its outer loop over numba's threads;
#: ``SERIAL[name]`` runs on the calling thread (inside a worker of the blocked pipelines)
_KERNELS = (im2col, direct, winograd_input, winograd_output)
PARALLEL = {fn.__name__: _variant(fn, "", parallel=True) for fn in _KERNELS}
SERIAL = {fn.__name__: _variant(fn, "_serial") for fn in _KERNELS}
