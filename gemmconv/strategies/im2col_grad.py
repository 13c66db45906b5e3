"""``im2col``'s backward passes: the gradients of a convolution by GEMMs against column matrices.

- ``grad_input``: the columns of the gradient, ``W^T @ dL/dy`` per image and group, summed back onto the
  input by col2im (the adjoint of im2col). With a bias of the input's channels it is the transposed
  convolution.
- ``grad_weight``: ``dL/dy @ cols^T`` per image and group (the columns of the forward input), summed over
  the images.

Both run in the forward pass's blocks (:func:`gemmconv.strategies.im2col.plan`: groups of images, bands of
output rows of one image, or slices of the output channels), within a ``workspace_limit`` when one is given.
``grad_input``'s blocks of whole images run on the backend's workers (each writes its own images); bands of
rows of one image share input rows and run one after the other, each GEMM on the BLAS's threads, as does a
single block, whose col2im the backend splits by channels. ``grad_weight``'s blocks are dealt to the workers
in a fixed order, each summing into an accumulator of its own, added up in order: the result does not
depend on which thread ran what.
"""

from __future__ import annotations

from typing import Any

from ..registry import PassImpl, Runner
from ..spec import NO_LIMITS, ConvSpec, Limits
from . import im2col
from ._common import deliver

__all__ = ["GRAD_INPUT", "GRAD_WEIGHT"]


def _crs(spec: ConvSpec) -> int:
    return spec.cg * spec.kh * spec.kw


def _accumulator_bytes(spec: ConvSpec) -> int:
    """What a worker of grad_weight holds besides its block's columns: its sum of dL/dw (K, C/G·R·S), a block's
    product and that product summed over the block's images (at most the same size each, per image)."""
    return 3 * spec.k * _crs(spec) * spec.itemsize


def supports_grad_input(spec: ConvSpec, limits: Limits = NO_LIMITS) -> str | None:
    return im2col.limit_problem(spec, limits.workspace)


def supports_grad_weight(spec: ConvSpec, limits: Limits = NO_LIMITS) -> str | None:
    if limits.workspace is None:
        return None
    need = im2col.min_workspace(spec) + _accumulator_bytes(spec)
    if limits.workspace >= need:
        return None
    return (f"workspace_limit={limits.workspace} is below the {need} bytes of its smallest block for this layer "
            f"(one output row of one image, and its sums of the weights' gradient); pass workspace_limit >= {need} "
            f"or None")


def _blocks(backend: Any, spec: ConvSpec, workers: int, limit: int | None) -> list[im2col.Block]:
    return im2col.plan(spec, backend.scheduler.block_budget(spec), workers, spec.itemsize, limit=limit)


