"""Compiled direct convolution for the NumPy backend; see :mod:`._numba_common`."""

from __future__ import annotations

import numpy as np
from numba import njit

from ._kernel_cache import compiled
from ._numba_common import copy_rows as _copy_rows
from ._numba_common import tap_ranges as _tap_ranges

#: largest plane (accumulator floats) that takes a 3x3 kernel's nine taps in one pass; past it the
#: accumulator and the padded input outgrow L1 and three passes of three taps run faster (CPU_NOTES.md)
_NINE_TAPS_MAX = 4096
#: largest padded image (elements, all channels) padded once for all its output planes (fits L2)
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
def _direct_rows(plane, wk, plane_out, taps, sh, sw, pt, pl, dh, dw):  # pragma: no cover - compiled
    """Add the taps of ``wk`` over input ``plane`` to ``plane_out`` row by row, reading the plane itself
    (no buffer), over the output rows and columns each tap reads inside the plane (``taps``, from
    :func:`tap_ranges`)."""
    for t in range(taps.shape[0]):
        r, s, o_lo, o_hi, q_lo, q_hi = taps[t, 0], taps[t, 1], taps[t, 2], taps[t, 3], taps[t, 4], taps[t, 5]
        wv = wk[r, s]
        for o in range(o_lo, o_hi):
            src = plane[o * sh + r * dh - pt, q_lo * sw + s * dw - pl:]
            dst = plane_out[o, q_lo:]
            if sw == 1:
                for q in range(q_hi - q_lo):
                    dst[q] += wv * src[q]
            else:
                for q in range(q_hi - q_lo):
                    dst[q] += wv * src[q * sw]


@njit(inline="always")
def _nine_taps_pair(a0, a1, flat, wa, wb, wp, length):  # pragma: no cover - compiled
    """The nine taps of two 3x3 kernels ``wa`` and ``wb`` (two output planes) at each i of the flat padded
    plane (unit dilation), added to ``a0`` and ``a1``: the nine inputs are read once for both planes."""
    f0, f1, f2 = flat, flat[1:], flat[2:]
    g0, g1, g2 = flat[wp:], flat[wp + 1:], flat[wp + 2:]
    h0, h1, h2 = flat[2 * wp:], flat[2 * wp + 1:], flat[2 * wp + 2:]
    a00, a01, a02, a10, a11, a12 = wa[0, 0], wa[0, 1], wa[0, 2], wa[1, 0], wa[1, 1], wa[1, 2]
    a20, a21, a22 = wa[2, 0], wa[2, 1], wa[2, 2]
    b00, b01, b02, b10, b11, b12 = wb[0, 0], wb[0, 1], wb[0, 2], wb[1, 0], wb[1, 1], wb[1, 2]
    b20, b21, b22 = wb[2, 0], wb[2, 1], wb[2, 2]
    for i in range(length):
        x0, x1, x2, y0, y1, y2, z0, z1, z2 = f0[i], f1[i], f2[i], g0[i], g1[i], g2[i], h0[i], h1[i], h2[i]
        a0[i] += a00 * x0 + a01 * x1 + a02 * x2 + a10 * y0 + a11 * y1 + a12 * y2 + a20 * z0 + a21 * z1 + a22 * z2
        a1[i] += b00 * x0 + b01 * x1 + b02 * x2 + b10 * y0 + b11 * y1 + b12 * y2 + b20 * z0 + b21 * z1 + b22 * z2


@compiled()
def _direct_small(x, w, out, b, pt, pl, groups, e_lo, e_hi, p0, p1):  # pragma: no cover - compiled
    """:func:`direct` for 3x3 kernels at unit stride and dilation on small images: each image padded once
    (all channels), then two output planes of a group at a time (one where a group or the range ends), in
    one pass of nine taps per input channel that reads the inputs once for both."""
    c_ = x.shape[1]
    k_, cg_ = w.shape[0], w.shape[1]
    kg_ = k_ // groups
    _, _, oh, ow = out.shape
    hp, wp = oh + 2, ow + 2
    length = oh * wp
    image = np.zeros((c_, hp * wp + 2), dtype=x.dtype)  # padding columns stay zero
    acc = np.empty((2, length), dtype=x.dtype)
    current = -1
    nk = p0
    while nk < p1:
        n = nk // k_
        k = nk % k_
        if n != current:
            for c in range(c_):
                _copy_rows(x[n, c], image[c, :hp * wp].reshape((hp, wp)), -pt, pl, e_lo, e_hi)
            current = n
        pair = nk + 1 < p1 and k + 1 < k_ and (k + 1) // kg_ == k // kg_  # the next plane, in this group
        k2 = k + 1 if pair else k  # (unpaired: the second accumulator computes plane k again, unused)
        c0 = (k // kg_) * cg_
        a0, a1 = acc[0], acc[1]
        b0, b1 = b[k], b[k2]
        for i in range(length):
            a0[i] = b0
            a1[i] = b1
        for cg in range(cg_):
            _nine_taps_pair(a0, a1, image[c0 + cg], w[k, cg], w[k2, cg], wp, length)
        for j in range(2 if pair else 1):
            plane_out = out[n, k + j]
            plane_acc = acc[j]
            for o in range(oh):
                src = plane_acc[o * wp:]
                dst = plane_out[o]
                for q in range(ow):
                    dst[q] = src[q]
        nk += 2 if pair else 1


@compiled()
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
    taps = _tap_ranges(kh, kw, h_, w_, oh, ow, sh, sw, pt, pl, dh, dw)  # the unbuffered path's ranges
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
                    _direct_rows(x[n, c0 + cg], w[k, cg], plane_out, taps, sh, sw, pt, pl, dh, dw)
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
