"""``im2col``'s backward passes: the gradients of a convolution by GEMMs against column matrices.

- ``grad_input``: the columns of the gradient, ``W^T @ dL/dy`` per image and group, summed back onto the
  input by col2im (the adjoint of im2col). With a bias of the input's channels it is the transposed
  convolution.
- ``grad_weight``: ``dL/dy @ cols^T`` per image and group (the columns of the forward input), summed over
  the images.

Without a ``workspace_limit``, ``grad_input`` runs in blocks of one image (or of a few small ones, their dL/dy side
by side in one GEMM) and a slice of their input channels (:func:`_slices`), all at once on the backend's
workers: each writes its own planes of dL/dx. Under a limit,
and on a backend that does not cut work into blocks, it runs in the forward pass's blocks
(:func:`gemmconv.strategies.im2col_blocks.plan`): groups of images on the workers, or bands of output rows of one
image, which share input rows and run one after the other. ``grad_weight`` always runs in the forward pass's
blocks (groups of images, bands of rows, or slices of the output channels, which write their own rows); they
are dealt to the workers in a fixed order, each summing into an accumulator of its own, added up in order:
the result does not depend on which thread ran what (one image's bands included, each GEMM on one thread).
"""

from __future__ import annotations

import itertools
from typing import Any

from ..backends.base import Backend
from ..backends.kernels import Col2imKernels, Im2colKernels
from ..core.prepared import Prepared
from ..core.registry import PassImpl
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from . import im2col_blocks
from ._common import deliver

__all__ = ["GRAD_INPUT", "GRAD_WEIGHT"]


def _crs(spec: ConvSpec) -> int:
    return spec.cg * spec.kh * spec.kw


def _accumulator_bytes(spec: ConvSpec) -> int:
    """What a worker of grad_weight holds besides its block's columns: its sum of dL/dw (K, C/G·R·S), a block's
    product and that product summed over the block's images (at most the same size each, per image)."""
    return 3 * spec.k * _crs(spec) * spec.itemsize


def supports_grad_input(spec: ConvSpec, limits: Limits = NO_LIMITS) -> str | None:
    return im2col_blocks.limit_problem(spec, limits.workspace)


def supports_grad_weight(spec: ConvSpec, limits: Limits = NO_LIMITS) -> str | None:
    if limits.workspace is None:
        return None
    need = im2col_blocks.min_workspace(spec) + _accumulator_bytes(spec)
    if limits.workspace >= need:
        return None
    return (f"workspace_limit={limits.workspace} is below the {need} bytes of its smallest block for this layer "
            f"(one output row of one image, and its sums of the weights' gradient); pass workspace_limit >= {need} "
            f"or None")


def _blocks(backend: Backend, spec: ConvSpec, workers: int, limit: int | None) -> list[im2col_blocks.Block]:
    return im2col_blocks.plan(spec, backend.scheduler.block_budget(spec), workers, spec.itemsize, limit=limit)


#: grad_input's GEMM per image has OH·OW columns; below this many, several images share one GEMM (their dL/dy side
#: by side): enough to reach :data:`WIDE_COLUMNS` columns where the batch has them, evened out over the batch (a GEMM
#: of 49 columns ran at half the rate of one of 196 or 392: benchmarks/gemm_shapes.py, CPU_NOTES.md, 2026-12-07)
NARROW_COLUMNS = 128
WIDE_COLUMNS = 256


