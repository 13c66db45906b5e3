"""``conv2d`` on Dask arrays: a lazy result, each block computed by gemmconv's ordinary ``conv2d``.

The result's blocks follow the input's chunks: along N one block per chunk (no communication); along H and W
the output rows and columns are cut where the input's chunks are (:func:`output_bounds`), and each output
block reads the window of the padded input its outputs cover (:func:`window`), gathered inside its own task
from its chunk and thin strips of the neighbouring ones (:mod:`.gather`), padded as the whole array is
padded: a padding mode acts at the array's border only and circular padding wraps across the whole array; the
blocks then run unpadded. Along C each chunk's channels give a partial sum of the output channels they feed
(:func:`channel_pieces`: whole groups together, a group split between chunks in parts), the parts of one
output block added by a balanced tree of tasks.
The weights and bias enter the graph once (one ``Delayed`` each), not once per task.

Dask is optional: this module never imports it; :func:`is_dask_array` looks in ``sys.modules``, and the
functions that build graphs take the loaded modules from there.
"""

from __future__ import annotations

import functools
import itertools
import sys
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from ..api._dask_hook import any_dask
from ..api.conv import conv2d as public_conv2d
from ..backends import get_backend
from ..core.args import ConvArgs
from ..core.registry import get_strategy
from ..planning.plan import make_plan
from ..planning.validate import validate
from .gather import Gather, add_sum

__all__ = ["Tiling", "block_kwargs", "channel_pieces", "check_x", "conv2d", "delayed_array", "graph_array",
           "is_dask_array", "key_of", "output_bounds", "stand_for", "stand_in", "window"]

def names_one(args: ConvArgs) -> bool:
    """Whether ``args`` name one strategy (not a chooser such as ``auto``, which picks per block)."""
    return get_strategy(args.strategy).select is None


def is_dask_array(a: Any) -> bool:
    """Whether ``a`` is a ``dask.array.Array`` (the hook's test, :func:`gemmconv.api._dask_hook.any_dask`)."""
    return any_dask(a)


def stand_in(meta: Any, shape: tuple[int, ...], dtype: Any, name: str) -> Any:
    """A read-only array of ``shape`` and ``dtype`` in the library of ``meta`` (a Dask array's ``_meta``) that
    holds no memory (zeros broadcast), for validation before any work."""
    backend = get_backend(meta, name)
    # one native element (dtype may be byte-swapped: converting the broadcast view would fill all of shape)
    return backend.xp.broadcast_to(backend.native(backend.xp.zeros((), dtype=dtype)), shape)


def stand_for(a: Any, name: str) -> Any:
    """What validation sees for the argument ``name``: a :func:`stand_in` of a Dask array's shape and dtype,
    anything else (an in-memory array, ``None``) as it is."""
    return stand_in(a._meta, a.shape, a.dtype, name) if is_dask_array(a) else a


