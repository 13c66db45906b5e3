"""``im2col``'s backward passes: the gradients of a convolution by GEMMs against column matrices.

- ``grad_input``: the columns of the gradient, ``W^T @ dL/dy`` per image and group, summed back onto the
  input by col2im (the adjoint of im2col). With a bias of the input's channels it is the transposed
  convolution.
- ``grad_weight``: ``dL/dy @ cols^T`` per image and group (the columns of the forward input), summed over
  the images.

Both hold all the column matrices of the batch at once: they do not keep to a ``workspace_limit`` yet, and
refuse one.
"""

from __future__ import annotations

from typing import Any

from ..registry import PassImpl, Runner
from ..spec import NO_LIMITS, ConvSpec, Limits
from ._common import deliver

__all__ = ["GRAD_INPUT", "GRAD_WEIGHT"]

def supports(spec: ConvSpec, limits: Limits = NO_LIMITS) -> str | None:
    if limits.workspace is not None:
        return (f"its backward passes hold the whole batch's column matrices and do not keep to a workspace_limit "
                f"yet (got {limits.workspace}); pass workspace_limit=None")
    return None


def _columns_bytes(spec: ConvSpec) -> int:
    return spec.n * spec.c * spec.kh * spec.kw * spec.oh * spec.ow * spec.itemsize


def _prepare_grad_input(backend: Any, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Runner:
    g, crs, p = spec.groups, spec.cg * spec.kh * spec.kw, spec.oh * spec.ow

    def run(gy: Any, w: Any, bias: Any, out: Any) -> Any:
        gy4 = gy.reshape(spec.n, g, spec.kg, p)  # (N, K, OH, OW) -> (N, G, K/G, OH·OW)
        wt = w.reshape(g, spec.kg, crs).transpose(0, 2, 1)  # (K, C/G, R, S) -> (G, C/G·R·S, K/G)
        cols = backend.matmul(wt, gy4)  # (G, C/G·R·S, K/G) @ (N, G, K/G, OH·OW) -> (N, G, C/G·R·S, OH·OW)
        cols = cols.reshape(spec.n, g * crs, p)  # -> (N, C·R·S, OH·OW): groups' rows are consecutive, as im2col's
        dx = backend.col2im(cols, spec)  # (N, C, H, W)
        if bias is not None:
            dx += bias.reshape(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1)
        return deliver(dx, out)

    run.workspace_bytes = _columns_bytes(spec)  # type: ignore[attr-defined]
    return run


def _prepare_grad_weight(backend: Any, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Runner:
    g, crs, p = spec.groups, spec.cg * spec.kh * spec.kw, spec.oh * spec.ow

    def run(x: Any, gy: Any, bias: Any, out: Any) -> Any:
        cols = backend.im2col(x, spec).reshape(spec.n, g, crs, p)  # (N, C·R·S, OH·OW) -> (N, G, C/G·R·S, OH·OW)
        gy4 = gy.reshape(spec.n, g, spec.kg, p)  # (N, K, OH, OW) -> (N, G, K/G, OH·OW)
        # (N, G, K/G, OH·OW) @ (N, G, OH·OW, C/G·R·S) -> (N, G, K/G, C/G·R·S), summed over the images
        dw = backend.matmul(gy4, cols.transpose(0, 1, 3, 2)).sum(axis=0)
        dw = dw.reshape(spec.k, spec.cg, spec.kh, spec.kw)  # (G, K/G, C/G·R·S) -> (K, C/G, R, S)
        return deliver(dw, out)

    run.workspace_bytes = _columns_bytes(spec) + spec.n * spec.k * crs * spec.itemsize  # type: ignore[attr-defined]
    return run


GRAD_INPUT = PassImpl(_prepare_grad_input, supports, needs=("col2im",))
GRAD_WEIGHT = PassImpl(_prepare_grad_weight, supports, needs=("im2col",))
