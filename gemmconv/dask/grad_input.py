"""``conv2d_grad_input`` and ``conv_transpose2d`` on Dask arrays: each block of dL/dx gathered from the rows
and columns of dL/dy whose windows cover it.

dL/dx is computed on the padded input's positions, cut into bands where ``grad_y``'s chunks begin (the first
position output row ``o`` reads, ``o·stride``): a band of positions ``p0:p1`` is covered by the windows of outputs
``o0:o1`` (:func:`bands`), and its block is gemmconv's ordinary ``conv2d_grad_input`` of those rows of dL/dy
(unpadded), cut or zero-filled to the band: no overlap-add, each block one task reading a halo of dL/dy. Along
K, each chunk of dL/dy's channels gives a partial sum of the input channels its groups feed
(:class:`~gemmconv.dask.tiling.ChannelSplit` with K and C swapped), added by a balanced tree. With zero padding
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
from typing import Any, NamedTuple

from ..api.backward import conv1d_grad_input, conv2d_grad_input, conv3d_grad_input
from ..backends import get_backend
from ..core.args import ConvArgs
from ..core.registry import GRAD_INPUT
from ..core.spec import ConvSpec
from ..planning.passes import TRANSPOSE, make_pass_plan
from .conv import (
    block_kwargs,
    check_x,
    delayed_array,
    graph_array,
    is_dask_array,
    key_of,
    names_one,
    stand_for,
    stand_in,
)
from .gather import Gather
from .tiling import ChannelPiece, ChannelSplit, Grid, extent

__all__ = ["PUBLIC", "bands", "fold", "grad_input_nd", "transpose_nd"]

class Band(NamedTuple):
    """Padded positions ``p0:p1`` along an axis of dL/dx, covered by the windows of outputs ``o0:o1``."""

    p0: int
    p1: int
    o0: int
    o1: int


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
        result.append(Band(p0, p1, o0, max(o0, o1)))
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


def _dx_share(gy: Any, w: Any, bias: Any, *, grad_input: Callable[..., Any], channels: int,
              bands: tuple[Band, ...], spec: ConvSpec) -> Any:
    """One piece's share of one block of dL/dx (a task of the graph): ``grad_input`` of the outputs ``gy`` of
    dL/dy that reach the block, placed on its ``bands`` (one per spatial axis), plus ``bias`` where given."""
    xp = get_backend(gy, "grad_y").xp
    if any(o0 == o1 for _, _, o0, o1 in bands):  # no window reaches the block
        dx = xp.zeros((gy.shape[0], channels, *(p1 - p0 for p0, p1, _, _ in bands)), dtype=gy.dtype)
    else:
        reach = (extent(o1 - o0, s, e) for (_, _, o0, o1), s, e in zip(bands, spec.stride, spec.effective_kernel,
                                                                       strict=True))
        dx = grad_input((gy.shape[0], channels, *reach), w, gy)
        placed = dx
        for axis, ((p0, p1, o0, _), s) in enumerate(zip(bands, spec.stride, strict=True), start=2):
            placed = _place(placed, o0 * s, (p0, p1), axis)
        dx = placed.copy() if placed.shape != dx.shape and placed.base is not None else placed  # fresh, not a view
    return dx if bias is None else dx + bias.reshape(1, -1, *(1,) * len(bands))  # (C,) -> (1, C, 1, ...)


def _fold_block(g: Any, spec: ConvSpec, axis: int) -> Any:
    """:meth:`Backend.pad_adjoint` of ``g`` along ``axis`` alone, ``spec`` giving that axis's padding."""
    for d in range(spec.ndim):
        before, after = spec.padding[d] if d == axis - 2 else (0, 0)
        spec = spec.along(d, g.shape[d + 2] - before - after, (before, after))
    return get_backend(g, "grad_y").pad_adjoint(g, spec)


