"""Compiled kernels of the backward passes for the NumPy backend: col2im (the adjoint of im2col: the gradient
with respect to the input, and the transposed convolution) and the direct loop of the gradient with respect to
the weights; see :mod:`._numba_common`."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._numba_common import OPTS as _OPTS
from ._numba_common import tap_ranges as _tap_ranges


@njit(**_OPTS)
def col2im(cols, dx, kh, kw, sh, sw, pt, pl, dh, dw, ow, oh, n0, o0, cbase, c0, c1):  # pragma: no cover - compiled
    """Add the column matrices ``cols`` (NB, CB·KH·KW, OB·OW) of images ``n0..n0+NB``, output rows
    ``o0..o0+OB`` (of ``oh``) and input channels ``cbase..cbase+CB`` into ``dx`` (N, C, H, W) for input channels
    ``c0..c1`` (within those): each column entry goes back to the input position im2col read it from; entries
    read from the padding are dropped. Channels (and images) are independent, so parts of ``c0..c1`` may run on
    different threads; bands of rows of one image are not (they share input rows)."""
    nb = cols.shape[0]
    _, _, h_, w_ = dx.shape
    o1 = o0 + cols.shape[2] // ow
    taps = _tap_ranges(kh, kw, h_, w_, oh, ow, sh, sw, pt, pl, dh, dw)
    for n in range(nb):
        for c in range(c0, c1):
            plane = dx[n0 + n, c]
            for t in range(taps.shape[0]):
                r, s, o_lo, o_hi, q_lo, q_hi = taps[t, 0], taps[t, 1], taps[t, 2], taps[t, 3], taps[t, 4], taps[t, 5]
                row = cols[n, ((c - cbase) * kh + r) * kw + s]
                for o in range(max(o_lo, o0), min(o_hi, o1)):
                    # index from 0 through slices: numba then drops its negative-index test
                    src = row[(o - o0) * ow + q_lo:]
                    dst = plane[o * sh + r * dh - pt, q_lo * sw + s * dw - pl:]
                    if sw == 1:
                        for q in range(q_hi - q_lo):
                            dst[q] += src[q]
                    else:
                        for q in range(q_hi - q_lo):
                            dst[q * sw] += src[q]


@njit(**_OPTS)
def direct_grad_weight(x, gy, dw, sh, sw, pt, pl, dh, dw_, groups, k0, k1):  # pragma: no cover - compiled
    """dL/dw (K, C/G, KH, KW) into ``dw`` for output channels ``k0..k1``: for each tap, the sum over images and
    output pixels of dL/dy (N, K, OH, OW) times the input ``x`` (N, C, H, W) the tap read. Output channels are
    independent, so parts of ``k0..k1`` may run on different threads. Per image, one plane of dL/dy and one of
    the input serve all the taps, each tap summing into a row of accumulators (which vectorises)."""
    n_, _, h_, w_ = x.shape
    _, k_, oh, ow = gy.shape
    _, cg, kh, kw = dw.shape
    kg = k_ // groups
    taps = _tap_ranges(kh, kw, h_, w_, oh, ow, sh, sw, pt, pl, dh, dw_)
    acc = np.empty((taps.shape[0], ow), dtype=dw.dtype)
    for k in range(k0, k1):
        c_first = (k // kg) * cg
        for cc in range(cg):
            acc[:] = 0
            for n in range(n_):
                grad, plane = gy[n, k], x[n, c_first + cc]
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
            for r in range(kh):
                for s in range(kw):
                    dw[k, cc, r, s] = 0
            for t in range(taps.shape[0]):
                total = 0.0
                for q in range(ow):
                    total += acc[t, q]
                dw[k, cc, taps[t, 0], taps[t, 1]] = total
