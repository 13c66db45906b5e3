"""Compiled column packing (im2col) for the NumPy backend; see :mod:`._numba_common`."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._kernel_cache import compiled
from ._numba_common import copy_rows as _copy_rows
from ._numba_common import valid_range as _valid_range


@njit(inline="always")
def _phase_slots(k, d, pad, stride):  # pragma: no cover - compiled
    """The distinct phases (t·d - pad) mod stride of a kernel's k taps, and each tap's slot among them:
    at most min(k, stride) phases, so the planes follow the kernel, not the stride."""
    values = np.empty(k, dtype=np.int64)
    slots = np.empty(k, dtype=np.int64)
    count = 0
    for t in range(k):
        ph = (t * d - pad) % stride
        slot = count
        for i in range(count):
            if values[i] == ph:
                slot = i
        if slot == count:
            values[count] = ph
            count += 1
        slots[t] = slot
    return values[:count], slots


@njit(inline="always")
def _phase_elements(kh, kw, sh, sw, pt, pl, dh, dw, ob, ow):  # pragma: no cover - compiled
    """Elements of :func:`_im2col_phases`' planes for a band of ``ob`` output rows."""
    rb_lo, rb_hi = (-pt) // sh, ((kh - 1) * dh - pt) // sh
    return min(kh, sh) * min(kw, sw) * (ob + rb_hi - rb_lo) * ow