def fold(da: Any, g: Any, spec: ConvSpec, axis: int) -> Any:
    """The gradient ``g`` of the padded positions along ``axis`` (2 for the first spatial axis) folded onto the
    input's, across the whole array: each padded position's gradient added to the element it copies. Only the
    ``m = max(before, after) + 1`` positions at each end receive any, so those two strips (``before + m`` and
    ``m + after`` long) are folded together as one array of ``2m`` positions, which maps each padded position
    to the same element."""
    before, after = spec.padding[axis - 2]
    size = g.shape[axis] - before - after
    if before == after == 0 or spec.padding_mode == "zeros":
        return g
    m = max(before, after) + 1

    def along(lo: int, hi: int, a: Any = g) -> Any:  # a[..., lo:hi, ...] along axis
        index = [slice(None)] * a.ndim
        index[axis] = slice(lo, hi)
        return a[tuple(index)]

    whole = size <= 2 * m
    strip = g if whole else da.concatenate([along(0, before + m), along(before + size - m, before + size + after)],
                                           axis=axis)
    strip = strip.rechunk({axis: -1})
    chunks = list(strip.chunks)
    chunks[axis] = (strip.shape[axis] - before - after,)
    folded = da.map_blocks(_fold_block, strip, spec=spec, axis=axis, dtype=g.dtype, meta=g._meta,
                           chunks=tuple(chunks))
    if whole:
        return folded
    return da.concatenate([along(0, m, folded), along(before + m, before + size - m), along(m, 2 * m, folded)],
                          axis=axis)


def _gather(gy4: Any, w: Any, bias: Any, spec: ConvSpec, args: ConvArgs, grad_input: Callable[..., Any],
            reach: tuple[int, ...] | None = None) -> Any:
    """dL/dx (N, C, *size) of ``spec``'s convolution from the Dask array ``gy4`` (N, K, *out_size less
    ``reach`` per axis: the outputs past its end have zero gradient), plus ``bias`` (C,) where given: the
    blocks, their tree sums over K's pieces, the padding folded."""
    da, dask = sys.modules["dask.array"], sys.modules["dask"]
    reach = reach or (0,) * spec.ndim
    wd, bd = delayed_array(dask, w, "w"), delayed_array(dask, bias, "b")
    meta, dtype = gy4._meta, gy4.dtype
    if all(len(c) == 1 for c in gy4.chunks[1:]) and not any(reach):  # chunks along N only: one task per chunk
        fn = functools.partial(grad_input, **block_kwargs(args))
        compute = functools.partial(_whole, grad_input=fn, shape=(spec.c, *spec.size))
        return da.map_blocks(compute, gy4, wd, bd, dtype=dtype, meta=meta,
                             chunks=(gy4.chunks[0], (spec.c,), *((s,) for s in spec.size)))
    padded = spec.padding_mode != "zeros"
    cuts = [bands(chunks, before, size, after, stride, e, out, padded) for chunks, size, (before, after), stride, e, out
            in zip(gy4.chunks[2:], spec.size, spec.padding, spec.stride, spec.effective_kernel, spec.out_size,
                   strict=True)]
    grid = Grid(gy4.chunks[0], cuts, ChannelSplit(gy4.chunks[1], spec.groups, spec.kg, spec.cg, spec.c))
    split = grid.split  # its pieces: channels c0:c1 of dL/dy feed channels k0:k1 of dL/dx
    weights = {(p.c0, p.c1): wd if (p.c0, p.c1) == (0, spec.k) else wd[p.c0:p.c1] for p in split.pieces}
    biases = split.biases(bd)
    name = "gemmconv-grad-input-" + dask.base.tokenize(gy4.name, key_of(wd), key_of(bd), repr(args), repr(spec))
    gather = Gather(gy4, ((0, 0), (0, 0), *((0, r) for r in reach)), "zeros", name)
    checked: set[tuple[Any, ...]] = set()

    def share(n0: int, nb: int, parts: tuple[Band, ...], piece: ChannelPiece) -> tuple[Any, ...]:
        kwargs = block_kwargs(args, padding=0, padding_mode="zeros", groups=piece.groups)
        outputs = (nb, piece.c1 - piece.c0, *(o1 - o0 for _, _, o0, o1 in parts))
        if (outputs, piece) not in checked and nb and all(n > 0 for n in outputs[2:]) and names_one(args):
            shape = (nb, piece.k1 - piece.k0, *(extent(n, s, e) for n, s, e in zip(outputs[2:], spec.stride,
                                                                                   spec.effective_kernel,
                                                                                   strict=True)))
            w_stand = stand_in(meta, (piece.c1 - piece.c0, spec.cg, *spec.kernel), dtype, "w")
            make_pass_plan(GRAD_INPUT, (w_stand, stand_in(meta, outputs, dtype, "grad_y")), shape,
                           ConvArgs(**kwargs))  # the strategy refuses a block before any work
        checked.add((outputs, piece))
        compute = functools.partial(_dx_share, grad_input=functools.partial(grad_input, **kwargs),
                                    channels=piece.k1 - piece.k0, bands=parts, spec=spec)
        gy = gather.task(((n0, n0 + nb), (piece.c0, piece.c1), *((o0, o1) for _, _, o0, o1 in parts)))
        return (compute, gy, key_of(weights[(piece.c0, piece.c1)]), key_of(split.bias_of(piece, biases)))

    grid.sum_into(gather.layer, name, share)
    deps = [gy4, *{id(d): d for d in (*weights.values(), *biases.values()) if d is not None}.values()]
    dx = graph_array(name, gather.layer, deps, grid.chunks(), meta)
    if padded:
        for axis in range(2, 2 + spec.ndim):
            dx = fold(da, dx, spec, axis)
    return dx


