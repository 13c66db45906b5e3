"""``winograd`` (F(4×4, 3×3)) and ``winograd_f2`` (F(2×2, 3×3)).

Input tiles are transformed by the backend kernel, multiplied by the cached
filter transform in one batched GEMM over the T² tile positions, and
transformed back by the backend kernel (which also crops and adds the bias);
the backend chooses the layouts (channels-last on the CPU, whose transforms
then run over vectors of channels).
The tiles are cut into blocks of tile rows (see :func:`plan`) that the
backend's scheduler runs on its workers, so that on the CPU a block's transformed
tiles and product stay in one core's cache between the three steps; a scheduler that
does not cut work into blocks (the GPU's) runs all tiles as one block.
"""

from __future__ import annotations

from typing import Any

from ..backends.kernels import WinogradKernels
from ..core.prepared import Prepared
from ..core.registry import GRAD_INPUT, GRAD_WEIGHT, PassImpl, Strategy
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from . import adjoint, winograd_grad
from ._common import channel_slices, split
from .filter_cache import FilterCache, Lookup
from .winograd_transforms import TRANSFORMS

#: transformed filters, shared by both tile sizes (the tile size is part of the key)
FILTER_CACHE = FilterCache()


def supports(spec: ConvSpec) -> str | None:
    if (spec.kh, spec.kw) != (3, 3):
        return f"needs a 3x3 kernel, got {spec.kh}x{spec.kw}"
    if (spec.sh, spec.sw) != (1, 1):
        return f"needs stride 1, got stride {(spec.sh, spec.sw)}"
    if (spec.dh, spec.dw) != (1, 1):
        return f"needs dilation 1, got dilation {(spec.dh, spec.dw)}"
    return None


def _filter_transform(backend: WinogradKernels, w: Any, spec: ConvSpec, m: int, cache: bool = True) -> Any:
    """``U = G g G^T`` in the backend's layout: a :class:`~.filter_cache.Lookup` to settle where the
    backend caches filters (and ``cache``), else the transform itself."""
    work = "float32" if spec.dtype == "float16" else "float64"
    g = backend.constant(f"winograd_g{m}", TRANSFORMS[m]["g"], work)
    if not (cache and backend.caches_filters):
        return backend.winograd_filter(w, spec, g, m)
    # the key's tag holds all else the transform depends on: the tile size and the groups (its layout)
    tag = ("winograd", m, spec.groups)
    return FILTER_CACHE.lookup(backend, w, tag, lambda w_: backend.winograd_filter(w_, spec, g, m))


def _checked(u: Any, spec: ConvSpec) -> Any:
    """The transform, checking a cached one against all the weights here."""
    return u.settle(u.matches(0, spec.k)) if isinstance(u, Lookup) else u


