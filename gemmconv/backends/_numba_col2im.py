"""Compiled col2im for the NumPy backend (the adjoint of im2col: the gradient with respect to the input, and
the transposed convolution); see :mod:`._numba_common`."""

from __future__ import annotations

from numba import njit

from ._numba_common import OPTS as _OPTS
from ._numba_common import tap_ranges as _tap_ranges


@njit(**_OPTS)
def col2im(cols, dx, kh, kw, sh, sw, pt, pl, dh, dw, ow, c0, c1):  # pragma: no cover - compiled
    """Add the column matrices ``cols`` (N, C·KH·KW, OH·OW) into ``dx`` (N, C, H, W) for input channels
    ``c0..c1``: each column entry goes back to the input position im2col read it from; entries read from
    the padding are dropped. Channels are independent, so parts of ``c0..c1`` may run on different threads."""
    n_, _, h_, w_ = dx.shape
    oh = cols.shape[2] // ow
    taps = _tap_ranges(kh, kw, h_, w_, oh, ow, sh, sw, pt, pl, dh, dw)
    for n in range(n_):
        for c in range(c0, c1):
            plane = dx[n, c]
            for t in range(taps.shape[0]):
                r, s, o_lo, o_hi, q_lo, q_hi = taps[t, 0], taps[t, 1], taps[t, 2], taps[t, 3], taps[t, 4], taps[t, 5]
                row = cols[n, (c * kh + r) * kw + s]
                for o in range(o_lo, o_hi):
                    # index from 0 through slices: numba then drops its negative-index test
                    src = row[o * ow + q_lo:]
                    dst = plane[o * sh + r * dh - pt, q_lo * sw + s * dw - pl:]
                    if sw == 1:
                        for q in range(q_hi - q_lo):
                            dst[q] += src[q]
                    else:
                        for q in range(q_hi - q_lo):
                            dst[q * sw] += src[q]
