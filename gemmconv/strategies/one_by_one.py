"""``1x1``: a 1×1 convolution is a matmul over channels; no column matrix.

Run in blocks of images or output rows like ``im2col`` (its :func:`~gemmconv.strategies.im2col.gemm_blocks`),
whose columns are views of the input itself, or for a stride the strided pixels gathered per block.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..registry import Strategy
from ..spec import ConvSpec
from . import im2col
from ._common import add_bias, block_budget


def supports(spec: ConvSpec) -> str | None:
    if (spec.kh, spec.kw) != (1, 1):
        return f"needs a 1x1 kernel, got {spec.kh}x{spec.kw}"
    if (spec.sh, spec.sw) != (1, 1):  # the strided pixels are gathered in blocks, as im2col's columns
        return im2col.limit_problem(spec, pads_zeros=False)
    return None


def run(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    strided = (spec.sh, spec.sw) != (1, 1)
    # unstrided, the columns are views of x: no workspace, so no limit to cut the blocks by
    plan_spec = spec if strided else dataclasses.replace(spec, workspace_limit=None)
    fold = strided and im2col.folds_bias(spec, b)  # the gathered columns take a row of ones
    workers, itemsize = backend.workers(), x.dtype.itemsize
    blocks = im2col.plan(plan_spec, block_budget(backend, spec), workers, itemsize, fold)
    workers = im2col.in_flight(plan_spec, workers, itemsize, fold)  # blocks run at once under a limit
    if backend.block_bytes is None and blocks == [(0, spec.n, 0, spec.oh, 0, spec.k)]:  # the GPU: one matmul
        if strided:
            x = x[:, :, : spec.oh * spec.sh : spec.sh, : spec.ow * spec.sw : spec.sw]  # -> (N, C, OH, OW)
        xs = x.reshape(spec.n, spec.groups, spec.cg, spec.oh * spec.ow)  # (N, C, OH, OW) -> (N, G, C/G, OH·OW)
        wm = w.reshape(spec.groups, spec.kg, spec.cg)  # (K, C/G, 1, 1) -> (G, K/G, C/G)
        y = backend.matmul(wm, xs)  # (G, K/G, C/G) @ (N, G, C/G, OH·OW) -> (N, G, K/G, OH·OW)
        return add_bias(y.reshape(spec.out_shape), b)  # -> (N, K, OH, OW)
    x = backend.xp.ascontiguousarray(x)
    if strided:  # the strided pixels gathered per block (a 1x1 im2col), with the bias where it pays
        return im2col.gemm_blocks(
            backend, x, w, b, spec, blocks,
            lambda n0, n1, o0, o1: backend.im2col_part(x, spec, n0, n1, o0, o1, ones_row=fold), fold, workers)
    # (NB, C, OB, W) rows of x -> (NB, C, OB·W): a view, as the rows of a band are adjacent
    return im2col.gemm_blocks(backend, x, w, b, spec, blocks,
                              lambda n0, n1, o0, o1: x[n0:n1, :, o0:o1].reshape(n1 - n0, spec.c, (o1 - o0) * spec.w))


STRATEGY = Strategy(
    name="1x1",
    run=run,
    supports=supports,
    description="reshape + batched matmul over channels, stride by slicing; 1x1 kernels only",
    pads_zeros=False,
)