def plan(spec: ConvSpec, m: int, budget: int | None, workers: int, itemsize: int) -> list[tuple[int, int, int, int]]:
    """Blocks ``(r0, r1, k0, k1)``: tile rows ``r0:r1`` of the N·th rows, output channels ``k0:k1``.

    Every block multiplies by the filter transform U (T²·K·C/G floats). Where U outweighs all the
    transformed tiles and their product (deep layers on small images: 37.7 MB against 3.5 MB at
    512 channels, 7², N=8), the workers split the output channels, so each reads its slice of U
    once, after the (few) input tiles are transformed for all of them. Otherwise blocks are bands of tile rows
    whose transformed tiles and product (T²·(C + K) floats per tile) fit ``budget``, a multiple of
    ``workers`` of them.
    """
    th, tw = -(-spec.oh // m), -(-spec.ow // m)
    rows = spec.n * th
    if budget is None:
        return [(0, rows, 0, spec.k)]
    t2 = (m + 2) ** 2
    row_bytes = t2 * (spec.c + spec.k) * tw * itemsize
    u_bytes = t2 * spec.k * spec.cg * itemsize
    if workers > 1 and spec.groups == 1 and u_bytes >= rows * row_bytes and u_bytes + rows * row_bytes > budget // 16:
        return [(0, rows, k0, k1) for k0, k1 in channel_slices(spec.k, workers)]
    return [(r0, r1, 0, spec.k) for r0, r1 in split(rows, row_bytes, budget, workers)]


def _run(backend: WinogradKernels, x: Any, w: Any, b: Any, spec: ConvSpec, m: int,
         blocks: list[tuple[int, int, int, int]], out: Any, cache: bool = True) -> Any:
    t = m + 2
    th, tw = -(-spec.oh // m), -(-spec.ow // m)
    found = _filter_transform(backend, w, spec, m, cache)  # U, or a cache lookup still to check
    if len(blocks) == 1:
        u = _checked(found, spec)
        v = backend.winograd_input(x, spec, m, th, tw, reuse=True)  # all N·th·tw tiles
        mt = backend.winograd_multiply(u, v, spec, m, 0, spec.k, reuse=True)
        return backend.winograd_output(mt, b, spec, m, th, tw, out=out)
    xp = backend.xp
    x = xp.ascontiguousarray(x)  # once, not per block
    out = xp.empty(spec.out_shape, dtype=x.dtype) if out is None else out
    shared = None  # all tile rows' input tiles, where the blocks split the output channels
    u_ref = [found]  # the filter transform, once checked

    def block(part: tuple[int, int, int, int]) -> None:
        r0, r1, k0, k1 = part
        v = shared if shared is not None else backend.winograd_input_rows(x, spec, m, th, tw, r0, r1, reuse=True)
        mt = backend.winograd_multiply(u_ref[0], v, spec, m, k0, k1, reuse=True)  # KB < K only when G = 1
        backend.winograd_output_rows(mt, b, out, spec, m, th, tw, r0, k0)

    if not all((r0, r1) == (0, spec.n * th) for r0, r1, _, _ in blocks):  # bands of tile rows
        u_ref[0] = _checked(found, spec)
        backend.scheduler.run_blocks(block, blocks, backend.scheduler.workers())
        return out

    # blocks of output channels share all the tile rows: first transform the input once, each worker
    # taking a slice of the input channels and checking a slice of the cached filter's weights (deep
    # layers: 2 x 9.4 MB read at 512 channels), then the blocks, in one hand-out
    shared = backend.winograd_tiles(t, spec.c, spec.n * th * tw, x.dtype)  # the N·th·tw tiles of all channels
    parts = backend.scheduler.workers()
    matched = [True] * parts

    def prepare(i: int) -> None:
        cs = (spec.c * i // parts, spec.c * (i + 1) // parts)
        backend.winograd_input_rows(x, spec, m, th, tw, 0, spec.n * th, channels=cs, out=shared)
        if isinstance(found, Lookup):
            matched[i] = found.matches(spec.k * i // parts, spec.k * (i + 1) // parts)

    def settle() -> None:
        if isinstance(found, Lookup):
            u_ref[0] = found.settle(all(matched))

    backend.scheduler.run_phases([(prepare, range(parts), settle), (block, blocks, None)])
    return out


def _prepare(backend: WinogradKernels, spec: ConvSpec, m: int, cache: bool = True) -> Prepared:
    """F(m x m, 3x3) prepared; ``cache``: keep the filter transforms in :data:`FILTER_CACHE` (the
    backward passes do not: their weights are made afresh for each call)."""
    itemsize = spec.itemsize
    memo: dict[int, list[tuple[int, int, int, int]]] = {}  # blocks per worker count

    def blocks_now() -> list[tuple[int, int, int, int]]:
        workers = backend.scheduler.workers()
        blocks = memo.get(workers)
        if blocks is None:
            blocks = memo[workers] = plan(spec, m, backend.scheduler.block_budget(spec), workers, itemsize)
        return blocks

    def run(x: Any, w: Any, b: Any, out: Any) -> Any:
        return _run(backend, x, w, b, spec, m, blocks_now(), out, cache)

    banded = len(blocks_now()) > 1
    kernels = (("winograd_filter", "winograd_input_rows", "winograd_multiply", "winograd_output_rows") if banded
               else ("winograd_filter", "winograd_input", "winograd_multiply", "winograd_output"))
    return Prepared(run, kernels, _workspace(spec, m, blocks_now(), backend.scheduler.workers(), itemsize))


def _workspace(spec: ConvSpec, m: int, blocks: list[tuple[int, int, int, int]], workers: int, itemsize: int) -> int:
    """Transformed tiles and their products of the largest block, times the blocks in flight (all the
    input tiles where the blocks split the output channels), and the filter transform."""
    t2, tw = (m + 2) ** 2, -(-spec.ow // m)
    u = t2 * spec.k * spec.cg * itemsize
    if len(blocks) == 1:
        tiles = spec.n * -(-spec.oh // m) * tw
        return u + t2 * (spec.c + spec.k) * tiles * itemsize
    rows = max(r1 - r0 for r0, r1, _, _ in blocks)
    return u + t2 * (spec.c + spec.k) * rows * tw * itemsize * min(workers, len(blocks))


def prepare_f4(backend: WinogradKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    return _prepare(backend, spec, 4)  # Winograd's workspace is not bounded yet: auto avoids it under a limit


def prepare_f2(backend: WinogradKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    return _prepare(backend, spec, 2)


def _grad_input(m: int) -> PassImpl:
    def prepare(backend: WinogradKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
        return _prepare(backend, spec, m, cache=False)

    return adjoint.grad_input_pass(prepare, supports, needs=("winograd",))


def run_f4(backend: WinogradKernels, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    return _prepare(backend, spec, 4)(x, w, b, None)


def run_f2(backend: WinogradKernels, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    return _prepare(backend, spec, 2)(x, w, b, None)


STRATEGY_F4 = Strategy(
    name="winograd",
    run=run_f4,
    prepare=prepare_f4,
    needs=("winograd",),
    supports=supports,
    backward={GRAD_INPUT: _grad_input(4), GRAD_WEIGHT: winograd_grad.grad_weight_pass(4, supports)},
    description="Winograd F(4x4, 3x3): 4x fewer multiplies than direct, more rounding error; "
    "3x3, stride 1, dilation 1",
)
STRATEGY_F2 = Strategy(
    name="winograd_f2",
    run=run_f2,
    prepare=prepare_f2,
    needs=("winograd",),
    supports=supports,
    backward={GRAD_INPUT: _grad_input(2), GRAD_WEIGHT: winograd_grad.grad_weight_pass(2, supports)},
    description="Winograd F(2x2, 3x3): 2.25x fewer multiplies than direct, error close to direct's; "
    "3x3, stride 1, dilation 1",
)