def _prepare_grad_input(backend: Any, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Runner:
    g, crs, kg = spec.groups, _crs(spec), spec.kg
    workers = backend.scheduler.workers()
    blocks = _blocks(backend, spec, workers, limits.workspace)
    if any((k0, k1) != (0, spec.k) for *_, k0, k1 in blocks):  # slices of the output channels: all K are needed
        blocks = [(0, spec.n, 0, spec.oh, 0, spec.k)]
    bands = any((o0, o1) != (0, spec.oh) for _, _, o0, o1, _, _ in blocks)
    if bands and limits.workspace is None:  # one image's bands would run one by one: one block, col2im in parts
        blocks = [(0, spec.n, 0, spec.oh, 0, spec.k)]
        bands = False
    xp = backend.xp

    def run(gy: Any, w: Any, bias: Any, out: Any) -> Any:
        wt = w.reshape(g, kg, crs).transpose(0, 2, 1)  # (K, C/G, R, S) -> (G, C/G·R·S, K/G)
        dx = xp.zeros((spec.n, spec.c, spec.height, spec.width), dtype=gy.dtype)

        def block(part: im2col.Block) -> None:
            n0, n1, o0, o1, _, _ = part
            nb, p = n1 - n0, (o1 - o0) * spec.ow
            # (NB, K, OB, OW) band of dL/dy -> (NB, G, K/G, OB·OW): the rows of a band are adjacent, so a view
            gyb = gy[n0:n1, :, o0:o1].reshape(nb, g, kg, p)
            cols = backend.matmul(wt, gyb, scratch=len(blocks) > 1)  # -> (NB, G, C/G·R·S, OB·OW)
            backend.col2im_part(cols.reshape(nb, g * crs, p), dx, spec, n0, o0)  # -> (NB, C·R·S, OB·OW)

        if len(blocks) == 1 or bands:
            for part in blocks:
                block(part)
        else:
            backend.scheduler.run_blocks(block, blocks, im2col.in_flight(spec, workers, spec.itemsize,
                                                                          limit=limits.workspace))
        if bias is not None:
            dx += bias.reshape(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1)
        return deliver(dx, out)

    most = max((n1 - n0) * (o1 - o0) for n0, n1, o0, o1, _, _ in blocks)
    in_flight = 1 if len(blocks) == 1 or bands else min(len(blocks), workers)
    run.workspace_bytes = most * spec.c * spec.kh * spec.kw * spec.ow * spec.itemsize * in_flight  # type: ignore[attr-defined]
    return run


def _prepare_grad_weight(backend: Any, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Runner:
    g, crs, kg = spec.groups, _crs(spec), spec.kg
    limit, acc = limits.workspace, _accumulator_bytes(spec)
    parts = backend.scheduler.workers()
    while limit is not None and parts > 1 and limit - parts * acc < im2col.min_workspace(spec):
        parts -= 1  # fewer accumulators (and blocks in flight) where the limit holds fewer
    blocks = _blocks(backend, spec, parts, None if limit is None else limit - parts * acc)
    parts = min(parts, len(blocks))
    shares = [blocks[len(blocks) * i // parts: len(blocks) * (i + 1) // parts] for i in range(parts)]
    xp = backend.xp

    def run(x: Any, gy: Any, bias: Any, out: Any) -> Any:
        x = xp.ascontiguousarray(x)
        sums = [xp.zeros((spec.k, crs), dtype=x.dtype) for _ in range(parts)]

        def share(i: int) -> None:
            for n0, n1, o0, o1, k0, k1 in shares[i]:
                nb, p = n1 - n0, (o1 - o0) * spec.ow
                cols = backend.im2col_part(x, spec, n0, n1, o0, o1, reuse=parts > 1 or len(blocks) > 1)
                cols = cols.reshape(nb, g, crs, p)  # (NB, C·R·S, OB·OW) -> (NB, G, C/G·R·S, OB·OW)
                if (k0, k1) == (0, spec.k):
                    # (NB, K, OB, OW) band of dL/dy -> (NB, G, K/G, OB·OW): adjacent rows, a view
                    gyb, target = gy[n0:n1, :, o0:o1].reshape(nb, g, kg, p), sums[i]
                else:  # a slice of the output channels (G = 1, all rows)
                    gyb, target = gy[n0:n1, k0:k1].reshape(nb, 1, k1 - k0, p), sums[i][k0:k1]
                # (NB, G, KB/G, OB·OW) @ (NB, G, OB·OW, C/G·R·S) -> (NB, G, KB/G, C/G·R·S), summed over the images
                prod = backend.matmul(gyb, cols.transpose(0, 1, 3, 2))
                target += prod.sum(axis=0).reshape(target.shape)  # (G, KB/G, C/G·R·S) -> (KB, C/G·R·S)

        if parts == 1:
            share(0)
        else:
            backend.scheduler.run_blocks(share, list(range(parts)), parts)
        dw = sums[0]
        for more in sums[1:]:
            dw += more
        return deliver(dw.reshape(spec.k, spec.cg, spec.kh, spec.kw), out)  # (K, C/G·R·S) -> (K, C/G, R, S)

    most = max((n1 - n0) * (o1 - o0) for n0, n1, o0, o1, _, _ in blocks)
    cols_bytes = most * spec.c * spec.kh * spec.kw * spec.ow * spec.itemsize
    run.workspace_bytes = parts * (cols_bytes + acc)  # type: ignore[attr-defined]
    return run


GRAD_INPUT = PassImpl(_prepare_grad_input, supports_grad_input, needs=("col2im",))
GRAD_WEIGHT = PassImpl(_prepare_grad_weight, supports_grad_weight, needs=("im2col",))
