"""Winograd's gradient with respect to the weights: F(3x3, m x m), the forward transforms in other roles.

For a 3x3 stride-1 layer, dL/dw is the correlation of the input with dL/dy, whose m x m tiles (the forward's
output tiles) play the filter and the 3x3 gradient the output. By the transposition principle the forward's
identity ``y = A^T [(G g) ⊙ (B^T d)]`` gives ``dL/dg = G^T [(A dy) ⊙ (B^T d)]`` (in 2-D
``G^T [(A dy A^T) ⊙ (B^T d B)] G``), with the same ``A``, ``B``, ``G``:

- the input tiles ``B^T d B`` are the forward's (the backend's ``winograd_input`` kernel);
- dL/dy's tiles ``A dy A^T`` are one GEMM ``(A ⊗ A) @ tiles`` (:meth:`~..backends.kernels.WinogradKernels.
  winograd_grad_tiles`);
- per tile element, the products summed over all tiles are one batched GEMM over the T² elements
  (``winograd_weight_multiply``), ``(T², G, K/G, C/G)``;
- and, the sum being linear, one output transform of that sum: ``M^T @ (G ⊗ G)``, (K·C/G, T²) @ (T², 9).

Against im2col's ``dL/dy @ cols^T`` (9·16 multiplies per tile of 4x4 and channel pair) it does T² = 36 (F(4x4))
or 16 (F(2x2)), and no column matrix; its sum is T²·K·C/G per worker, so it pays where the tiles are many
against the channels (``auto``'s rule: :data:`..auto.GRAD_WEIGHT_WINOGRAD_TILES`, measured).

On a backend that cuts work into blocks, the N·th tile rows are cut into bands (a block's worth of tiles, or
twice the sum where that is larger) run one after the other on the calling thread, summing into one
accumulator, each GEMM on the BLAS's own threads: that measured faster than bands on the workers with a
single-threaded BLAS each, whose T² sums would each have to be added up (benchmarks/CPU_NOTES.md,
"Figures from code comments"). NaN and Inf in the input reach every weight gradient of the
tiles they lie in (as Winograd's forward pass reaches every output of its tiles).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..backends.kernels import WinogradKernels
from ..core.prepared import Prepared
from ..core.registry import PassImpl
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from ._common import deliver, split
from .winograd_transforms import TRANSFORMS

__all__ = ["grad_weight_pass"]


def _constants(backend: WinogradKernels, spec: ConvSpec, m: int) -> tuple[Any, Any]:
    """``A ⊗ A`` (T², m²) in the gradient's precision (A's entries are small integers: exact) and ``G ⊗ G``
    (T², 9) in the working precision of the sums (float32 for float16)."""
    work = "float32" if spec.dtype == "float16" else spec.dtype
    a = TRANSFORMS[m]["at"].T  # (T, m)
    g = TRANSFORMS[m]["g"]  # (T, 3)
    aa = backend.constant(f"winograd_aa{m}", np.kron(a, a), spec.dtype)  # host matrices, made once per device
    gg = backend.constant(f"winograd_gg{m}", np.kron(g, g), work)
    return aa, gg


def _padded(xp: Any, gy: Any, m: int, th: int, tw: int) -> Any:
    """dL/dy (N, K, OH, OW) with zeros to whole tiles, (N, K, th·m, tw·m); itself where it has them."""
    n, k, oh, ow = gy.shape
    if (oh, ow) == (th * m, tw * m):
        return xp.ascontiguousarray(gy)
    gp = xp.zeros((n, k, th * m, tw * m), dtype=gy.dtype)
    gp[:, :, :oh, :ow] = gy
    return gp


def _weights(total: Any, gg: Any, spec: ConvSpec) -> Any:
    """``G^T M G`` of the summed products ``total`` (T², G, K/G, C/G) as one GEMM, (K·C/G, T²) @ (T², 9)."""
    t2 = total.shape[0]
    dw = total.reshape(t2, -1).T.astype(gg.dtype, copy=False) @ gg  # (T², G·K/G·C/G) -> (K·C/G, T²) @ (T², 9)
    return dw.reshape(spec.k, spec.cg, 3, 3).astype(spec.dtype, copy=False)  # (K·C/G, 9) -> (K, C/G, 3, 3)


def _bands(backend: WinogradKernels, spec: ConvSpec, m: int, th: int, tw: int) -> list[tuple[int, int]]:
    """Bands of the N·th tile rows whose input and gradient tiles (T²·(C + K) per tile) fit a block, or twice the
    sum they are added to (T²·K·C/G), where that is larger: each band's product costs a pass over the sum."""
    rows = spec.n * th
    budget = backend.scheduler.block_budget(spec)
    if budget is None or rows == 0:
        return [(0, rows)]
    t2 = (m + 2) ** 2
    row_bytes = t2 * (spec.c + spec.k) * tw * spec.itemsize
    return split(rows, row_bytes, max(budget, 2 * t2 * spec.k * spec.cg * spec.itemsize), 1)


def _prepare(backend: WinogradKernels, spec: ConvSpec, m: int) -> Prepared:
    xp, t2 = backend.xp, (m + 2) ** 2
    th, tw = -(-spec.oh // m), -(-spec.ow // m)
    aa, gg = _constants(backend, spec, m)
    bands = _bands(backend, spec, m, th, tw)
    sum_shape = (t2, spec.groups, spec.kg, spec.cg)

    def add_band(x: Any, gp: Any, band: tuple[int, int], total: Any, first: bool) -> None:
        r0, r1 = band
        if len(bands) == 1:  # all the tiles at once (a backend without blocks, or a small layer)
            v = backend.winograd_input(x, spec, m, th, tw)
        else:
            v = backend.winograd_input_rows(x, spec, m, th, tw, r0, r1, reuse=True)
        u = backend.winograd_grad_tiles(gp, spec, m, th, tw, r0, r1, aa)
        if first:
            backend.winograd_weight_multiply(u, v, spec, m, out=total)
        else:
            total += backend.winograd_weight_multiply(u, v, spec, m, reuse=True)

    def run(x: Any, gy: Any, bias: Any, out: Any) -> Any:
        x = xp.ascontiguousarray(x)
        gp = _padded(xp, gy, m, th, tw)
        total = xp.empty(sum_shape, dtype=x.dtype)
        for i, band in enumerate(bands):  # on this thread, each GEMM on the BLAS's threads
            add_band(x, gp, band, total, i == 0)
        return deliver(_weights(total, gg, spec), out)

    most = max(r1 - r0 for r0, r1 in bands)
    padding = 0 if (spec.oh, spec.ow) == (th * m, tw * m) else spec.n * spec.k * th * m * tw * m
    tiles = t2 * (spec.c + spec.k) * most * tw
    inputs = "winograd_input" if len(bands) == 1 else "winograd_input_rows"
    return Prepared(run, (inputs, "winograd_grad_tiles", "winograd_weight_multiply"),
                    (tiles + t2 * spec.k * spec.cg + padding) * spec.itemsize)


def grad_weight_pass(m: int, supports: Callable[[ConvSpec], str | None]) -> PassImpl:
    """Winograd F(3x3, m x m)'s grad_weight, for the layers ``supports`` accepts (3x3, stride 1, dilation 1)."""

    def prepare(backend: WinogradKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
        return _prepare(backend, spec, m)  # its workspace is not bounded: auto avoids it under a limit

    return PassImpl(prepare, supports, needs=("winograd",))
