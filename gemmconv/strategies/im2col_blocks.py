"""im2col's blocks: how a convolution's column matrices are cut (images, bands of output rows, slices of output
channels), what a workspace limit allows, and the blocked GEMM shared by ``im2col``, its backward passes and the
strided ``1x1``.

The work is cut into blocks whose column matrix fits the ``block_bytes`` of the backend's scheduler and, when
given, the workspace limit shared by the blocks that run at once. Each block is packed, multiplied straight
into its part of the output and given its bias while still in cache (for deep layers on small images the blocks
are slices of the output channels instead); the backend runs the blocks on its workers (on the CPU each block's
whole pipeline stays on one core). A scheduler that does not cut work into blocks (the GPU's) and no limit runs
the whole problem as one block. Where the weights are small beside the output, the bias rides the GEMM instead
(a column of the weights against a row of ones; see :func:`folds_bias`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from ..backends.base import Backend
from ..core.spec import ConvSpec
from ._common import channel_slices, split

__all__ = ["Block", "Decisions", "block_workspace", "decide", "folds_bias", "gemm_blocks", "in_flight", "limit_problem",
           "memo_decisions", "min_workspace", "plan"]

class Block(NamedTuple):
    """One block of im2col's GEMM: images ``n0:n1``, output rows ``o0:o1`` and output channels ``k0:k1``."""

    n0: int
    n1: int
    o0: int
    o1: int
    k0: int
    k1: int


def _charges(spec: ConvSpec, itemsize: int, fold_bias: bool) -> tuple[int, int]:
    """Bytes ``(fixed, row)`` charged to a workspace limit: besides the blocks, the input rows the kernel's
    extent adds to a band and the widened weights; per output row of one image, its columns, its
    GEMM product and the input rows it reads."""
    crs = spec.c * spec.kh * spec.kw + fold_bias
    fixed = spec.c * min(spec.ekh, spec.height) * spec.width * itemsize + fold_bias * spec.k * crs * itemsize
    row = ((crs + spec.k) * spec.ow + spec.c * min(spec.sh, spec.ekh) * spec.width) * itemsize
    return fixed, row


def min_workspace(spec: ConvSpec, fold_bias: bool = False, pads_zeros: bool = True) -> int:
    """The smallest ``workspace_limit`` im2col can keep to for ``spec``: one block of one output row. Unless
    the strategy pads with zeros itself (``pads_zeros``; never for other padding modes), it sees the
    input padded explicitly."""
    if spec.pads_explicitly(pads_zeros):
        spec = spec.without_padding()
    fixed, row = _charges(spec, spec.itemsize, fold_bias)
    return fixed + row


def limit_problem(spec: ConvSpec, limit: int | None, pads_zeros: bool = True) -> str | None:
    """Why a workspace ``limit`` is too small for an im2col block of ``spec`` (also the strided 1x1's), or None."""
    if limit is None:
        return None
    need = min_workspace(spec, pads_zeros=pads_zeros)
    if limit >= need:
        return None
    return (f"workspace_limit={limit} is below the {need} bytes of its smallest block for this layer (one "
            f"output row of one image, with the input rows it reads); pass workspace_limit >= {need} or None")


