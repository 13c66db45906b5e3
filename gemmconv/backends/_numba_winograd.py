"""Compiled CPU kernels (numba) of Winograd's tile transforms, for the NumPy backend.

Like the others (:mod:`._numba_common`), each runs on the calling thread over the tile rows and channels its
arguments give; the backend's workers run parts in parallel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from ._kernel_cache import compiled


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


@njit(inline="always")
def _strip_bt4(rt, top, cs, width, cb):  # pragma: no cover - compiled
    """B^T down each column of the strip, over the channels; strip row u is ring slot (top + u) % 6 of ``rt``."""
    r0, r1, r2 = rt[top % 6], rt[(top + 1) % 6], rt[(top + 2) % 6]
    r3, r4, r5 = rt[(top + 3) % 6], rt[(top + 4) % 6], rt[(top + 5) % 6]
    for q in range(width):
        s0, s1, s2, s3, s4, s5 = r0[q], r1[q], r2[q], r3[q], r4[q], r5[q]
        d0, d1, d2, d3, d4, d5 = cs[0, q], cs[1, q], cs[2, q], cs[3, q], cs[4, q], cs[5, q]
        for c in range(cb):
            d0[c], d1[c], d2[c], d3[c], d4[c], d5[c] = _bt4(s0[c], s1[c], s2[c], s3[c], s4[c], s5[c])


@njit(inline="always")
def _strip_bt2(rt, top, cs, width, cb):  # pragma: no cover - compiled
    r0, r1, r2, r3 = rt[top % 4], rt[(top + 1) % 4], rt[(top + 2) % 4], rt[(top + 3) % 4]
    for q in range(width):
        s0, s1, s2, s3 = r0[q], r1[q], r2[q], r3[q]
        d0, d1, d2, d3 = cs[0, q], cs[1, q], cs[2, q], cs[3, q]
        for c in range(cb):
            d0[c], d1[c], d2[c], d3[c] = _bt2(s0[c], s1[c], s2[c], s3[c])


@njit(inline="always")
def _tile_b4(cs, vt, q, base, cb):  # pragma: no cover - compiled
    for a in range(6):  # B across the tile's columns q..q+5, over the channels, into the 36 rows of vt
        e0, e1, e2, e3, e4, e5 = cs[a, q], cs[a, q + 1], cs[a, q + 2], cs[a, q + 3], cs[a, q + 4], cs[a, q + 5]
        o0, o1, o2 = vt[a * 6, base:], vt[a * 6 + 1, base:], vt[a * 6 + 2, base:]
        o3, o4, o5 = vt[a * 6 + 3, base:], vt[a * 6 + 4, base:], vt[a * 6 + 5, base:]
        for c in range(cb):
            o0[c], o1[c], o2[c], o3[c], o4[c], o5[c] = _bt4(e0[c], e1[c], e2[c], e3[c], e4[c], e5[c])


@njit(inline="always")
def _tile_b2(cs, vt, q, base, cb):  # pragma: no cover - compiled
    for a in range(4):
        e0, e1, e2, e3 = cs[a, q], cs[a, q + 1], cs[a, q + 2], cs[a, q + 3]
        o0, o1, o2, o3 = vt[a * 4, base:], vt[a * 4 + 1, base:], vt[a * 4 + 2, base:], vt[a * 4 + 3, base:]
        for c in range(cb):
            o0[c], o1[c], o2[c], o3[c] = _bt2(e0[c], e1[c], e2[c], e3[c])


@compiled()
def winograd_input(x, vt, p_, m, th, tw, pt, pl, r0, c0, c1):  # pragma: no cover - compiled
    """Input tiles' ``B^T d B`` into ``vt`` (T², pitch): row a·T + b holds element (a, b) of tile p and
    channel c at p·C + c (C = x's channels). Tiles p < ``p_`` are those of tile rows r0..r0+p_/tw (row g
    of N·th is row g % th of image g // th); channels c0..c1.

    Per row of tiles, the T input rows it reads are copied channels-last (zero-padded) into a strip,
    so that B^T (down the strip) and B (across each tile) run over contiguous vectors of channels and
    each of a tile's T² elements is stored as one run of channels (the GEMM's (P, C) rows). Laid out
    (C, P) instead, the same transform ran scalar per tile: 27-59 ns a tile and channel against 11-16.
    The strip is a ring of T rows (input row r in slot r % T): the next row of tiles of the same image
    copies only its m new rows, not the 2 it shares (the copies are about half the kernel's time).
    """
    _, c_, h_, w_ = x.shape
    t = m + 2
    cb = c1 - c0
    width = tw * m + 2
    q_lo, q_hi = min(pl, width), min(pl + w_, width)  # strip columns that hold input pixels
    rt = np.zeros((t, width, cb), dtype=x.dtype)  # ring of input rows, channels last; padding columns stay 0
    cs = np.empty((t, width, cb), dtype=x.dtype)  # B^T of the strip
    held = -1  # image n·th + i of the tile row whose input rows the ring holds (-1: none)
    for gb in range(p_ // tw):
        n = (r0 + gb) // th
        i = (r0 + gb) % th
        top = i * m - pt  # the strip's first input row
        kept = t - m if held == r0 + gb - 1 and i > 0 else 0  # the previous tile row's last rows, still in the ring
        held = r0 + gb
        for u in range(kept, t):
            ih = top + u
            dst = rt[ih % t]  # (a floor modulo, as in Python: never negative)
            if 0 <= ih < h_:
                rows = x[n, c0:c1, ih]  # (CB, W): read down the channels, written contiguously
                for q in range(q_lo, q_hi):
                    d = dst[q]
                    for c in range(cb):
                        d[c] = rows[c, q - pl]
            else:
                for q in range(q_lo, q_hi):
                    d = dst[q]
                    for c in range(cb):
                        d[c] = 0
        if m == 4:  # (each branch's loops have constant trip counts: unrolled)
            _strip_bt4(rt, top, cs, width, cb)
            for j in range(tw):
                _tile_b4(cs, vt, j * 4, (gb * tw + j) * c_ + c0, cb)
        else:
            _strip_bt2(rt, top, cs, width, cb)
            for j in range(tw):
                _tile_b2(cs, vt, j * 2, (gb * tw + j) * c_ + c0, cb)


@njit(inline="always")
def _tile_a4(mt, base, am, ot, q, bias, kb):  # pragma: no cover - compiled
    for e in range(6):  # A^T down the tile's column e, over the channels
        s0, s1, s2 = mt[e, base:], mt[6 + e, base:], mt[12 + e, base:]
        s3, s4, s5 = mt[18 + e, base:], mt[24 + e, base:], mt[30 + e, base:]
        a0, a1, a2, a3 = am[0, e], am[1, e], am[2, e], am[3, e]
        for k in range(kb):
            a0[k], a1[k], a2[k], a3[k] = _at4(s0[k], s1[k], s2[k], s3[k], s4[k], s5[k])
    for y in range(4):  # A across, plus the bias, into output columns q..q+3 of the row buffer
        f0, f1, f2, f3, f4, f5 = am[y, 0], am[y, 1], am[y, 2], am[y, 3], am[y, 4], am[y, 5]
        g0, g1, g2, g3 = ot[y, q], ot[y, q + 1], ot[y, q + 2], ot[y, q + 3]
        for k in range(kb):
            y0, y1, y2, y3 = _at4(f0[k], f1[k], f2[k], f3[k], f4[k], f5[k])
            g0[k], g1[k], g2[k], g3[k] = y0 + bias[k], y1 + bias[k], y2 + bias[k], y3 + bias[k]


@njit(inline="always")
def _tile_a2(mt, base, am, ot, q, bias, kb):  # pragma: no cover - compiled
    for e in range(4):
        s0, s1, s2, s3 = mt[e, base:], mt[4 + e, base:], mt[8 + e, base:], mt[12 + e, base:]
        a0, a1 = am[0, e], am[1, e]
        for k in range(kb):
            a0[k], a1[k] = _at2(s0[k], s1[k], s2[k], s3[k])
    for y in range(2):
        f0, f1, f2, f3 = am[y, 0], am[y, 1], am[y, 2], am[y, 3]
        g0, g1 = ot[y, q], ot[y, q + 1]
        for k in range(kb):
            y0, y1 = _at2(f0[k], f1[k], f2[k], f3[k])
            g0[k], g1[k] = y0 + bias[k], y1 + bias[k]


@compiled()
def winograd_output(mt, p_, kb, out, b, m, th, tw, r0, k0):  # pragma: no cover - compiled
    """``out`` (N, K, OH, OW) = A^T M A + b, cropped, for the tiles of ``mt`` (T², pitch): row a·T + b
    holds element (a, b) of tile p and output channel k0 + k at p·KB + k; tiles p < ``p_`` are those
    of tile rows r0..r0+p_/tw (row g of N·th is row g % th of image g // th).

    Per tile, A^T (down) and A (across) run over contiguous vectors of channels into a channels-last
    buffer of the tile row's m output rows, which is then copied (transposed) into ``out``.
    """
    _, _, oh, ow = out.shape
    t = m + 2
    am = np.empty((m, t, kb), dtype=out.dtype)  # A^T M of one tile
    ot = np.empty((m, tw * m, kb), dtype=out.dtype)  # the tile row's output rows, channels last
    bias = b[k0:k0 + kb]
    for gb in range(p_ // tw):
        n = (r0 + gb) // th
        i = (r0 + gb) % th
        for j in range(tw):
            if m == 4:  # (each branch's loops have constant trip counts: unrolled)
                _tile_a4(mt, (gb * tw + j) * kb, am, ot, j * 4, bias, kb)
            else:
                _tile_a2(mt, (gb * tw + j) * kb, am, ot, j * 2, bias, kb)
        for y in range(min(m, oh - i * m)):  # cropped at the border
            src = ot[y]
            for k in range(kb):
                dst = out[n, k0 + k, i * m + y]
                for q in range(ow):
                    dst[q] = src[q, k]