@compiled()
def _im2col_phases(x, cols, kh, kw, sh, sw, pt, pl, dh, dw, ow, n0, o0):  # pragma: no cover - compiled
    """:func:`im2col` for strided convolutions: per plane, the input rows a band reads are split once
    into the polyphase planes its taps read (rows SH·i + rp, columns SW·j + cp, for the phases rp and
    cp of the kernel's taps: at most KH·KW of the SH·SW), ``ow`` wide, so that a column row is one
    contiguous run of one of them, as for unit-stride 'same' rows (3x3/2 at 56²: a band packed 2.5x
    faster than from each input row split into even and odd columns per tap).

    Output (o, q) of tap (r, s) reads input row SH·(o0 + o) - pt + r·dh = SH·(o0 + o + rb) + rp and
    column SW·q - pl + s·dw = SW·(q + sb) + cp: row o0 + o + rb, column q + sb of plane (rp, cp). The
    columns where q + sb falls outside [0, ow) wrapped into a neighbouring row and are rewritten.
    """
    _, c_, h_, w_ = x.shape
    nb, length = cols.shape[0], cols.shape[2]
    ob = length // ow
    rb_lo, rb_hi = (-pt) // sh, ((kh - 1) * dh - pt) // sh  # floor division, as in Python
    i_start = o0 + rb_lo  # plane row of the buffers' row 0
    nrows = ob + rb_hi - rb_lo
    size = nrows * ow
    rph, r_slot = _phase_slots(kh, dh, pt, sh)
    cph, s_slot = _phase_slots(kw, dw, pl, sw)
    planes = np.empty((len(rph), len(cph), size), dtype=x.dtype)
    j_full = min(ow, w_ // sw)  # columns j where every phase SW·j + cp lies inside the row
    both = sw == 2 and len(cph) == 2  # even and odd columns, split in one pass
    ev_slot = 0 if both and cph[0] == 0 else 1
    for n in range(nb):
        for c in range(c_):
            plane = x[n0 + n, c]
            for ri in range(len(rph)):  # the polyphase planes of the band
                rp = rph[ri]
                for i in range(nrows):
                    ih = sh * (i_start + i) + rp
                    if ih < 0 or ih >= h_:
                        for ci in range(len(cph)):
                            row = planes[ri, ci, i * ow:]
                            for j in range(ow):
                                row[j] = 0
                        continue
                    src = plane[ih]
                    if both:
                        ev, od = planes[ri, ev_slot, i * ow:], planes[ri, 1 - ev_slot, i * ow:]
                        for j in range(j_full):
                            ev[j] = src[2 * j]
                            od[j] = src[2 * j + 1]
                    else:
                        for ci in range(len(cph)):
                            cp = cph[ci]
                            row = planes[ri, ci, i * ow:]
                            for j in range(j_full):
                                row[j] = src[sw * j + cp]
                    for ci in range(len(cph)):
                        cp = cph[ci]
                        row = planes[ri, ci, i * ow:]
                        for j in range(j_full, ow):
                            iw = sw * j + cp
                            row[j] = src[iw] if iw < w_ else 0
            for r in range(kh):
                rp = rph[r_slot[r]]
                rb = (r * dh - pt - rp) // sh
                for s in range(kw):
                    cp = cph[s_slot[s]]
                    sb = (s * dw - pl - cp) // sw
                    src = planes[r_slot[r], s_slot[s]]
                    dst = cols[n, (c * kh + r) * kw + s]
                    start = (rb - rb_lo) * ow + sb  # dst[t] = src[start + t]; outside src only at border columns
                    lo = min(ob * ow, max(0, -start))  # never past the row
                    hi = max(lo, min(ob * ow, size - start))
                    run = src[start + lo:]
                    out = dst[lo:]
                    for t in range(hi - lo):
                        out[t] = run[t]
                    for t in range(lo):
                        dst[t] = 0
                    for t in range(hi, ob * ow):
                        dst[t] = 0
                    for o in range(ob):  # border columns, which wrapped into the neighbouring rows
                        seg = dst[o * ow:]
                        for q in range(min(-sb, ow)):  # left of the plane
                            seg[q] = 0
                        ih = sh * (o0 + o + rb) + rp
                        for q in range(max(0, ow - sb), ow):  # past the buffers' ow columns
                            iw = sw * (q + sb) + cp
                            seg[q] = plane[ih, iw] if 0 <= ih < h_ and iw < w_ else 0


@compiled()
def _im2col_padded(x, cols, kh, kw, pt, pl, dh, dw, ow, n0, o0):  # pragma: no cover - compiled
    """:func:`im2col` at unit stride for narrow outputs (deep layers on small images): the input rows
    a band reads are copied once per plane into a zero-padded buffer, from which each column row
    copies OB runs of OW with no border tests (7²: 54 -> ~20 ns per column row)."""
    _, c_, _, w_ = x.shape
    nb, _, length = cols.shape
    ob = length // ow
    hp, wp = ob + (kh - 1) * dh, ow + (kw - 1) * dw
    pad = np.zeros((hp, wp), dtype=x.dtype)
    j_lo, j_hi = min(pl, wp), max(min(pl, wp), min(wp, pl + w_))  # buffer columns that hold input pixels
    for n in range(nb):
        for c in range(c_):
            _copy_rows(x[n0 + n, c], pad, o0 - pt, pl, j_lo, j_hi)  # buffer row i: input row o0 - pt + i
            for r in range(kh):
                for s in range(kw):
                    d = cols[n, (c * kh + r) * kw + s]
                    for o in range(ob):
                        src = pad[o + r * dh, s * dw:]
                        seg = d[o * ow:]
                        for q in range(ow):
                            seg[q] = src[q]


@compiled()
def im2col(x, cols, kh, kw, sh, sw, pt, pl, dh, dw, ow, n0, o0):  # pragma: no cover - compiled
    """Fill ``cols`` (NB, C·KH·KW, OB·OW) from ``x`` (N, C, H, W): images n0..n0+NB, output rows o0..o0+OB
    (``cols`` may have rows past C·KH·KW: they are left alone).

    Padding reads as zero. Where output rows are as wide as input rows at unit strides (3x3 'same'
    layers), a column row is one contiguous run of the input plane, copied in one loop, whose
    wrapped-around border columns are then zeroed; strided layers do the same from polyphase planes
    (see :func:`_im2col_phases`); otherwise one copy per output row (outputs at most 8 wide at unit
    stride: see :func:`_im2col_padded`). Where a buffered path's buffer would outgrow the columns (a
    stride or dilation far beyond the kernel), one copy per output row, with no buffer.
    """
    _, c_, h_, w_ = x.shape
    nb, length = cols.shape[0], cols.shape[2]
    rows = c_ * kh * kw  # cols may have more rows (a row of ones for the bias), left alone
    ob = length // ow
    # the buffered paths only where their buffer is not much larger than the columns they fill (a
    # stride or dilation far beyond the kernel would make it so): else one copy per output row
    most = 4 * kh * kw * ob * ow + 4096
    if sh > 1 or sw > 1:
        if _phase_elements(kh, kw, sh, sw, pt, pl, dh, dw, ob, ow) <= most:
            _im2col_phases(x, cols, kh, kw, sh, sw, pt, pl, dh, dw, ow, n0, o0)
            return
    elif ow <= 8 and (ob + (kh - 1) * dh) * (ow + (kw - 1) * dw) <= most:
        _im2col_padded(x, cols, kh, kw, pt, pl, dh, dw, ow, n0, o0)
        return
    flat_rows = sh == 1 and sw == 1 and ow == w_
    for nr in range(nb * rows):
        n = nr // rows
        row = nr % rows
        c = row // (kh * kw)
        r = (row // kw) % kh
        s = row % kw
        iw0 = s * dw - pl
        q_lo, q_hi = _valid_range(w_, iw0, sw, ow)
        dst = cols[n, row]
        plane = x[n0 + n, c]
        # index from 0 through slices below: numba then drops its negative-index test and vectorises
        if flat_rows:
            ih0 = o0 - pt + r * dh  # input row of output row 0 of the block
            a = min(ob, max(0, -ih0))  # output rows [a, z) read rows inside the image
            z = max(a, min(ob, h_ - ih0))
            for i in range(a * ow):
                dst[i] = 0
            # dst[o·OW + q] = plane[ih0 + o, q + iw0] for o in [a, z), as one run of the flat plane
            start = (ih0 + a) * w_ + iw0  # below 0 by at most -iw0, in columns zeroed below
            run = (z - a) * ow
            lo = min(run, max(0, -start))  # never past the run: with z == a the run is empty
            hi = max(lo, min(run, h_ * w_ - start))  # past the plane's end: columns zeroed below
            seg = dst[a * ow:]
            for i in range(lo):
                seg[i] = 0
            src = plane.reshape(h_ * w_)[start + lo:]
            out = seg[lo:]
            for i in range(hi - lo):
                out[i] = src[i]
            for i in range(hi, run):
                seg[i] = 0
            for o in range(a, z):  # border columns, which wrapped into the neighbouring rows
                seg = dst[o * ow:]
                for q in range(q_lo):
                    seg[q] = 0
                for q in range(q_hi, ow):
                    seg[q] = 0
            for i in range(z * ow, ob * ow):
                dst[i] = 0
            continue
        for o in range(ob):
            ih = (o0 + o) * sh - pt + r * dh
            seg = dst[o * ow:]
            if ih < 0 or ih >= h_:
                for q in range(ow):
                    seg[q] = 0
                continue
            for q in range(q_lo):
                seg[q] = 0
            src = plane[ih, q_lo * sw + iw0:]
            out = seg[q_lo:]
            if sw == 1:
                for q in range(q_hi - q_lo):
                    out[q] = src[q]
            else:
                for q in range(q_hi - q_lo):
                    out[q] = src[q * sw]
            for q in range(q_hi, ow):
                seg[q] = 0