def _whole(gy: Any, w: Any, bias: Any, *, grad_input: Callable[..., Any], shape: tuple[int, ...]) -> Any:
    """dL/dx of a chunk of whole images (a task of the graph)."""
    dx = grad_input((gy.shape[0], *shape), w, gy)
    return dx if bias is None else dx + bias.reshape(1, -1, *(1,) * (dx.ndim - 2))  # (C,) -> (1, C, 1, ...)


#: the public grad_input of each number of spatial dimensions, which computes a block's share
PUBLIC = {1: conv1d_grad_input, 2: conv2d_grad_input, 3: conv3d_grad_input}


def grad_input_nd(input_shape: tuple[int, ...], w: Any, grad_y: Any, args: ConvArgs, out: Any = None,
               ndim: int = 2) -> Any:
    """:func:`gemmconv.conv2d_grad_input` of a Dask array ``grad_y`` (``w`` in memory, of its chunks' library, or
    a Dask array computed once; ``grad_y`` in memory with a Dask ``w`` is taken as one chunk): a lazy Dask array
    of dL/dx, each block's share computed by :func:`gemmconv.conv2d_grad_input`."""
    da = sys.modules["dask.array"]
    if not is_dask_array(grad_y):
        grad_y = da.from_array(grad_y, chunks=getattr(grad_y, "shape", -1), asarray=False)
    check_x(grad_y, out, "grad_y", ndim)
    plan = make_pass_plan(GRAD_INPUT, (stand_for(w, "w"), stand_for(grad_y, "grad_y")), input_shape, args,
                          ndim=ndim)
    spec = plan.spec  # shapes, dtypes, libraries and grad_y's shape checked: no work done
    unbatched = len(input_shape) == ndim + 1
    gy4 = grad_y[None] if unbatched else grad_y  # (K, *out_size) -> (1, K, *out_size)
    if spec.n == 0 or spec.c == 0:
        dx = da.zeros(spec.in_shape, dtype=grad_y.dtype, meta=grad_y._meta)
    else:
        dx = _gather(gy4, w, None, spec, args, PUBLIC[ndim])
    return dx[0] if unbatched else dx


def transpose_nd(x: Any, w: Any, b: Any, args: ConvArgs, output_padding: Any, out: Any = None, ndim: int = 2) -> Any:
    """:func:`gemmconv.conv_transpose2d` of a Dask array ``x``: a lazy Dask array, each block's share computed by
    :func:`gemmconv.conv2d_grad_input`."""
    da = sys.modules["dask.array"]
    check_x(x, out, ndim=ndim)
    stands = (stand_for(x, "x"), stand_for(w, "w"), stand_for(b, "b"))
    plan = make_pass_plan(TRANSPOSE, stands, (), args, output_padding, ndim=ndim)
    spec = plan.spec  # the convolution whose input the result is
    unbatched = x.ndim == ndim + 1
    x4 = x[None] if unbatched else x  # (C_in, *size) -> (1, C_in, *size)
    reach = tuple(o - s for o, s in zip(spec.out_size, x4.shape[2:], strict=True))  # outputs past x's end: zeros
    if spec.n == 0 or spec.c == 0 or spec.k == 0:
        y = da.zeros(spec.in_shape, dtype=x.dtype, meta=x._meta)
        if b is not None:
            y = y + b.reshape(1, -1, *(1,) * spec.ndim)
    else:
        y = _gather(x4, w, b, spec, args, PUBLIC[ndim], reach)
    return y[0] if unbatched else y
