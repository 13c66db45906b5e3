"""Compiled CPU kernels (numba) for the NumPy backend: column packing and direct loops (Winograd's
transforms are in :mod:`._numba_winograd`).

Each kernel runs on the calling thread over a part of the work given by its
arguments (images and output rows, output planes); the
backend's pinned workers run parts in parallel, so no two threads write the same
element. Index ranges of the valid (non-padding) part of a row are computed once
per row, so the inner loops carry no bounds test and vectorise for unit stride.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

_OPTS: dict[str, Any] = {"cache": True, "nogil": True}


@njit(inline="always")
def _valid_range(size: int, offset: int, stride: int, count: int) -> tuple[int, int]:
    """Range [lo, hi) of output positions o with 0 <= o*stride + offset < size, within [0, count]
    (lo <= hi <= count: loops up to lo and from hi to count stay inside a row of count)."""
    lo = 0 if offset >= 0 else min(count, (-offset + stride - 1) // stride)
    last = size - 1 - offset
    hi = 0 if last < 0 else min(count, last // stride + 1)
    return lo, max(lo, hi)


@njit(inline="always")
def _copy_rows(plane, buf, ih0, pl, lo, hi):  # pragma: no cover - compiled
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


@njit(**_OPTS)
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


@njit(**_OPTS)
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


@njit(**_OPTS)
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


#: direct: largest plane (accumulator floats) that takes a 3x3 kernel's nine taps in one pass; past
#: it the accumulator and the padded input outgrow L1 and three passes of three taps measured faster
#: (128 ch: 56² 0.24 -> 0.21 ms in one pass, 112² 0.51 -> 0.56 ms)
_NINE_TAPS_MAX = 4096
#: direct: largest padded image (elements, all channels) padded once for all its output planes (fits L2)
_WHOLE_IMAGE_MAX = 32768


@njit(inline="always")
def _nine_taps(acc, flat, wk, wp, dh, dw, length, start, fresh):  # pragma: no cover - compiled
    """The nine taps of the 3x3 kernel ``wk`` at each i of the flat padded plane, added to ``acc`` or, if
    ``fresh``, written to it after ``start`` (one pass: the accumulator is read and written once)."""
    w00, w01, w02 = wk[0, 0], wk[0, 1], wk[0, 2]
    w10, w11, w12 = wk[1, 0], wk[1, 1], wk[1, 2]
    w20, w21, w22 = wk[2, 0], wk[2, 1], wk[2, 2]
    f0, f1, f2 = flat, flat[dw:], flat[2 * dw:]
    g0, g1, g2 = flat[dh * wp:], flat[dh * wp + dw:], flat[dh * wp + 2 * dw:]
    h0, h1, h2 = flat[2 * dh * wp:], flat[2 * dh * wp + dw:], flat[2 * dh * wp + 2 * dw:]
    if fresh:
        for i in range(length):
            acc[i] = start + (w00 * f0[i] + w01 * f1[i] + w02 * f2[i] + w10 * g0[i] + w11 * g1[i]
                              + w12 * g2[i] + w20 * h0[i] + w21 * h1[i] + w22 * h2[i])
    else:
        for i in range(length):
            acc[i] += (w00 * f0[i] + w01 * f1[i] + w02 * f2[i] + w10 * g0[i] + w11 * g1[i]
                       + w12 * g2[i] + w20 * h0[i] + w21 * h1[i] + w22 * h2[i])


@njit(inline="always")
def _direct_rows(plane, wk, plane_out, sh, sw, pt, pl, dh, dw):  # pragma: no cover - compiled
    """Add the taps of ``wk`` over input ``plane`` to ``plane_out`` row by row, reading the plane itself
    (no buffer): the output rows and columns each tap reads inside the plane are found once per tap."""
    h_, w_ = plane.shape
    oh, ow = plane_out.shape
    kh, kw = wk.shape
    for r in range(kh):
        o_lo, o_hi = _valid_range(h_, r * dh - pt, sh, oh)
        for s in range(kw):
            iw0 = s * dw - pl
            q_lo, q_hi = _valid_range(w_, iw0, sw, ow)
            if q_lo == q_hi:
                continue
            wv = wk[r, s]
            for o in range(o_lo, o_hi):
                src = plane[o * sh + r * dh - pt, q_lo * sw + iw0:]
                dst = plane_out[o, q_lo:]
                if sw == 1:
                    for q in range(q_hi - q_lo):
                        dst[q] += wv * src[q]
                else:
                    for q in range(q_hi - q_lo):
                        dst[q] += wv * src[q * sw]


@njit(nogil=True)
def _direct_small(x, w, out, b, pt, pl, groups, e_lo, e_hi, p0, p1):  # pragma: no cover - compiled
    """:func:`direct` for 3x3 kernels at unit stride and dilation on small images: each image padded once
    (all channels), then each output plane in one pass of nine taps per input channel, the first
    channel's pass writing the accumulator (bias included)."""
    c_ = x.shape[1]
    k_, cg_ = w.shape[0], w.shape[1]
    kg_ = k_ // groups
    _, _, oh, ow = out.shape
    hp, wp = oh + 2, ow + 2
    length = oh * wp
    image = np.zeros((c_, hp * wp + 2), dtype=x.dtype)  # padding columns stay zero
    acc = np.empty(length, dtype=x.dtype)
    current = -1
    for nk in range(p0, p1):
        n = nk // k_
        k = nk % k_
        if n != current:
            for c in range(c_):
                _copy_rows(x[n, c], image[c, :hp * wp].reshape((hp, wp)), -pt, pl, e_lo, e_hi)
            current = n
        c0 = (k // kg_) * cg_
        bias = b[k]
        _nine_taps(acc, image[c0], w[k, 0], wp, 1, 1, length, bias, True)
        for cg in range(1, cg_):
            _nine_taps(acc, image[c0 + cg], w[k, cg], wp, 1, 1, length, bias, False)
        plane_out = out[n, k]
        for o in range(oh):
            src = acc[o * wp:]
            dst = plane_out[o]
            for q in range(ow):
                dst[q] = src[q]


@njit(**_OPTS)
def direct(x, w, b, out, sh, sw, pt, pl, dh, dw, groups, p0, p1):  # pragma: no cover - compiled
    """Output planes p0..p1 (plane n·K + k) of ``out`` (N, K, OH, OW) = conv(x, w) + b, by loops over
    output pixels and taps.

    At unit stride, each output plane copies the receptive field of each of its input channels,
    zero-padded, into a buffer, then adds the taps over the whole plane with no bounds tests: the
    plane is computed in the buffer's own row pitch, output (o, q) at o·WP + q of a flat accumulator,
    and tap (r, s) reads the flat buffer at that index + r·DH·WP + s·DW, so each tap is one
    vectorised loop over the whole plane (the WP - OW columns past each row are computed and
    dropped), three taps of a kernel row at a time (all nine of a 3x3 kernel on planes that fit L1),
    not one short loop per row and tap. Strided layers, and those whose buffer would far outgrow the
    planes (a dilation far beyond the input), add each tap row by row from the input plane itself
    (:func:`_direct_rows`): their work and memory follow the output, not the stride.
    """
    _, c_, h_, w_ = x.shape
    k_, cg_, kh, kw = w.shape
    _, _, oh, ow = out.shape
    kg_ = k_ // groups
    hp = oh + (kh - 1) * dh  # rows and columns of padded input that the outputs read (unit stride)
    wp = ow + (kw - 1) * dw
    buffered = sh == 1 and sw == 1 and hp * wp <= 4 * (oh * ow + h_ * w_) + 4096
    e_lo, e_hi = min(pl, wp), max(min(pl + w_, wp), min(pl, wp))  # buffer columns backed by input
    length = oh * wp  # flat accumulator: output row o at o·WP
    nine_taps = buffered and kh == 3 and kw == 3 and length <= _NINE_TAPS_MAX  # a plane's taps in one pass
    one_pass = nine_taps and cg_ == 1  # ... the bias included
    flat_len = hp * wp + (kw - 1) * dw  # the last row's taps read past hp·wp
    # small images: every channel of an image padded once, not once per output plane
    whole = buffered and c_ * flat_len <= _WHOLE_IMAGE_MAX
    if whole and nine_taps and not one_pass and dh == 1 and dw == 1:
        _direct_small(x, w, out, b, pt, pl, groups, e_lo, e_hi, p0, p1)
        return
    chunk = 8  # planes per buffer allocation
    image = np.zeros((c_ if whole else 0, flat_len), dtype=x.dtype)  # padding columns stay zero
    current = -1  # the image in ``image``
    for ch in range((p1 - p0 + chunk - 1) // chunk):
        # padding columns stay zero: every plane rewrites only the columns backed by input
        flat = np.zeros(flat_len if buffered and not whole else 0, dtype=x.dtype)
        buf = flat[:hp * wp].reshape((hp if buffered and not whole else 0, wp))
        acc = np.empty(length if buffered else 0, dtype=x.dtype)
        for nk in range(p0 + ch * chunk, min(p1, p0 + (ch + 1) * chunk)):
            n = nk // k_
            k = nk % k_
            c0 = (k // kg_) * cg_
            bias = b[k]
            plane_out = out[n, k]
            if not buffered:
                for o in range(oh):
                    row_acc = plane_out[o]
                    for q in range(ow):
                        row_acc[q] = bias
                for cg in range(cg_):
                    _direct_rows(x[n, c0 + cg], w[k, cg], plane_out, sh, sw, pt, pl, dh, dw)
                continue
            if whole and n != current:
                for c in range(c_):
                    _copy_rows(x[n, c], image[c, :hp * wp].reshape((hp, wp)), -pt, pl, e_lo, e_hi)
                current = n
            if one_pass:  # depthwise 3x3: the bias in the taps' pass (7% faster than a pass of its own)
                if whole:
                    flat = image[c0]
                else:
                    _copy_rows(x[n, c0], buf, -pt, pl, e_lo, e_hi)
                _nine_taps(acc, flat, w[k, 0], wp, dh, dw, length, bias, True)
            else:
                for i in range(length):
                    acc[i] = bias
            for cg in range(0 if one_pass else cg_):
                if whole:
                    flat = image[c0 + cg]
                else:
                    _copy_rows(x[n, c0 + cg], buf, -pt, pl, e_lo, e_hi)
                wk = w[k, cg]
                if nine_taps:
                    _nine_taps(acc, flat, wk, wp, dh, dw, length, bias, False)
                    continue
                for r in range(kh):
                    # index from 0 through slices: numba then knows every index is non-negative,
                    # drops its negative-index test and the loops vectorise
                    row0 = r * dh * wp
                    s = 0
                    while s + 3 <= kw:
                        w0, w1, w2 = wk[r, s], wk[r, s + 1], wk[r, s + 2]
                        f0 = flat[row0 + s * dw:]
                        f1 = flat[row0 + (s + 1) * dw:]
                        f2 = flat[row0 + (s + 2) * dw:]
                        for i in range(length):
                            acc[i] += w0 * f0[i] + w1 * f1[i] + w2 * f2[i]
                        s += 3
                    while s < kw:
                        w0 = wk[r, s]
                        f0 = flat[row0 + s * dw:]
                        for i in range(length):
                            acc[i] += w0 * f0[i]
                        s += 1
            for o in range(oh):
                src = acc[o * wp:]
                dst = plane_out[o]
                for q in range(ow):
                    dst[q] = src[q]