def in_flight(spec: ConvSpec, workers: int, itemsize: int, fold_bias: bool = False, limit: int | None = None) -> int:
    """How many blocks run at once: one per worker, fewer where the workspace ``limit`` holds fewer
    one-row blocks (so that the limit holds)."""
    if limit is None:
        return workers
    fixed, row = _charges(spec, itemsize, fold_bias)
    return max(1, min(workers, (limit - fixed) // row))


def plan(spec: ConvSpec, budget: int | None, workers: int, itemsize: int, fold_bias: bool = False,
         limit: int | None = None) -> list[Block]:
    """:class:`Block` s of images, output rows and output channels; one block when
    nothing asks to cut.

    ``budget`` bounds a block's bytes: its columns, its GEMM product and the input rows its band
    reads; at least ``workers`` blocks where the work allows. Where the weights outweigh the
    columns of the whole batch and those fit one block (deep layers on small images: 9.4 MB of
    weights against 0.9 MB of columns at 512 channels, 7², N=1), the workers split the output
    channels instead: each packs the (few) columns itself and reads only its slice of the weights,
    where bands of rows would each stream all of them. With ``fold_bias`` (:func:`folds_bias`) the
    columns have a row of ones more, and the widened weights count against a workspace ``limit``,
    which the blocks in flight (:func:`in_flight`) share.
    """
    crs = spec.c * spec.kh * spec.kw + fold_bias
    fixed, row_bytes = _charges(spec, itemsize, fold_bias)
    if limit is not None:  # shared by the blocks in flight, less the kernel's halo of input rows and widened weights
        workers = in_flight(spec, workers, itemsize, fold_bias, limit)
        share = max(1, (limit - fixed) // workers)
        budget = share if budget is None else min(budget, share)
    if budget is None:
        return [Block(0, spec.n, 0, spec.oh, 0, spec.k)]
    image_bytes = spec.oh * row_bytes
    batch_bytes = spec.n * image_bytes
    if (workers > 1 and spec.groups == 1 and spec.k >= 16 * workers and budget // 16 < batch_bytes <= budget
            and spec.k * crs >= spec.n * crs * spec.oh * spec.ow):
        return [Block(0, spec.n, 0, spec.oh, k0, k1) for k0, k1 in channel_slices(spec.k, workers)]
    if image_bytes <= budget and (spec.n >= workers or limit is not None):  # whole images per block
        return [Block(n0, n1, 0, spec.oh, 0, spec.k) for n0, n1 in split(spec.n, image_bytes, budget, workers)]
    return [Block(n, n + 1, o0, o1, 0, spec.k) for n in range(spec.n)
            for o0, o1 in split(spec.oh, row_bytes, budget, workers)]


def folds_bias(spec: ConvSpec, b: Any | None, limit: int | None = None) -> bool:
    """Whether the GEMM adds the bias: the weights widened by a last column, the bias, against a last
    row of ones in the columns. Where the weights are small beside the output (1x1 and stem layers),
    copying them once per call costs less than a pass of its own over the output (measured: CPU_NOTES.md);
    groups of 1 only, and under a workspace ``limit`` only where
    the widened weights take at most an eighth of it (:func:`plan` counts them) and it still holds a
    block of one row."""
    crs = spec.c * spec.kh * spec.kw
    return (b is not None and spec.groups == 1 and 8 * (crs + 1) <= spec.n * spec.oh * spec.ow
            and (limit is None or (8 * spec.k * (crs + 1) * 8 <= limit  # 8-byte items at most
                                   and min_workspace(spec, fold_bias=True) <= limit)))


def gemm_blocks(backend: Backend, x: Any, w: Any, b: Any, spec: ConvSpec, blocks: list[Block],
                columns: Callable[[int, int, int, int], Any], fold_bias: bool = False,
                workers: int | None = None, out: Any = None) -> Any:
    """The convolution block by block: ``columns(n0, n1, o0, o1)`` gives a block's column matrices
    (NB, C·R·S, OB·OW), each multiplied (by the block's slice of the weights) straight into its
    part of the output (``out``, or a fresh array), plus the bias, on the backend's workers (shared
    with the ``1x1`` strategy, whose columns are the input itself). With ``fold_bias`` (see
    :func:`folds_bias`) the columns have a last row of ones, (NB, C·R·S + 1, OB·OW), and the GEMM
    adds the bias. At most ``workers`` blocks run at once (default: the backend's workers).
    """
    g, crs = spec.groups, spec.cg * spec.kh * spec.kw
    if fold_bias:  # G = 1
        wk = backend.xp.concatenate([w.reshape(spec.k, crs), b.reshape(spec.k, 1)], axis=1)  # (K, C·R·S | 1)
        wm, bias, crs = wk.reshape(1, spec.k, crs + 1), None, crs + 1  # -> (1, K, C·R·S + 1)
    else:
        wm = w.reshape(g, spec.kg, crs)  # (K, C/G, R, S) -> (G, K/G, C/G·R·S)
        bias = None if b is None else b.reshape(g, spec.kg, 1)  # (K,) -> (G, K/G, 1)
    y = backend.xp.empty(spec.out_shape, dtype=x.dtype) if out is None else out

    def block(part: Block) -> None:
        n0, n1, o0, o1, k0, k1 = part
        cols = columns(n0, n1, o0, o1)  # (NB, C·R·S, OB·OW)
        cols = cols.reshape(n1 - n0, g, crs, (o1 - o0) * spec.ow)  # -> (NB, G, C/G·R·S, OB·OW)
        if (k0, k1) == (0, spec.k):
            wk, bk = wm, bias
            # (NB, K, OB, OW) band of y -> (NB, G, K/G, OB·OW): rows of a band are adjacent, so this is a view
            yv = y[n0:n1, :, o0:o1].reshape(n1 - n0, g, spec.kg, (o1 - o0) * spec.ow)
        else:  # a slice of the output channels (G = 1, all rows: plan's channel split)
            wk, bk = wm[:, k0:k1], None if bias is None else bias[:, k0:k1]  # (1, KB, C·R·S), (1, KB, 1)
            # (NB, KB, OH, OW) channels of y -> (NB, 1, KB, OH·OW): whole planes, so this is a view
            yv = y[n0:n1, k0:k1].reshape(n1 - n0, 1, k1 - k0, spec.oh * spec.ow)
        backend.matmul(wk, cols, out=yv)  # (G, KB/G, C/G·R·S) @ (NB, G, C/G·R·S, OB·OW) -> (NB, G, KB/G, OB·OW)
        if bk is not None:
            yv += bk

    backend.scheduler.run_blocks(block, blocks, workers)
    return y


class Decisions(NamedTuple):
    """What a prepared im2col (or strided 1x1) decided for a bias or none and a worker count."""

    fold: bool  #: whether the GEMM adds the bias (:func:`folds_bias`)
    blocks: list[Block]  #: the blocks (:func:`plan`)
    in_flight: int  #: how many run at once (:func:`in_flight`)
    whole: bool  #: one block of the whole problem on a backend without blocks (a GPU): one GEMM


def decide(backend: Backend, spec: ConvSpec, has_bias: bool, workers: int, limit: int | None = None,
           may_fold: bool = True) -> Decisions:
    """The blocks of ``spec`` on ``backend`` within a workspace ``limit``."""
    itemsize = spec.itemsize
    fold = may_fold and folds_bias(spec, True if has_bias else None, limit)
    blocks = plan(spec, backend.scheduler.block_budget(spec), workers, itemsize, fold, limit)
    whole = not backend.scheduler.blocks and blocks == [(0, spec.n, 0, spec.oh, 0, spec.k)]
    return Decisions(fold, blocks, in_flight(spec, workers, itemsize, fold, limit), whole)


def memo_decisions(backend: Backend, spec: ConvSpec, **kw: Any) -> Callable[[bool], Decisions]:
    """``decided(has_bias)``: :func:`decide` for the backend's worker count now, remembered per bias
    and worker count (the count follows the BLAS limit in force, which may change between calls)."""
    memo: dict[tuple[bool, int], Decisions] = {}

    def decided(has_bias: bool) -> Decisions:
        workers = backend.scheduler.workers()
        d = memo.get((has_bias, workers))
        if d is None:
            d = memo[(has_bias, workers)] = decide(backend, spec, has_bias, workers, **kw)
        return d

    return decided


def block_workspace(spec: ConvSpec, d: Decisions) -> int:
    """Bytes of the column matrices of the largest block, times the blocks in flight."""
    crs = spec.c * spec.kh * spec.kw + d.fold
    most = max((n1 - n0) * (o1 - o0) for n0, n1, o0, o1, _, _ in d.blocks)
    return most * crs * spec.ow * spec.itemsize * (1 if d.whole else min(d.in_flight, len(d.blocks)))
