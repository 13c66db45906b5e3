"""``conv2d`` on Dask arrays: a lazy result, each block computed by gemmconv's ordinary ``conv2d``.

The result's blocks follow the input's chunks: along N one block per chunk (no communication); along H and W
the output rows and columns are cut where the input's chunks are (:func:`output_bounds`), and each output
block reads the slab of the padded input its windows cover (:func:`slab`), the halo coming from the
neighbouring chunks. Padding is applied to the whole array first (``dask.array.pad``), so a padding mode acts
at the array's border only and circular padding wraps across the whole array; the blocks then run unpadded.
The weights and bias enter the graph once (one ``Delayed`` each), not once per task.

Dask is optional: this module never imports it; :func:`is_dask_array` looks in ``sys.modules``, and the
functions that build graphs are handed the loaded ``dask.array`` module.
"""

from __future__ import annotations

import functools
import itertools
import sys
from collections.abc import Callable
from typing import Any

from .args import ConvArgs
from .backends import get_backend
from .plan import make_plan
from .validate import validate

__all__ = ["conv2d", "is_dask_array", "output_bounds", "slab"]

#: torch's padding modes -> dask.array.pad's (numpy.pad's) names
_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def is_dask_array(a: Any) -> bool:
    """Whether ``a`` is a ``dask.array.Array`` (never imports Dask: one that is not loaded has no arrays)."""
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(a, da.Array)


def _stand_in(meta: Any, shape: tuple[int, ...], dtype: Any, name: str) -> Any:
    """A read-only array of ``shape`` and ``dtype`` in the library of ``meta`` (a Dask array's ``_meta``) that
    holds no memory (zeros broadcast), for validation before any work."""
    xp = get_backend(meta, name).xp
    return xp.broadcast_to(xp.zeros((), dtype=dtype), shape)


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


def slab(o0: int, o1: int, stride: int, ekernel: int) -> slice:
    """The rows of the padded input that outputs ``o0:o1`` read."""
    return slice(o0 * stride, (o1 - 1) * stride + ekernel)


def _unknown(size: Any) -> bool:
    """Whether a Dask size is unknown (NaN)."""
    return bool(size != size)


def _block(x: Any, w: Any, b: Any, conv: Callable[..., Any]) -> Any:
    """One output block: ``conv`` on the padded slab ``x`` (a task of the graph)."""
    return conv(x, w, b)


def _delayed(dask: Any, a: Any, name: str) -> Any:
    """``a`` as one ``Delayed`` of the graph: an in-memory array as it is, a Dask array as its one chunk."""
    if a is None:
        return None
    if is_dask_array(a):
        return a.rechunk(a.shape).to_delayed().ravel()[0]
    return dask.delayed(a, pure=True, name=f"gemmconv-{name}-{dask.base.tokenize(a)}")


def conv2d(x: Any, w: Any, b: Any, args: ConvArgs, conv: Callable[..., Any], out: Any = None) -> Any:
    """:func:`gemmconv.conv2d` of a Dask array ``x`` (see there and the module docstring): a lazy Dask array of
    the result, its chunks of ``x``'s library; ``conv`` computes a block (gemmconv's ``conv2d``)."""
    da, dask = sys.modules["dask.array"], sys.modules["dask"]
    if out is not None:
        raise TypeError("out= is not supported for a Dask array x: the result is a lazy Dask array; "
                        "store it with dask.array.store (or compute it) instead")
    if x.ndim not in (3, 4):
        raise ValueError(f"x must be 4-D (N, C, H, W) or 3-D (C, H, W), got a {x.ndim}-D Dask array of shape "
                         f"{x.shape}")
    if any(_unknown(s) for s in x.shape):
        raise ValueError(f"x has unknown chunk sizes (shape {x.shape}); call x.compute_chunk_sizes() first")
    names = ("w", "b")
    stands = [a if a is None or not is_dask_array(a) else _stand_in(a._meta, a.shape, a.dtype, n)
              for a, n in zip((w, b), names, strict=True)]
    whole = validate(_stand_in(x._meta, x.shape, x.dtype, "x"), stands[0], stands[1], args)  # errors, no work
    spec = whole.spec
    unbatched = x.ndim == 3
    x4 = x[None] if unbatched else x  # (C, H, W) -> (1, C, H, W)
    if len(x4.chunks[1]) > 1:
        raise ValueError(f"x is chunked along its channels (chunks {x4.chunks[1]}); conv2d on Dask arrays needs "
                         f"the channels in one chunk: pass x.rechunk({{{int(not unbatched)}: -1}})")
    pads = ((0, 0), (0, 0), (spec.pt, spec.pb), (spec.pl, spec.pr))
    padded = x4 if not any(sum(p) for p in pads) else da.pad(x4, pads, mode=_PAD_MODES[spec.padding_mode])
    rows = output_bounds(x4.chunks[2], spec.pt, spec.sh, spec.ekh, spec.oh)
    cols = output_bounds(x4.chunks[3], spec.pl, spec.sw, spec.ekw, spec.ow)
    block_args = ConvArgs(args.stride, 0, args.dilation, args.groups, "zeros", args.strategy, args.workspace_limit)
    kwargs = {f: getattr(block_args, f) for f in ("stride", "dilation", "groups", "strategy", "workspace_limit")}
    compute = functools.partial(_block, conv=functools.partial(conv, padding=0, **kwargs))
    wd, bd = _delayed(dask, w, "w"), _delayed(dask, b, "b")

    checked: set[tuple[int, ...]] = set()  # block shapes whose strategy is checked, before any work
    n_rows = []
    n0 = 0
    for nb in x4.chunks[0]:
        row_blocks = []
        for (o0, o1) in itertools.pairwise(rows):
            col_blocks = []
            for (q0, q1) in itertools.pairwise(cols):
                piece = padded[n0:n0 + nb, :, slab(o0, o1, spec.sh, spec.ekh), slab(q0, q1, spec.sw, spec.ekw)]
                shape = (nb, spec.c, *piece.shape[2:])
                if shape not in checked and nb and args.strategy != "auto":
                    make_plan(_stand_in(x._meta, shape, x.dtype, "x"), stands[0], stands[1], block_args)
                checked.add(shape)
                piece = piece.rechunk((nb, spec.c, *piece.shape[2:]))  # one chunk: the slab with its halo
                col_blocks.append(da.map_blocks(compute, piece, wd, bd, dtype=x.dtype, meta=x._meta,
                                                chunks=(nb, spec.k, o1 - o0, q1 - q0)))
            row_blocks.append(da.concatenate(col_blocks, axis=3))
        n_rows.append(da.concatenate(row_blocks, axis=2))
        n0 += nb
    y = da.concatenate(n_rows, axis=0)
    return y[0] if unbatched else y