def _images_per_gemm(spec: ConvSpec) -> int:
    """How many images share one GEMM of grad_input: 1, or (groups of 1, narrow images) an even share of the batch,
    at least :data:`WIDE_COLUMNS` columns together where the batch has that many."""
    p = spec.oh * spec.ow
    if spec.groups > 1 or p >= NARROW_COLUMNS:
        return 1
    rounds = -(-spec.n // -(-WIDE_COLUMNS // p))  # groups of images
    return -(-spec.n // rounds)


def _slices(spec: ConvSpec, budget: int | None, workers: int) -> list[tuple[int, int, int, int]]:
    """Blocks ``(n0, n1, c0, c1)`` of grad_input without a limit: images ``n0..n1`` (one, or
    :func:`_images_per_gemm` of them) and a slice of their input channels (whole groups where G > 1), whose
    columns fit ``budget``, at least ``workers`` of them where there are enough channels. Blocks write disjoint
    planes of dL/dx, so all run at once."""
    units, per_unit = (spec.c, 1) if spec.groups == 1 else (spec.groups, spec.cg)  # channels, or groups
    nb = _images_per_gemm(spec)
    images = [(n0, min(n0 + nb, spec.n)) for n0 in range(0, spec.n, nb)]
    unit_bytes = nb * per_unit * spec.kh * spec.kw * spec.oh * spec.ow * spec.itemsize
    slices = -(-units * unit_bytes // budget) if budget else 1
    slices = min(units, max(slices, -(-workers // len(images))))
    while slices < units and len(images) * slices % workers:  # whole rounds of the workers
        slices += 1
    bounds = [units * i // slices for i in range(slices + 1)]
    return [(n0, n1, u0 * per_unit, u1 * per_unit) for n0, n1 in images for u0, u1 in itertools.pairwise(bounds)
            if u1 > u0]


def _with_bias(dx: Any, bias: Any, out: Any) -> Any:
    """dL/dx plus the transposed convolution's ``bias`` (C,) where given, delivered into ``out``."""
    if bias is not None:
        dx += bias.reshape(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1)
    return deliver(dx, out)


def _prepare_grad_input(backend: Col2imKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    g, crs, kg, rs, p = spec.groups, _crs(spec), spec.kg, spec.kh * spec.kw, spec.oh * spec.ow
    workers = backend.scheduler.workers()
    xp = backend.xp
    if limits.workspace is None and backend.scheduler.blocks:
        slices = _slices(spec, backend.scheduler.block_budget(spec), workers)

        nb = max(n1 - n0 for n0, n1, _, _ in slices)
        wide = nb > 1  # images side by side in each GEMM (G = 1)

        def run_slices(gy: Any, w: Any, bias: Any, out: Any) -> Any:
            wt = w.reshape(g, kg, crs).transpose(0, 2, 1)  # (K, C/G, R, S) -> (G, C/G·R·S, K/G)
            gy = xp.ascontiguousarray(gy)
            dx = xp.zeros((spec.n, spec.c, spec.height, spec.width), dtype=gy.dtype)

            def slice_block(part: tuple[int, int, int, int]) -> None:
                n0, n1, c0, c1 = part
                if wide:  # rows of W^T for channels c0..c1, (CB·R·S, K), times the images' dL/dy side by side
                    # (NB, K, OH, OW) -> (NB, K, OH·OW) -> (K, NB, OH·OW), a copy -> (K, NB·OH·OW)
                    side = xp.ascontiguousarray(gy[n0:n1].reshape(n1 - n0, spec.k, p).transpose(1, 0, 2))
                    cols = backend.matmul(wt[0, c0 * rs: c1 * rs], side.reshape(spec.k, (n1 - n0) * p), scratch=True)
                    backend.col2im_part(cols[None], dx, spec, n0, 0, channels=(c0, c1), images=n1 - n0)
                    return
                if g == 1:  # rows of W^T for channels c0..c1: (C·R·S, K) -> (CB·R·S, K), times (K, OH·OW)
                    cols = backend.matmul(wt[0, c0 * rs: c1 * rs], gy[n0].reshape(spec.k, p), scratch=True)
                else:  # whole groups g0..g1: (GB, C/G·R·S, K/G) @ (GB, K/G, OH·OW) -> (GB, C/G·R·S, OH·OW)
                    g0, g1 = c0 // spec.cg, c1 // spec.cg
                    cols = backend.matmul(wt[g0:g1], gy[n0].reshape(g, kg, p)[g0:g1], scratch=True)
                backend.col2im_part(cols.reshape(1, -1, p), dx, spec, n0, 0, channels=(c0, c1))

            backend.scheduler.run_blocks(slice_block, slices)
            return _with_bias(dx, bias, out)

        most = max((n1 - n0) * (c1 - c0) for n0, n1, c0, c1 in slices)
        in_flight = min(workers, len(slices))
        side = nb * spec.k * p if wide else 0  # a block's copy of its images' dL/dy
        return Prepared(run_slices, ("matmul", "col2im_part"), (most * rs * p + side) * spec.itemsize * in_flight)
    # under a workspace limit (or on a backend without blocks): im2col's blocks of images or bands of rows
    blocks = _blocks(backend, spec, workers, limits.workspace)
    if any((p.k0, p.k1) != (0, spec.k) for p in blocks):  # slices of the output channels: all K are needed
        blocks = [im2col_blocks.Block(0, spec.n, 0, spec.oh, 0, spec.k)]
    bands = any((p.o0, p.o1) != (0, spec.oh) for p in blocks)

    def run(gy: Any, w: Any, bias: Any, out: Any) -> Any:
        wt = w.reshape(g, kg, crs).transpose(0, 2, 1)  # (K, C/G, R, S) -> (G, C/G·R·S, K/G)
        dx = xp.zeros((spec.n, spec.c, spec.height, spec.width), dtype=gy.dtype)

        def block(part: im2col_blocks.Block) -> None:
            n0, n1, o0, o1, _, _ = part
            nb, pb = n1 - n0, (o1 - o0) * spec.ow
            # (NB, K, OB, OW) band of dL/dy -> (NB, G, K/G, OB·OW): the rows of a band are adjacent, so a view
            gyb = gy[n0:n1, :, o0:o1].reshape(nb, g, kg, pb)
            cols = backend.matmul(wt, gyb, scratch=len(blocks) > 1)  # -> (NB, G, C/G·R·S, OB·OW)
            backend.col2im_part(cols.reshape(nb, g * crs, pb), dx, spec, n0, o0)  # -> (NB, C·R·S, OB·OW)

        if len(blocks) == 1 or bands:
            for part in blocks:
                block(part)
        else:
            backend.scheduler.run_blocks(block, blocks, im2col_blocks.in_flight(spec, workers, spec.itemsize,
                                                                          limit=limits.workspace))
        return _with_bias(dx, bias, out)

    most = max((n1 - n0) * (o1 - o0) for n0, n1, o0, o1, _, _ in blocks)
    in_flight = 1 if len(blocks) == 1 or bands else min(len(blocks), workers)
    cols_bytes = most * spec.c * spec.kh * spec.kw * spec.ow * spec.itemsize
    return Prepared(run, ("matmul", "col2im_part"), cols_bytes * in_flight)


def _prepare_grad_weight(backend: Im2colKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    g, crs, kg = spec.groups, _crs(spec), spec.kg
    limit, acc = limits.workspace, _accumulator_bytes(spec)
    parts = backend.scheduler.workers()
    while limit is not None and parts > 1 and limit - parts * acc < im2col_blocks.min_workspace(spec):
        parts -= 1  # fewer accumulators (and blocks in flight) where the limit holds fewer
    blocks = _blocks(backend, spec, parts, None if limit is None else limit - parts * acc)
    parts = min(parts, len(blocks))
    shares = [blocks[len(blocks) * i // parts: len(blocks) * (i + 1) // parts] for i in range(parts)]
    xp = backend.xp

    sliced = len(blocks) > 1 and all((k0, k1) != (0, spec.k) for *_, k0, k1 in blocks)  # disjoint rows of dL/dw
    scratch = parts > 1 or len(blocks) > 1  # reused buffers when the call has more than one block

    # the GEMM as cols @ dL/dy^T, its transposed operand the small one, runs faster than dL/dy @ cols^T, but its
    # result (dL/dw)^T must be transposed back: that copy costs more than it saves on few pixels (the threshold
    # and its measurements: benchmarks/CPU_NOTES.md, "Figures from code comments")
    transposed = spec.n * spec.oh * spec.ow >= 1024

    def add_block(x: Any, gy: Any, part: im2col_blocks.Block, target: Any, first: bool) -> None:
        """dL/dw of one block into ``target`` (its rows of dL/dw, (G, KB/G, C/G·R·S), or with ``transposed`` its
        columns of (dL/dw)^T, (G, C/G·R·S, KB/G)), or added to it."""
        n0, n1, o0, o1, k0, k1 = part
        nb, p, kb = n1 - n0, (o1 - o0) * spec.ow, (k1 - k0) // g
        cols = backend.im2col_part(x, spec, n0, n1, o0, o1, reuse=scratch)
        cols = cols.reshape(nb, g, crs, p)  # (NB, C·R·S, OB·OW) -> (NB, G, C/G·R·S, OB·OW)
        if (k0, k1) == (0, spec.k):
            gyb = gy[n0:n1, :, o0:o1].reshape(nb, g, kg, p)  # (NB, K, OB, OW) band -> (NB, G, K/G, OB·OW): a view
        else:  # a slice of the output channels (G = 1, all rows)
            gyb = gy[n0:n1, k0:k1].reshape(nb, 1, kb, p)
        if nb > 1 and kb > p:  # the images' products outweigh their columns: one GEMM over images and pixels
            cols = xp.ascontiguousarray(cols.transpose(1, 2, 0, 3)).reshape(1, g, crs, nb * p)  # (G, C/G·R·S, NB·P)
            gyb = xp.ascontiguousarray(gyb.transpose(1, 2, 0, 3)).reshape(1, g, kb, nb * p)  # (G, KB/G, NB·P)
            nb = 1
        # (NB, G, C/G·R·S, P) @ (NB, G, P, KB/G), or (NB, G, KB/G, P) @ (NB, G, P, C/G·R·S)
        a, b = (cols, gyb.transpose(0, 1, 3, 2)) if transposed else (gyb, cols.transpose(0, 1, 3, 2))
        if first and nb == 1 and backend.is_c_contiguous(target):
            backend.matmul(a, b, out=target[None])
            return
        prod = backend.matmul(a, b, scratch=scratch)
        summed = prod.sum(axis=0) if nb > 1 else prod[0]
        if first:
            target[...] = summed
        else:
            target += summed

    shape = (g, crs, kg) if transposed else (g, kg, crs)

    def run(x: Any, gy: Any, bias: Any, out: Any) -> Any:
        x = xp.ascontiguousarray(x)
        if sliced:  # each block writes its own output channels (G = 1): no sums to add up
            total = xp.empty(shape, dtype=x.dtype)

            def block(part: im2col_blocks.Block) -> None:
                k0, k1 = part.k0, part.k1
                add_block(x, gy, part, total[:, :, k0:k1] if transposed else total[:, k0:k1], True)

            backend.scheduler.run_blocks(block, blocks)
        else:
            sums = [xp.empty(shape, dtype=x.dtype) for _ in range(parts)]

            def share(i: int) -> None:
                for j, part in enumerate(shares[i]):
                    add_block(x, gy, part, sums[i], j == 0)

            if parts == 1:
                share(0)
            else:
                backend.scheduler.run_blocks(share, list(range(parts)), parts)
            total = sums[0]
            for more in sums[1:]:
                total += more
        if transposed:  # (G, C/G·R·S, K/G) -> (G, K/G, C/G·R·S), a copy
            total = xp.ascontiguousarray(total.transpose(0, 2, 1))
        return deliver(total.reshape(spec.k, spec.cg, spec.kh, spec.kw), out)  # (G, K/G, C/G·R·S) -> (K, C/G, R, S)

    most = max((n1 - n0) * (o1 - o0) for n0, n1, o0, o1, _, _ in blocks)
    cols_bytes = most * spec.c * spec.kh * spec.kw * spec.ow * spec.itemsize
    return Prepared(run, ("im2col_part", "matmul"), parts * (cols_bytes + acc))


GRAD_INPUT = PassImpl(_prepare_grad_input, supports_grad_input, needs=("col2im",))
GRAD_WEIGHT = PassImpl(_prepare_grad_weight, supports_grad_weight, needs=("im2col",))
