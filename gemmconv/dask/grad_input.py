"""``conv2d_grad_input`` and ``conv_transpose2d`` on Dask arrays: each block of dL/dx gathered from the rows
and columns of dL/dy whose windows cover it.

dL/dx is computed on the padded input's positions, cut into bands where ``grad_y``'s chunks begin (the first
position output row ``o`` reads, ``o·stride``): a band of positions ``p0:p1`` is covered by the windows of outputs
``o0:o1`` (:func:`bands`), and its block is gemmconv's ordinary ``conv2d_grad_input`` of those rows of dL/dy
(unpadded), cut or zero-filled to the band: no overlap-add, each block one task reading a halo of dL/dy. Along
K, each chunk of dL/dy's channels gives a partial sum of the input channels its groups feed
(:func:`~gemmconv.dask.conv.channel_pieces` with K and C swapped), added by a balanced tree. With zero padding
only the input's own positions are computed; with another padding mode the padded positions are too, and
their gradient is folded back onto the elements they copy (:func:`fold`), across the whole array (circular
padding wraps), as in memory.

``conv_transpose2d`` of a Dask ``x`` is the ``grad_input`` pass of the convolution whose output ``x`` would be, with
its bias added by the first piece of each block.
"""

from __future__ import annotations

import functools
import itertools
import sys
from collections.abc import Callable
from typing import Any

from ..api.backward import conv2d_grad_input as public_grad_input
from ..backends import get_backend
from ..core.args import ConvArgs
from ..core.registry import GRAD_INPUT
from ..core.spec import ConvSpec
from ..planning.passes import TRANSPOSE, make_pass_plan
from .conv import (
    ChannelPiece,
    block_kwargs,
    channel_pieces,
    check_x,
    delayed_array,
    graph_array,
    is_dask_array,
    key_of,
    names_one,
    stand_for,
    stand_in,
)
from .gather import Gather, add_sum

__all__ = ["bands", "conv2d_grad_input", "conv_transpose2d", "fold"]

#: ``(p0, p1, o0, o1)``: padded positions ``p0:p1`` along an axis are covered by the windows of outputs ``o0:o1``
Band = tuple[int, int, int, int]


