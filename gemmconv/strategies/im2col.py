"""``im2col``: pack the column matrix, then one GEMM per image and group.

The blocks, their sizes under a workspace limit and the blocked GEMM are :mod:`.im2col_blocks`'; on a backend
that does not cut work into blocks (the GPU's) and without a limit, the whole problem is one column matrix and
one GEMM (:func:`_gemm`). Its backward passes: :mod:`.im2col_grad`.
"""

from __future__ import annotations

import functools
from typing import Any

from ..backends.kernels import Im2colKernels
from ..core import registry
from ..core.prepared import Prepared
from ..core.registry import Strategy
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from . import im2col_grad
from ._common import add_bias, deliver
from .im2col_blocks import (  # re-exported: im2col.plan and the others stay where callers found them
    Block,
    Decisions,
    block_workspace,
    decide,
    folds_bias,
    gemm_blocks,
    in_flight,
    limit_problem,
    memo_decisions,
    min_workspace,
    plan,
)

__all__ = ["STRATEGY", "Block", "Decisions", "block_workspace", "decide", "folds_bias", "gemm_blocks", "in_flight",
           "limit_problem", "memo_decisions", "min_workspace", "plan", "prepare", "run", "supports"]


def _gemm(backend: Im2colKernels, x: Any, w: Any, spec: ConvSpec) -> Any:
    """The convolution of x without bias, (N, K, OH·OW), through one column matrix."""
    g, crs = spec.groups, spec.cg * spec.kh * spec.kw
    cols = backend.im2col(x, spec)  # (N, C·R·S, OH·OW)
    cols = cols.reshape(spec.n, g, crs, spec.oh * spec.ow)  # -> (N, G, C/G·R·S, OH·OW)
    wm = w.reshape(g, spec.kg, crs)  # (K, C/G, R, S) -> (G, K/G, C/G·R·S)
    y = backend.matmul(wm, cols)  # (G, K/G, C/G·R·S) @ (N, G, C/G·R·S, OH·OW) -> (N, G, K/G, OH·OW)
    return y.reshape(spec.n, spec.k, spec.oh * spec.ow)  # -> (N, K, OH·OW), no copy


def supports(spec: ConvSpec, limits: Limits = NO_LIMITS) -> str | None:
    return limit_problem(spec, limits.workspace)


def prepare(backend: Im2colKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    decided = memo_decisions(backend, spec, limit=limits.workspace)
    whole = decided(True).whole

    def run(x: Any, w: Any, b: Any, out: Any) -> Any:
        d = decided(b is not None)
        if d.whole:  # the GPU: one GEMM
            return deliver(add_bias(_gemm(backend, x, w, spec).reshape(spec.out_shape), b), out)
        x = backend.xp.ascontiguousarray(x)  # once, not per block
        columns = functools.partial(backend.im2col_part, x, spec, ones_row=d.fold, reuse=True)  # (n0, n1, o0, o1)
        return gemm_blocks(backend, x, w, b, spec, d.blocks, columns, d.fold, d.in_flight, out)

    kernels = ("im2col", "matmul") if whole else ("im2col_part", "matmul")
    return Prepared(run, kernels, block_workspace(spec, decided(True)))


def run(backend: Im2colKernels, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    return prepare(backend, spec, NO_LIMITS)(x, w, b, None)


STRATEGY = Strategy(
    name="im2col",
    run=run,
    prepare=prepare,
    needs=("im2col",),
    backward={registry.GRAD_INPUT: im2col_grad.GRAD_INPUT, registry.GRAD_WEIGHT: im2col_grad.GRAD_WEIGHT},
    supports=supports,
    description="column matrix (C·R·S × OH·OW per image) + one GEMM per image and group; any configuration "
    "(a workspace_limit must hold one output row's block)",
)
