"""Compiled kernels of the backward passes for the NumPy backend: col2im (the adjoint of im2col: the gradient
with respect to the input, and the transposed convolution) and the direct loop of the gradient with respect to
the weights; see :mod:`._numba_common`."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._kernel_cache import compiled
from ._numba_common import tap_ranges as _tap_ranges


@compiled()
def col2im(cols, dx, kh, kw, sh, sw, pt, pl, dh, dw, ow, oh, n0, o0, cbase, images, c0, c1):  # pragma: no cover
    """Add the column matrices ``cols`` (NB, CB·KH·KW, OB·OW) of images ``n0..n0+NB``, output rows
    ``o0..o0+OB`` (of ``oh``) and input channels ``cbase..cbase+CB`` into ``dx`` (N, C, H, W) for input channels
    ``c0..c1`` (within those): each column entry goes back to the input position im2col read it from; entries
    read from the padding are dropped. With ``images`` > 0, ``cols`` is (1, CB·KH·KW, images·OH·OW) instead: the
    whole images' columns side by side (one GEMM's product for several images), and ``o0`` is 0. Channels (and
    images) are independent, so parts of ``c0..c1`` may run on different threads; bands of rows of one image are
    not (they share input rows).

    At stride 2 without dilation along the width, taps ``s`` and ``s + 1`` of a kernel row write alternate
    columns of one input row: they are added as pairs (:func:`_add_pair`), whose stores interleave into
    contiguous ones."""
    wide = images > 0
    nb = images if wide else cols.shape[0]
    width = cols.shape[2] // images if wide else cols.shape[2]  # one image's columns
    _, _, h_, w_ = dx.shape
    o1 = o0 + width // ow
    taps = _tap_ranges(kh, kw, h_, w_, oh, ow, sh, sw, pt, pl, dh, dw)
    count = taps.shape[0]
    pairs = sw == 2 and dw == 1
    for n in range(nb):
        for c in range(c0, c1):
            plane = dx[n0 + n, c]
            at, base = (0, n * width) if wide else (n, 0)  # where image n's columns are
            t = 0
            while t < count:
                r, s, o_lo, o_hi, q_lo, q_hi = taps[t, 0], taps[t, 1], taps[t, 2], taps[t, 3], taps[t, 4], taps[t, 5]
                row = cols[at, ((c - cbase) * kh + r) * kw + s]
                if pairs and t + 1 < count and taps[t + 1, 0] == r and taps[t + 1, 1] == s + 1:
                    nxt = cols[at, ((c - cbase) * kh + r) * kw + s + 1]
                    for o in range(max(o_lo, o0), min(o_hi, o1)):
                        i = base + (o - o0) * ow  # output row o's columns
                        _add_pair(plane[o * sh + r * dh - pt], row[i:], nxt[i:], s - pl, q_lo, q_hi, taps[t + 1, 4],
                                  taps[t + 1, 5])
                    t += 2
                    continue
                for o in range(max(o_lo, o0), min(o_hi, o1)):
                    # index from 0 through slices: numba then drops its negative-index test
                    src = row[base + (o - o0) * ow + q_lo:]
                    dst = plane[o * sh + r * dh - pt, q_lo * sw + s * dw - pl:]
                    if sw == 1:
                        for q in range(q_hi - q_lo):
                            dst[q] += src[q]
                    else:
                        for q in range(q_hi - q_lo):
                            dst[q * sw] += src[q]
                t += 1


@njit(inline="always")
def _add_pair(drow, a, b, shift, a_lo, a_hi, b_lo, b_hi):  # pragma: no cover - compiled
    """``drow[2q + shift] += a[q]`` for q in ``[a_lo, a_hi)`` and ``drow[2q + shift + 1] += b[q]`` for q in
    ``[b_lo, b_hi)``, where ``b`` is the tap one column right of ``a``'s: its columns start and end no later
    (``b_lo <= a_lo``, ``b_hi <= a_hi``). The common range is one loop of pairs of adjacent stores."""
    hi = max(b_hi, a_lo)  # the common range is [a_lo, hi)
    for q in range(b_lo, min(a_lo, b_hi)):  # b alone, left of the common range
        drow[2 * q + shift + 1] += b[q]
    d, x, y = drow[2 * a_lo + shift:], a[a_lo:], b[a_lo:]  # from index 0: no negative-index tests
    for q in range(hi - a_lo):
        d[2 * q] += x[q]
        d[2 * q + 1] += y[q]
    for q in range(hi, a_hi):  # a alone, right of it
        drow[2 * q + shift] += a[q]


@njit(inline="always")
def _exact_tap_sums(x, gy, n_, k, c, taps, sh, sw, pt, pl, dh, dw_, acc, tot):  # pragma: no cover - compiled
    """``tot[t]`` = the sum over images and output pixels of dL/dy (plane ``k``) times the input (plane ``c``)
    that tap ``t`` of ``taps`` read, valid pixels only; one row of accumulators ``acc[t]`` per tap."""
    acc[:] = 0
    for n in range(n_):
        grad, plane = gy[n, k], x[n, c]
        for t in range(taps.shape[0]):
            r, s, o_lo, o_hi = taps[t, 0], taps[t, 1], taps[t, 2], taps[t, 3]
            q_lo, q_hi = taps[t, 4], taps[t, 5]
            row = acc[t]
            for o in range(o_lo, o_hi):
                src = grad[o, q_lo:]
                inp = plane[o * sh + r * dh - pt, q_lo * sw + s * dw_ - pl:]
                if sw == 1:
                    for q in range(q_hi - q_lo):
                        row[q] += src[q] * inp[q]
                else:
                    for q in range(q_hi - q_lo):
                        row[q] += src[q] * inp[q * sw]
    for t in range(taps.shape[0]):
        total = 0.0
        for q in range(acc.shape[1]):
            total += acc[t, q]
        tot[t] = total


@njit(inline="always")
def _padded_tap_sums(x, gy, n_, k, c, taps, pt, pl, dh, dw_, xp, gp, wp, tot):  # pragma: no cover - compiled
    """As :func:`_exact_tap_sums` at unit stride, through zero-padded planes: ``xp`` holds the input plane
    ``c`` inside its padding (rows of ``wp``), ``gp`` dL/dy's plane ``k`` in rows of ``wp`` (zeros past its
    ``OW`` columns), so each tap's sum is one dot product of ``gp`` with ``xp`` from the tap's offset on
    (contiguous: it vectorises). The zeros of ``gp`` meet input values of the next row: exact for finite
    inputs (the caller redoes a non-finite result exactly)."""
    _, _, h_, w_ = x.shape
    oh, ow = gy.shape[2], gy.shape[3]
    size = gp.shape[0]
    i_lo, i_hi = pt, min(xp.shape[0] // wp, pt + h_)  # rows of xp that hold input rows, and their columns
    j_lo, j_hi = pl, min(wp, pl + w_)
    tot[:] = 0
    for n in range(n_):
        grad, plane = gy[n, k], x[n, c]
        for o in range(oh):
            dst, src = gp[o * wp: o * wp + ow], grad[o]
            for q in range(ow):
                dst[q] = src[q]
        for i in range(i_lo, i_hi):
            dst, src = xp[i * wp + j_lo: i * wp + j_hi], plane[i - pt, j_lo - pl:]
            for j in range(j_hi - j_lo):
                dst[j] = src[j]
        count, t = taps.shape[0], 0
        while t + 3 <= count:  # three taps per pass over gp: each of its loads serves three products
            xa = xp[taps[t, 0] * dh * wp + taps[t, 1] * dw_:]
            xb = xp[taps[t + 1, 0] * dh * wp + taps[t + 1, 1] * dw_:]
            xc = xp[taps[t + 2, 0] * dh * wp + taps[t + 2, 1] * dw_:]
            sa = sb = sc = gp.dtype.type(0)
            for e in range(size):
                g = gp[e]
                sa += g * xa[e]
                sb += g * xb[e]
                sc += g * xc[e]
            tot[t] += sa
            tot[t + 1] += sb
            tot[t + 2] += sc
            t += 3
        for u in range(t, count):  # the last one or two
            xs = xp[taps[u, 0] * dh * wp + taps[u, 1] * dw_:]
            total = gp.dtype.type(0)
            for e in range(size):
                total += gp[e] * xs[e]
            tot[u] += total


@compiled(fastmath={"reassoc", "contract"})
def direct_grad_weight(x, gy, dw, sh, sw, pt, pl, dh, dw_, groups, k0, k1):  # pragma: no cover - compiled
    """dL/dw (K, C/G, KH, KW) into ``dw`` for output channels ``k0..k1``: for each tap, the sum over images and
    output pixels of dL/dy (N, K, OH, OW) times the input ``x`` (N, C, H, W) the tap read. Output channels are
    independent, so parts of ``k0..k1`` may run on different threads.

    At unit stride each tap's sum is a dot product over zero-padded planes (:func:`_padded_tap_sums`,
    reassociated so that it vectorises, which rows of accumulators do not); a sum that comes
    out non-finite, and every sum at other strides, is taken over the valid pixels only
    (:func:`_exact_tap_sums`), so Inf and NaN reach exactly the taps that read them, as in torch."""
    n_, _, h_, w_ = x.shape
    _, k_, oh, ow = gy.shape
    _, cg, kh, kw = dw.shape
    kg = k_ // groups
    taps = _tap_ranges(kh, kw, h_, w_, oh, ow, sh, sw, pt, pl, dh, dw_)
    padded = sh == 1 and sw == 1
    wp = ow + (kw - 1) * dw_ if padded else 1  # at unit stride: the padded width W + pl + pr, and height
    hp = oh + (kh - 1) * dh if padded else 0
    xp = np.zeros(hp * wp + (kw - 1) * dw_ if padded else 0, dtype=x.dtype)
    gp = np.zeros(oh * wp if padded else 0, dtype=x.dtype)
    acc = np.empty((taps.shape[0], ow), dtype=dw.dtype)
    tot = np.empty(taps.shape[0], dtype=np.float64)
    for k in range(k0, k1):
        c_first = (k // kg) * cg
        for cc in range(cg):
            done = False
            if padded:
                _padded_tap_sums(x, gy, n_, k, c_first + cc, taps, pt, pl, dh, dw_, xp, gp, wp, tot)
                done = np.isfinite(tot.sum())
            if not done:
                _exact_tap_sums(x, gy, n_, k, c_first + cc, taps, sh, sw, pt, pl, dh, dw_, acc, tot)
            for r in range(kh):
                for s in range(kw):
                    dw[k, cc, r, s] = 0
            for t in range(taps.shape[0]):
                dw[k, cc, taps[t, 0], taps[t, 1]] = tot[t]