def bands(chunks: tuple[int, ...], before: int, size: int, after: int, stride: int, ekernel: int, out: int,
          padded: bool) -> list[Band]:
    """The bands of positions along one axis of dL/dx and the outputs whose windows cover each: cut where
    ``grad_y``'s chunks begin (the first position of output ``o``'s window, ``o·stride``), over the input's own
    positions (``before:before + size`` of the padded axis) or, if ``padded``, over all of the padded axis.
    Outputs ``o0:o1`` are every output whose window (``ekernel`` positions from ``o·stride``) meets ``p0:p1``;
    none (``o0 == o1``) where the windows skip the band."""
    lo, hi = (0, before + size + after) if padded else (before, before + size)
    cuts = {lo, hi} | {min(hi, max(lo, o * stride)) for o in itertools.accumulate(chunks[:-1])}
    result = []
    for p0, p1 in itertools.pairwise(sorted(cuts)):
        o0 = max(0, -(-(p0 - ekernel + 1) // stride))
        o1 = min(out, (p1 - 1) // stride + 1)
        result.append((p0, p1, o0, max(o0, o1)))
    return result


def _place(dx: Any, start: int, band: tuple[int, int], axis: int) -> Any:
    """``dx``, whose positions along ``axis`` begin at ``start``, cut or zero-filled to the positions ``band``."""
    p0, p1 = band
    a, b = max(p0, start), min(p1, start + dx.shape[axis])  # the positions dx has of the band
    if (a, b) == (p0, p1) == (start, start + dx.shape[axis]):
        return dx
    index = [slice(None)] * dx.ndim
    index[axis] = slice(a - start, b - start) if b > a else slice(0, 0)
    widths = [(0, 0)] * dx.ndim
    widths[axis] = (a - p0, p1 - b) if b > a else (p1 - p0, 0)
    part = dx[tuple(index)]
    return part if widths[axis] == (0, 0) else get_backend(dx, "grad_y").xp.pad(part, widths)


def _block(gy: Any, w: Any, bias: Any, *, grad_input: Callable[..., Any], channels: int, rows: Band, cols: Band,
           spec: ConvSpec) -> Any:
    """One piece's share of one block of dL/dx (a task of the graph): ``grad_input`` of the rows ``gy`` of
    dL/dy, placed on the block's positions, plus ``bias`` where given."""
    xp = get_backend(gy, "grad_y").xp
    (p0, p1, o0, o1), (q0, q1, t0, t1) = rows, cols
    if o0 == o1 or t0 == t1:  # no window reaches the block
        dx = xp.zeros((gy.shape[0], channels, p1 - p0, q1 - q0), dtype=gy.dtype)
    else:
        shape = (gy.shape[0], channels, (o1 - o0 - 1) * spec.sh + spec.ekh, (t1 - t0 - 1) * spec.sw + spec.ekw)
        dx = grad_input(shape, w, gy)
        placed = _place(_place(dx, o0 * spec.sh, (p0, p1), 2), t0 * spec.sw, (q0, q1), 3)
        dx = placed.copy() if placed.shape != dx.shape and placed.base is not None else placed  # fresh, not a view
    return dx if bias is None else dx + bias.reshape(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1)


def _fold_block(g: Any, spec: ConvSpec, axis: int) -> Any:
    """:meth:`Backend.pad_adjoint` of ``g`` along ``axis`` alone, ``spec`` giving that axis's padding."""
    other = 1 if axis == 2 else 0  # the spatial axis left unpadded
    before, after = spec.padding[axis - 2]
    spec = spec.along(axis - 2, g.shape[axis] - before - after, (before, after))
    spec = spec.along(other, g.shape[other + 2], (0, 0))
    return get_backend(g, "grad_y").pad_adjoint(g, spec)


def fold(da: Any, g: Any, spec: ConvSpec, axis: int) -> Any:
    """The gradient ``g`` of the padded positions along ``axis`` (2 or 3) folded onto the input's, across the whole
    array: each padded position's gradient added to the element it copies. Only the ``m = max(before, after)
    + 1`` positions at each end receive any, so those two strips (``before + m`` and ``m + after`` long) are
    folded together as one array of ``2m`` positions, which maps each padded position to the same element."""
    before, after = (spec.pt, spec.pb) if axis == 2 else (spec.pl, spec.pr)
    size = g.shape[axis] - before - after
    if before == after == 0 or spec.padding_mode == "zeros":
        return g
    m = max(before, after) + 1

    def cut(lo: int, hi: int) -> Any:
        index = [slice(None)] * 4
        index[axis] = slice(lo, hi)
        return g[tuple(index)]

    whole = size <= 2 * m
    strip = g if whole else da.concatenate([cut(0, before + m), cut(before + size - m, before + size + after)],
                                           axis=axis)
    strip = strip.rechunk({axis: -1})
    chunks = list(strip.chunks)
    chunks[axis] = (strip.shape[axis] - before - after,)
    folded = da.map_blocks(_fold_block, strip, spec=spec, axis=axis, dtype=g.dtype, meta=g._meta,
                           chunks=tuple(chunks))
    if whole:
        return folded
    index = [slice(None)] * 4
    first, last = list(index), list(index)
    first[axis], last[axis] = slice(0, m), slice(m, 2 * m)
    return da.concatenate([folded[tuple(first)], cut(before + m, before + size - m), folded[tuple(last)]], axis=axis)


def _gather(gy4: Any, w: Any, bias: Any, spec: ConvSpec, args: ConvArgs, grad_input: Callable[..., Any],
            reach: tuple[int, int] = (0, 0)) -> Any:
    """dL/dx (N, C, H, W) of ``spec``'s convolution from the Dask array ``gy4`` (N, K, OH - reach[0],
    OW - reach[1]: the outputs past its end have zero gradient), plus ``bias`` (C,) where given: the blocks,
    their tree sums over K's pieces, the padding folded."""
    da, dask = sys.modules["dask.array"], sys.modules["dask"]
    wd, bd = delayed_array(dask, w, "w"), delayed_array(dask, bias, "b")
    meta, dtype = gy4._meta, gy4.dtype
    if all(len(c) == 1 for c in gy4.chunks[1:]) and reach == (0, 0):  # chunks along N only: one task per chunk
        fn = functools.partial(grad_input, **block_kwargs(args))
        compute = functools.partial(_whole, grad_input=fn, shape=(spec.c, spec.height, spec.width))
        return da.map_blocks(compute, gy4, wd, bd, dtype=dtype, meta=meta,
                             chunks=(gy4.chunks[0], (spec.c,), (spec.height,), (spec.width,)))
    padded = spec.padding_mode != "zeros"
    rows = bands(gy4.chunks[2], spec.pt, spec.height, spec.pb, spec.sh, spec.ekh, spec.oh, padded)
    cols = bands(gy4.chunks[3], spec.pl, spec.width, spec.pr, spec.sw, spec.ekw, spec.ow, padded)
    pieces = (channel_pieces(gy4.chunks[1], spec.groups, spec.kg, spec.cg)
              or [ChannelPiece(0, 0, 0, spec.c, spec.groups, 0, 0)])
    ranges = sorted({(p.k0, p.k1) for p in pieces})  # the input channels the pieces feed
    first = {r: next(p for p in pieces if (p.k0, p.k1) == r) for r in ranges}  # the piece that adds the bias
    weights = {(p.c0, p.c1): wd if (p.c0, p.c1) == (0, spec.k) else wd[p.c0:p.c1] for p in pieces}
    biases = {r: None if bd is None else (bd if r == (0, spec.c) else bd[r[0]:r[1]]) for r in ranges}
    images = list(zip(itertools.accumulate((0, *gy4.chunks[0][:-1])), gy4.chunks[0], strict=True))
    name = "gemmconv-grad-input-" + dask.base.tokenize(gy4.name, key_of(wd), key_of(bd), repr(args), repr(spec))
    gather = Gather(gy4, ((0, 0), (0, 0), (0, reach[0]), (0, reach[1])), "zeros", name)
    checked: set[tuple[Any, ...]] = set()

    def share(n0: int, nb: int, row: Band, col: Band, piece: tuple[int, ...]) -> tuple[Any, ...]:
        u0, u1, v0, v1, g = piece[:5]
        kwargs = block_kwargs(args, padding=0, padding_mode="zeros", groups=g)
        part = (nb, u1 - u0, row[3] - row[2], col[3] - col[2])
        if (part, piece) not in checked and nb and row[2] < row[3] and col[2] < col[3] and names_one(args):
            shape = (nb, v1 - v0, (part[2] - 1) * spec.sh + spec.ekh, (part[3] - 1) * spec.sw + spec.ekw)
            w_stand = stand_in(meta, (u1 - u0, spec.cg, spec.kh, spec.kw), dtype, "w")
            make_pass_plan(GRAD_INPUT, (w_stand, stand_in(meta, part, dtype, "grad_y")), shape,
                           ConvArgs(**kwargs))  # the strategy refuses a block before any work
        checked.add((part, piece))
        b = biases[(v0, v1)] if first[(v0, v1)] == piece else None
        compute = functools.partial(_block, grad_input=functools.partial(grad_input, **kwargs), channels=v1 - v0,
                                    rows=row, cols=col, spec=spec)
        gy = gather.task(((n0, n0 + nb), (u0, u1), row[2:], col[2:]))
        return (compute, gy, key_of(weights[(u0, u1)]), key_of(b))

    layer = gather.layer
    for a, (n0, nb) in enumerate(images):
        for i, row in enumerate(rows):
            for j, col in enumerate(cols):
                for r, rng in enumerate(ranges):
                    add_sum(layer, [share(n0, nb, row, col, p) for p in pieces if p[2:4] == rng], (name, a, r, i, j))
    deps = [gy4, *{id(d): d for d in (*weights.values(), *biases.values()) if d is not None}.values()]
    chunks = (gy4.chunks[0], tuple(v1 - v0 for v0, v1 in ranges), tuple(r[1] - r[0] for r in rows),
              tuple(c[1] - c[0] for c in cols))
    dx = graph_array(name, layer, deps, chunks, meta)
    return fold(da, fold(da, dx, spec, 2), spec, 3) if padded else dx


def _whole(gy: Any, w: Any, bias: Any, *, grad_input: Callable[..., Any], shape: tuple[int, ...]) -> Any:
    """dL/dx of a chunk of whole images (a task of the graph)."""
    dx = grad_input((gy.shape[0], *shape), w, gy)
    return dx if bias is None else dx + bias.reshape(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1)


def conv2d_grad_input(input_shape: tuple[int, ...], w: Any, grad_y: Any, args: ConvArgs, out: Any = None) -> Any:
    """:func:`gemmconv.conv2d_grad_input` of a Dask array ``grad_y`` (``w`` in memory, of its chunks' library, or
    a Dask array computed once; ``grad_y`` in memory with a Dask ``w`` is taken as one chunk): a lazy Dask array
    of dL/dx, each block's share computed by :func:`gemmconv.conv2d_grad_input`."""
    da = sys.modules["dask.array"]
    if not is_dask_array(grad_y):
        grad_y = da.from_array(grad_y, chunks=getattr(grad_y, "shape", -1), asarray=False)
    grad_input = public_grad_input
    check_x(grad_y, out, "grad_y")
    plan = make_pass_plan(GRAD_INPUT, (stand_for(w, "w"), stand_for(grad_y, "grad_y")), input_shape, args)
    spec = plan.spec  # shapes, dtypes, libraries and grad_y's shape checked: no work done
    unbatched = len(input_shape) == 3
    gy4 = grad_y[None] if unbatched else grad_y  # (K, OH, OW) -> (1, K, OH, OW)
    if spec.n == 0 or spec.c == 0:
        dx = da.zeros((spec.n, spec.c, spec.height, spec.width), dtype=grad_y.dtype, meta=grad_y._meta)
    else:
        dx = _gather(gy4, w, None, spec, args, grad_input)
    return dx[0] if unbatched else dx


def conv_transpose2d(x: Any, w: Any, b: Any, args: ConvArgs, output_padding: Any, out: Any = None) -> Any:
    """:func:`gemmconv.conv_transpose2d` of a Dask array ``x``: a lazy Dask array, each block's share computed by
    :func:`gemmconv.conv2d_grad_input`."""
    grad_input = public_grad_input
    da = sys.modules["dask.array"]
    check_x(x, out)
    stands = (stand_for(x, "x"), stand_for(w, "w"), stand_for(b, "b"))
    plan = make_pass_plan(TRANSPOSE, stands, (), args, output_padding)
    spec = plan.spec  # the convolution whose input the result is
    unbatched = x.ndim == 3
    x4 = x[None] if unbatched else x  # (C_in, H, W) -> (1, C_in, H, W)
    reach = (spec.oh - x4.shape[2], spec.ow - x4.shape[3])  # outputs past x's end (output_padding): zeros
    if spec.n == 0 or spec.c == 0 or spec.k == 0:
        y = da.zeros((spec.n, spec.c, spec.height, spec.width), dtype=x.dtype, meta=x._meta)
        if b is not None:
            y = y + b.reshape(1, -1, 1, 1)
    else:
        y = _gather(x4, w, b, spec, args, grad_input, reach)
    return y[0] if unbatched else y