def output_bounds(chunks: tuple[int, ...], pad: int, stride: int, ekernel: int, out: int) -> list[int]:
    """Where the output is cut along one axis: at each boundary ``b`` between input chunks, the first output
    whose window (``ekernel`` rows from ``o·stride - pad``) is centred at or past ``b``; 0 and ``out`` at the
    ends, empty pieces dropped. Any cut is correct; this one keeps each block's reads near its own chunk."""
    cuts = [0]
    for b in itertools.accumulate(chunks[:-1]):
        o = -(-(b + pad - (ekernel - 1) // 2) // stride)
        cuts.append(min(out, max(0, o)))
    cuts.append(out)
    return sorted(set(cuts))


class ChannelPiece(NamedTuple):
    """Input channels ``c0:c1`` give output channels ``k0:k1`` through a convolution of ``groups`` groups with the
    weights ``w[k0:k1, cw0:cw1]``."""

    c0: int
    c1: int
    k0: int
    k1: int
    groups: int
    cw0: int
    cw1: int


def channel_pieces(chunks: tuple[int, ...], groups: int, cg: int, kg: int) -> list[ChannelPiece]:
    """The input channels cut where ``x``'s chunks are and, inside a chunk, at the first and last group boundary:
    the whole groups of a chunk are one grouped convolution; a part of a group (a group split between chunks)
    is a convolution of its channels alone, a partial sum of its group's outputs, added to the other parts'."""
    pieces: list[ChannelPiece] = []
    c0 = 0
    for size in chunks:
        c1 = c0 + size
        head, tail = min(c1, -(-c0 // cg) * cg), max(c0, c1 // cg * cg)  # the first and last group boundary
        if head >= tail:  # no whole group: the chunk lies inside one group (or spans one boundary only)
            cuts = sorted({c0, head, c1})
        else:
            cuts = sorted({c0, head, tail, c1})
        for u, v in itertools.pairwise(cuts):
            g0 = u // cg
            if u % cg == 0 and v % cg == 0:  # whole groups g0 .. v/cg
                pieces.append(ChannelPiece(u, v, g0 * kg, v // cg * kg, v // cg - g0, 0, cg))
            else:  # a part of group g0
                pieces.append(ChannelPiece(u, v, g0 * kg, (g0 + 1) * kg, 1, u - g0 * cg, v - g0 * cg))
        c0 = c1
    return pieces


def window(o0: int, o1: int, stride: int, ekernel: int) -> tuple[int, int]:
    """The rows ``lo, hi`` of the padded input that outputs ``o0:o1`` read."""
    return o0 * stride, (o1 - 1) * stride + ekernel


def _sizes(bounds: list[int]) -> tuple[int, ...]:
    """The sizes of the pieces between ``bounds``."""
    return tuple(b - a for a, b in itertools.pairwise(bounds))


def _unknown(size: Any) -> bool:
    """Whether a Dask size is unknown (NaN)."""
    return bool(size != size)


def _block(x: Any, w: Any, b: Any, conv: Callable[..., Any]) -> Any:
    """One output block: ``conv`` on the padded slab ``x`` (a task of the graph)."""
    return conv(x, w, b)


def check_x(x: Any, out: Any, name: str = "x") -> None:
    """What the Dask array ``x`` (the argument ``name``) must be before any graph is built (every function on
    Dask arrays checks it)."""
    if out is not None:
        raise TypeError(f"out= is not supported for a Dask array {name}: the result is a lazy Dask array; "
                        "store it with dask.array.store (or compute it) instead")
    if x.ndim not in (3, 4):
        what = "(N, K, OH, OW) or 3-D (K, OH, OW)" if name == "grad_y" else "(N, C, H, W) or 3-D (C, H, W)"
        raise ValueError(f"{name} must be 4-D {what}, got a {x.ndim}-D Dask array of shape {x.shape}")
    if any(_unknown(s) for s in x.shape):
        raise ValueError(f"{name} has unknown chunk sizes (shape {x.shape}); call {name}.compute_chunk_sizes() "
                         "first")


class Tiling:
    """The blocks of a convolution ``spec`` of the 4-D Dask array ``x4``: the cuts of the output rows and columns
    (:func:`output_bounds`), the channel pieces (:func:`channel_pieces`), the chunks of images ``(n0, nb)``,
    and a :class:`~gemmconv.dask.gather.Gather` of the padded input's slabs, whose strip tasks go into the
    graph's layer named ``name``."""

    def __init__(self, x4: Any, spec: Any, name: str) -> None:
        self.spec = spec
        pads = ((0, 0), (0, 0), (spec.pt, spec.pb), (spec.pl, spec.pr))
        self.gather = Gather(x4, pads, spec.padding_mode, name)
        self.rows = output_bounds(x4.chunks[2], spec.pt, spec.sh, spec.ekh, spec.oh)
        self.cols = output_bounds(x4.chunks[3], spec.pl, spec.sw, spec.ekw, spec.ow)
        self.pieces = (channel_pieces(x4.chunks[1], spec.groups, spec.cg, spec.kg)
                       or [ChannelPiece(0, 0, 0, spec.k, spec.groups, 0, 0)])
        self.ranges = sorted({(p.k0, p.k1) for p in self.pieces})  # the output channels the pieces feed
        starts = itertools.accumulate((0, *x4.chunks[0][:-1]))
        self.images = list(zip(starts, x4.chunks[0], strict=True))

    def slab(self, n0: int, nb: int, c0: int, c1: int, o0: int, o1: int, q0: int, q1: int) -> tuple[Any, ...]:
        """A task assembling images ``n0:n0+nb``, channels ``c0:c1`` of the padded input that outputs
        ``o0:o1`` x ``q0:q1`` read (its halo from the neighbouring chunks), inside the task that reads it."""
        spec = self.spec
        return self.gather.task(((n0, n0 + nb), (c0, c1), window(o0, o1, spec.sh, spec.ekh),
                                 window(q0, q1, spec.sw, spec.ekw)))

    def blocks(self) -> Iterator[tuple[tuple[int, int, int], tuple[int, int, int, int, int, int]]]:
        """The output blocks: their grid index ``(a, i, j)`` (image chunk, row cut, column cut) and their
        extent ``(n0, nb, o0, o1, q0, q1)``."""
        for a, (n0, nb) in enumerate(self.images):
            for i, (o0, o1) in enumerate(itertools.pairwise(self.rows)):
                for j, (q0, q1) in enumerate(itertools.pairwise(self.cols)):
                    yield (a, i, j), (n0, nb, o0, o1, q0, q1)


def graph_array(name: str, layer: dict[Any, Any], deps: list[Any], chunks: tuple[tuple[int, ...], ...],
                meta: Any) -> Any:
    """The Dask array of the blocks ``(name, i, j, k, l)`` of ``layer`` (which reads ``deps``' keys)."""
    graph = sys.modules["dask.highlevelgraph"].HighLevelGraph.from_collections(name, layer, dependencies=deps)
    return sys.modules["dask.array"].Array(graph, name, chunks, meta=meta)


def key_of(d: Any) -> Any:
    """The key of the ``Delayed`` ``d`` in a task (``None`` stays ``None``)."""
    return None if d is None else d.key


def block_kwargs(args: ConvArgs, **given: Any) -> dict[str, Any]:
    """The keywords of a block's call: ``args``' hyper-parameters and choices, with ``given`` instead."""
    names = ("stride", "padding", "dilation", "groups", "padding_mode", "strategy", "workspace_limit")
    return {**{f: getattr(args, f) for f in names}, **given}


def delayed_array(dask: Any, a: Any, name: str) -> Any:
    """``a`` as one ``Delayed`` of the graph: an in-memory array as it is, a Dask array as its one chunk."""
    if a is None:
        return None
    if is_dask_array(a):
        return a.rechunk(a.shape).to_delayed().ravel()[0]
    return dask.delayed(a, pure=True, name=f"gemmconv-{name}-{dask.base.tokenize(a)}")


def conv2d(x: Any, w: Any, b: Any, args: ConvArgs, out: Any = None) -> Any:
    """:func:`gemmconv.conv2d` of a Dask array ``x`` (see there and the module docstring): a lazy Dask array of
    the result, its chunks of ``x``'s library, each block computed by :func:`gemmconv.conv2d`."""
    conv = public_conv2d
    da, dask = sys.modules["dask.array"], sys.modules["dask"]
    check_x(x, out)
    stands = (stand_for(w, "w"), stand_for(b, "b"))
    whole = validate(stand_for(x, "x"), *stands, args)  # errors, no work
    spec = whole.spec
    unbatched = x.ndim == 3
    x4 = x[None] if unbatched else x  # (C, H, W) -> (1, C, H, W)
    wd, bd = delayed_array(dask, w, "w"), delayed_array(dask, b, "b")
    if all(len(c) == 1 for c in x4.chunks[1:]):  # chunks along N only: one task per chunk, padding its own
        if names_one(args):  # the one strategy named must run every block (a chooser picks per block)
            for nb in set(x4.chunks[0]) - {0}:
                make_plan(stand_in(x._meta, (nb, *x4.shape[1:]), x.dtype, "x"), stands[0], stands[1], args)
        compute = functools.partial(_block, conv=functools.partial(conv, **block_kwargs(args)))
        y = da.map_blocks(compute, x4, wd, bd, dtype=x.dtype, meta=x._meta,
                          chunks=(x4.chunks[0], (spec.k,), (spec.oh,), (spec.ow,)))
        return y[0] if unbatched else y
    name = "gemmconv-conv2d-" + dask.base.tokenize(x4.name, key_of(wd), key_of(bd), repr(args))
    tiling = Tiling(x4, spec, name)
    pieces, ranges, layer = tiling.pieces, tiling.ranges, tiling.gather.layer
    weights = {p: wd if (p.groups, p.cw0, p.cw1) == (spec.groups, 0, spec.cg) else wd[p.k0:p.k1, p.cw0:p.cw1]
               for p in pieces}  # slices of the one weights node
    first = {r: next(p for p in pieces if (p.k0, p.k1) == r) for r in ranges}  # the piece that adds the bias
    biases = {r: None if bd is None else (bd if r == (0, spec.k) else bd[r[0]:r[1]]) for r in ranges}

    checked: set[tuple[Any, ...]] = set()  # block shapes whose strategy is checked, before any work

    def partial(n0: int, nb: int, o0: int, o1: int, q0: int, q1: int, piece: ChannelPiece) -> tuple[Any, ...]:
        """One piece's convolution of one output block (its share of the sum over the input channels)."""
        c0, c1, k0, k1, g, cw0, cw1 = piece
        kwargs = block_kwargs(args, padding=0, padding_mode="zeros", groups=g)
        shape = (nb, c1 - c0, (o1 - o0 - 1) * spec.sh + spec.ekh, (q1 - q0 - 1) * spec.sw + spec.ekw)
        if (shape, piece) not in checked and nb and names_one(args):
            w_stand = stand_in(x._meta, (k1 - k0, cw1 - cw0, spec.kh, spec.kw), x.dtype, "w")
            make_plan(stand_in(x._meta, shape, x.dtype, "x"), w_stand, None, ConvArgs(**kwargs))
        checked.add((shape, piece))
        compute = functools.partial(_block, conv=functools.partial(conv, **kwargs))
        bias = biases[(k0, k1)] if first[(k0, k1)] == piece else None
        return (compute, tiling.slab(n0, nb, c0, c1, o0, o1, q0, q1), key_of(weights[piece]), key_of(bias))

    for (a, i, j), block in tiling.blocks():
        for r, rng in enumerate(ranges):
            add_sum(layer, [partial(*block, p) for p in pieces if (p.k0, p.k1) == rng], (name, a, r, i, j))
    deps = [x4, *{id(d): d for d in (*weights.values(), *biases.values()) if d is not None}.values()]
    chunks = (x4.chunks[0], tuple(k1 - k0 for k0, k1 in ranges), _sizes(tiling.rows), _sizes(tiling.cols))
    y = graph_array(name, layer, deps, chunks, x._meta)
    return y[0] if unbatched else y
