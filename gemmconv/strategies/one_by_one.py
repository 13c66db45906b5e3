"""``1x1``: a 1×1 convolution is a matmul over channels; no column matrix.

Run in blocks of images or output rows like ``im2col`` (its :func:`~gemmconv.strategies.im2col_blocks.gemm_blocks`),
whose columns are views of the input itself, or for a stride the strided pixels gathered per block.
Backward: ``grad_input`` as 1x1 convolutions of ``grad_y`` written into the strided pixels (:mod:`.adjoint`),
``grad_weight`` as one matmul per image and group against the (strided) pixels.
"""

from __future__ import annotations

from typing import Any

from ..backends.base import Backend
from ..backends.kernels import Im2colKernels
from ..core.prepared import Prepared
from ..core.registry import GRAD_INPUT, GRAD_WEIGHT, PassImpl, Strategy
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from . import adjoint, im2col_blocks
from ._common import add_bias, deliver


def supports(spec: ConvSpec, limits: Limits = NO_LIMITS) -> str | None:
    if (spec.kh, spec.kw) != (1, 1):
        return f"needs a 1x1 kernel, got {spec.kh}x{spec.kw}"
    if (spec.sh, spec.sw) != (1, 1):  # the strided pixels are gathered in blocks, as im2col's columns
        return im2col_blocks.limit_problem(spec, limits.workspace, pads_zeros=False)
    return None


def prepare(backend: Im2colKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    strided = (spec.sh, spec.sw) != (1, 1)
    # unstrided, the columns are views of x: no workspace, so no limit to cut the blocks by (nor a bias to fold)
    decided = im2col_blocks.memo_decisions(backend, spec, limit=limits.workspace if strided else None, may_fold=strided)

    def run(x: Any, w: Any, b: Any, out: Any) -> Any:
        d = decided(b is not None)
        if d.whole:  # the GPU: one matmul
            if strided:
                x = x[:, :, : spec.oh * spec.sh : spec.sh, : spec.ow * spec.sw : spec.sw]  # -> (N, C, OH, OW)
            xs = x.reshape(spec.n, spec.groups, spec.cg, spec.oh * spec.ow)  # (N, C, OH, OW) -> (N, G, C/G, OH·OW)
            wm = w.reshape(spec.groups, spec.kg, spec.cg)  # (K, C/G, 1, 1) -> (G, K/G, C/G)
            y = backend.matmul(wm, xs)  # (G, K/G, C/G) @ (N, G, C/G, OH·OW) -> (N, G, K/G, OH·OW)
            return deliver(add_bias(y.reshape(spec.out_shape), b), out)  # -> (N, K, OH, OW)
        x = backend.xp.ascontiguousarray(x)
        if strided:  # the strided pixels gathered per block (a 1x1 im2col), with the bias where it pays
            return im2col_blocks.gemm_blocks(
                backend, x, w, b, spec, d.blocks,
                lambda n0, n1, o0, o1: backend.im2col_part(x, spec, n0, n1, o0, o1, ones_row=d.fold, reuse=True),
                d.fold, d.in_flight, out)
        # (NB, C, OB, W) rows of x -> (NB, C, OB·W): a view, as the rows of a band are adjacent
        return im2col_blocks.gemm_blocks(
            backend, x, w, b, spec, d.blocks,
            lambda n0, n1, o0, o1: x[n0:n1, :, o0:o1].reshape(n1 - n0, spec.c, (o1 - o0) * spec.width),
            workers=d.in_flight, out=out)

    kernels = ("im2col_part", "matmul") if strided and not decided(True).whole else ("matmul",)
    return Prepared(run, kernels, im2col_blocks.block_workspace(spec, decided(True)) if strided else 0)


def run(backend: Im2colKernels, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    return prepare(backend, spec, NO_LIMITS)(x, w, b, None)


def _prepare_grad_weight(backend: Backend, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    g, p = spec.groups, spec.oh * spec.ow

    def run(x: Any, gy: Any, bias: Any, out: Any) -> Any:
        xs = x[:, :, : (spec.oh - 1) * spec.sh + 1 : spec.sh, : (spec.ow - 1) * spec.sw + 1 : spec.sw]
        xs = backend.xp.ascontiguousarray(xs).reshape(spec.n, g, spec.cg, p)  # (N, C, OH, OW) -> (N, G, C/G, OH·OW)
        gy4 = gy.reshape(spec.n, g, spec.kg, p)  # (N, K, OH, OW) -> (N, G, K/G, OH·OW)
        # (N, G, K/G, OH·OW) @ (N, G, OH·OW, C/G) -> (N, G, K/G, C/G), summed over the images
        dw = backend.matmul(gy4, xs.transpose(0, 1, 3, 2)).sum(axis=0)
        return deliver(dw.reshape(spec.k, spec.cg, 1, 1), out)  # (G, K/G, C/G) -> (K, C/G, 1, 1)

    return Prepared(run, ("matmul",), (spec.n * spec.c * p + spec.n * spec.k * spec.cg) * spec.itemsize)


def _supports_grad_weight(spec: ConvSpec, limits: Limits = NO_LIMITS) -> str | None:
    if (spec.kh, spec.kw) != (1, 1):
        return f"needs a 1x1 kernel, got {spec.kh}x{spec.kw}"
    if limits.workspace is not None:
        return f"its grad_weight does not keep to a workspace_limit yet (got {limits.workspace})"
    return None


STRATEGY = Strategy(
    name="1x1",
    run=run,
    prepare=prepare,
    needs=("im2col",),
    supports=supports,
    backward={GRAD_INPUT: adjoint.grad_input_pass(prepare, supports, ("im2col",), pads_zeros=False),
              GRAD_WEIGHT: PassImpl(_prepare_grad_weight, _supports_grad_weight, ("im2col",))},
    description="reshape + batched matmul over channels, stride by slicing; 1x1 kernels only",
    pads_zeros=False,
)
