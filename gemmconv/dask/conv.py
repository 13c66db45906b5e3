"""``conv1d``, ``conv2d`` and ``conv3d`` on Dask arrays: a lazy result, each block computed by the public function.

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
from typing import Any

from ..api._dask_hook import any_dask
from ..api.conv import conv1d, conv2d, conv3d
from ..backends import get_backend
from ..core.args import ConvArgs
from ..core.registry import get_strategy
from ..core.spec import ConvSpec
from ..planning.plan import make_plan
from ..planning.validate import stand_in as validate_stand_in
from ..planning.validate import validate
from .gather import Gather
from .tiling import ChannelPiece, ChannelSplit, Grid, channel_pieces, extent, output_bounds, window

__all__ = ["PUBLIC", "Tiling", "block_kwargs", "channel_pieces", "check_x", "conv_nd", "delayed_array", "graph_array",
           "is_dask_array", "key_of", "output_bounds", "stand_for", "stand_in"]

def names_one(args: ConvArgs) -> bool:
    """Whether ``args`` name one strategy (not a chooser such as ``auto``, which picks per block)."""
    return get_strategy(args.strategy).select is None


def is_dask_array(a: Any) -> bool:
    """Whether ``a`` is a ``dask.array.Array`` (the hook's test, :func:`gemmconv.api._dask_hook.any_dask`)."""
    return any_dask(a)


def stand_in(meta: Any, shape: tuple[int, ...], dtype: Any, name: str) -> Any:
    """The :func:`~gemmconv.planning.validate.stand_in` of ``shape`` and ``dtype`` in the library of ``meta`` (a
    Dask array's ``_meta``), for validation before any work."""
    return validate_stand_in(get_backend(meta, name), shape, dtype)


def stand_for(a: Any, name: str) -> Any:
    """What validation sees for the argument ``name``: a :func:`stand_in` of a Dask array's shape and dtype,
    anything else (an in-memory array, ``None``) as it is."""
    return stand_in(a._meta, a.shape, a.dtype, name) if is_dask_array(a) else a


def _unknown(size: Any) -> bool:
    """Whether a Dask size is unknown (NaN)."""
    return bool(size != size)


_SIZES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


def check_x(x: Any, out: Any, name: str = "x", ndim: int = 2) -> None:
    """What the Dask array ``x`` (the argument ``name``) of an ``ndim``-D convolution must be before any graph is
    built (every function on Dask arrays checks it)."""
    if out is not None:
        raise TypeError(f"out= is not supported for a Dask array {name}: the result is a lazy Dask array; "
                        "store it with dask.array.store (or compute it) instead")
    if x.ndim not in (ndim + 1, ndim + 2):
        sizes = ", ".join(f"O{s}" if name == "grad_y" else s for s in _SIZES.get(ndim, ("...",)))
        channels = "K" if name == "grad_y" else "C"
        raise ValueError(f"{name} must be {ndim + 2}-D (N, {channels}, {sizes}) or {ndim + 1}-D ({channels}, {sizes}), "
                         f"got a {x.ndim}-D Dask array of shape {x.shape}")
    if any(_unknown(s) for s in x.shape):
        raise ValueError(f"{name} has unknown chunk sizes (shape {x.shape}); call {name}.compute_chunk_sizes() "
                         "first")


class Tiling(Grid):
    """The forward pass's blocks of ``spec`` over the Dask array ``x4``: the output cut along each spatial axis
    where the input's chunks are (:func:`~gemmconv.dask.tiling.output_bounds`), the channel pieces of ``x4``'s
    channel chunks, and a :class:`~gemmconv.dask.gather.Gather` of the padded input's slabs, whose strip tasks
    go into the graph's layer named ``name``. A block's cut along an axis is its outputs ``(o0, o1)``."""

    def __init__(self, x4: Any, spec: ConvSpec, name: str) -> None:
        cuts = [list(itertools.pairwise(output_bounds(chunks, before, stride, reach, out))) for chunks, (before, _),
                stride, reach, out in zip(x4.chunks[2:], spec.padding, spec.stride, spec.effective_kernel,
                                          spec.out_size, strict=True)]
        super().__init__(x4.chunks[0], cuts, ChannelSplit(x4.chunks[1], spec.groups, spec.cg, spec.kg, spec.k))
        self.spec = spec
        self.gather = Gather(x4, ((0, 0), (0, 0), *spec.padding), spec.padding_mode, name)

    def slab(self, n0: int, nb: int, c0: int, c1: int, outputs: tuple[tuple[int, int], ...]) -> tuple[Any, ...]:
        """A task assembling images ``n0:n0+nb``, channels ``c0:c1`` of the padded input that the ``outputs``
        (``(o0, o1)`` per spatial axis) read, its halo from the neighbouring chunks, inside the task that reads
        it."""
        spec = self.spec
        windows = (window(o0, o1, s, e) for (o0, o1), s, e in zip(outputs, spec.stride, spec.effective_kernel,
                                                                   strict=True))
        return self.gather.task(((n0, n0 + nb), (c0, c1), *windows))

    def slab_shape(self, nb: int, channels: int, outputs: tuple[tuple[int, int], ...]) -> tuple[int, ...]:
        """The shape of :meth:`slab`'s array."""
        spec = self.spec
        return (nb, channels, *(extent(o1 - o0, s, e) for (o0, o1), s, e in zip(outputs, spec.stride,
                                                                                 spec.effective_kernel, strict=True)))


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


#: the public forward function of each number of spatial dimensions, which computes a block
PUBLIC = {1: conv1d, 2: conv2d, 3: conv3d}


def conv_nd(x: Any, w: Any, b: Any, args: ConvArgs, out: Any = None, ndim: int = 2) -> Any:
    """:func:`gemmconv.conv2d` of a Dask array ``x`` (see there and the module docstring): a lazy Dask array of
    the result, its chunks of ``x``'s library, each block computed by :func:`gemmconv.conv2d`."""
    conv = PUBLIC[ndim]
    da, dask = sys.modules["dask.array"], sys.modules["dask"]
    check_x(x, out, ndim=ndim)
    stands = (stand_for(w, "w"), stand_for(b, "b"))
    whole = validate(stand_for(x, "x"), *stands, args, ndim=ndim)  # errors, no work
    spec = whole.spec
    unbatched = x.ndim == ndim + 1
    x4 = x[None] if unbatched else x  # (C, *size) -> (1, C, *size)
    wd, bd = delayed_array(dask, w, "w"), delayed_array(dask, b, "b")
    if all(len(c) == 1 for c in x4.chunks[1:]):  # chunks along N only: one task per chunk, padding its own
        if names_one(args):  # the one strategy named must run every block (a chooser picks per block)
            for nb in set(x4.chunks[0]) - {0}:
                make_plan(stand_in(x._meta, (nb, *x4.shape[1:]), x.dtype, "x"), stands[0], stands[1], args, ndim)
        compute = functools.partial(conv, **block_kwargs(args))
        y = da.map_blocks(compute, x4, wd, bd, dtype=x.dtype, meta=x._meta,
                          chunks=(x4.chunks[0], (spec.k,), *((o,) for o in spec.out_size)))
        return y[0] if unbatched else y
    name = "gemmconv-conv2d-" + dask.base.tokenize(x4.name, key_of(wd), key_of(bd), repr(args))
    tiling = Tiling(x4, spec, name)
    split = tiling.split
    weights = {p: wd if (p.groups, p.cw0, p.cw1) == (spec.groups, 0, spec.cg) else wd[p.k0:p.k1, p.cw0:p.cw1]
               for p in split.pieces}  # slices of the one weights node
    biases = split.biases(bd)
    checked: set[tuple[Any, ...]] = set()  # block shapes whose strategy is checked, before any work

    def partial(n0: int, nb: int, outputs: tuple[tuple[int, int], ...], piece: ChannelPiece) -> tuple[Any, ...]:
        """One piece's convolution of one output block (its share of the sum over the input channels)."""
        kwargs = block_kwargs(args, padding=0, padding_mode="zeros", groups=piece.groups)
        shape = tiling.slab_shape(nb, piece.c1 - piece.c0, outputs)
        if (shape, piece) not in checked and nb and names_one(args):
            w_stand = stand_in(x._meta, (piece.k1 - piece.k0, piece.cw1 - piece.cw0, *spec.kernel), x.dtype, "w")
            make_plan(stand_in(x._meta, shape, x.dtype, "x"), w_stand, None, ConvArgs(**kwargs), ndim)
        checked.add((shape, piece))
        return (functools.partial(conv, **kwargs), tiling.slab(n0, nb, piece.c0, piece.c1, outputs),
                key_of(weights[piece]), key_of(split.bias_of(piece, biases)))

    tiling.sum_into(tiling.gather.layer, name, partial)
    deps = [x4, *{id(d): d for d in (*weights.values(), *biases.values()) if d is not None}.values()]
    y = graph_array(name, tiling.gather.layer, deps, tiling.chunks(), x._meta)
    return y[0] if unbatched else y
