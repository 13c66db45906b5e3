"""``conv2d_grad_weight`` on Dask arrays: the weights' gradient as a tree sum of the blocks' gradients.

The blocks are the forward pass's (:mod:`.conv`): chunks of images, bands of output rows and columns with
their slabs of the padded input, and pieces of the input channels. Each block's share of dL/dw is gemmconv's
ordinary ``conv2d_grad_weight`` of its slab and its block of dL/dy (unpadded: the padding, of any mode, is in
the slab), both gathered inside the block's task; the shares are added by a balanced tree, and the pieces of
the channels fill their own rows and columns of dL/dw. The result is a lazy Dask array of one chunk, shape
``weight_shape``.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from ..api.backward import conv1d_grad_weight, conv2d_grad_weight, conv3d_grad_weight
from ..backends import get_backend
from ..core.args import ConvArgs
from ..core.registry import GRAD_WEIGHT
from ..planning.passes import make_pass_plan
from .conv import Tiling, block_kwargs, check_x, graph_array, is_dask_array, stand_for
from .gather import Gather, add_sum
from .tiling import ChannelPiece

__all__ = ["PUBLIC", "grad_weight_nd"]


def _grad_weight_of(x: Any, gy: Any, grad_weight: Callable[..., Any]) -> Any:
    """One block's share of dL/dw (a task of the graph): ``grad_weight`` of its slab and its block of dL/dy."""
    return grad_weight(x, grad_y=gy)


def _fill(shape: tuple[int, ...], places: tuple[tuple[int, int, int, int], ...], *sums: Any) -> Any:
    """dL/dw of ``shape`` from the pieces' sums, each at its rows ``k0:k1`` and columns ``cw0:cw1``."""
    if len(sums) == 1 and sums[0].shape == shape:
        return sums[0]
    dw = get_backend(sums[0], "x").xp.zeros(shape, dtype=sums[0].dtype)
    for (k0, k1, cw0, cw1), part in zip(places, sums, strict=True):
        dw[k0:k1, cw0:cw1] = part
    return dw


#: the public grad_weight of each number of spatial dimensions, which computes a block's share
PUBLIC = {1: conv1d_grad_weight, 2: conv2d_grad_weight, 3: conv3d_grad_weight}


def grad_weight_nd(x: Any, weight_shape: tuple[int, ...], grad_y: Any, args: ConvArgs, out: Any = None,
                ndim: int = 2) -> Any:
    """:func:`gemmconv.conv2d_grad_weight` of a Dask array ``x`` (``grad_y`` a Dask array too, or an in-memory
    one of x's library): a lazy Dask array of dL/dw, each block's share computed by
    :func:`gemmconv.conv2d_grad_weight`."""
    grad_weight = PUBLIC[ndim]
    da, dask = sys.modules["dask.array"], sys.modules["dask"]
    check_x(x, out, ndim=ndim)
    plan = make_pass_plan(GRAD_WEIGHT, (stand_for(x, "x"), stand_for(grad_y, "grad_y")), weight_shape, args,
                          ndim=ndim)
    spec = plan.spec  # shapes, dtypes, libraries and grad_y's shape checked: no work done
    if not is_dask_array(grad_y):
        grad_y = da.from_array(grad_y, chunks=grad_y.shape, asarray=False)
    x4, gy4 = (x[None], grad_y[None]) if x.ndim == len(weight_shape) - 1 else (x, grad_y)  # (C, ...) -> (1, C, ...)
    name = "gemmconv-grad-weight-" + dask.base.tokenize(x4.name, gy4.name, weight_shape, repr(args))
    tiling = Tiling(x4, spec, name)
    layer = tiling.gather.layer
    gy_gather = Gather(gy4, ((0, 0),) * gy4.ndim, "zeros", f"{name}-gy")
    pieces = tiling.split.pieces

    def share(n0: int, nb: int, outputs: tuple[tuple[int, int], ...], piece: ChannelPiece) -> tuple[Any, ...]:
        gyb = gy_gather.task(((n0, n0 + nb), (piece.k0, piece.k1), *outputs))
        kwargs = block_kwargs(args, padding=0, padding_mode="zeros", groups=piece.groups)
        shape = (piece.k1 - piece.k0, piece.cw1 - piece.cw0, *spec.kernel)
        fn = functools.partial(grad_weight, weight_shape=shape, **kwargs)
        return (functools.partial(_grad_weight_of, grad_weight=fn),
                tiling.slab(n0, nb, piece.c0, piece.c1, outputs), gyb)

    blocks = [(n0, nb, outputs) for _, n0, nb, outputs in tiling.blocks() if nb]  # the blocks with images in them
    if not blocks:  # no images: a zero gradient
        return da.zeros(weight_shape, dtype=x.dtype, chunks=weight_shape, meta=x._meta)
    keys = []
    for i, p in enumerate(pieces):
        keys.append((f"{name}-piece", i))
        add_sum(layer, [share(*blk, p) for blk in blocks], keys[-1])
    layer.update(gy_gather.layer)
    places = tuple((p.k0, p.k1, p.cw0, p.cw1) for p in pieces)
    key = (name, *(0,) * len(weight_shape))  # the one block of dL/dw
    layer[key] = (_fill, tuple(weight_shape), places, *keys)
    return graph_array(name, layer, [x4, gy4], tuple((s,) for s in weight_shape), x._meta)
