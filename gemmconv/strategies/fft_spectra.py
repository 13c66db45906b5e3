"""What the three passes of ``fft`` share (:mod:`.fft` describes them): the tiling (overlap-save) and the cost model
that picks its transform length, the tiles, the weights' spectra and their cache, the channel mixing per frequency
and the reassembly of the kept outputs."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..backends.kernels import FFTKernels
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from .filter_cache import FilterCache

__all__ = [
    "LONGEST",
    "SPECTRA_CACHE",
    "Tiling",
    "batched_matmul",
    "correlate",
    "is_real",
    "kernel_spectrum",
    "padded_lengths",
    "part_itemsize",
    "spectra_bytes",
    "supports",
    "tiles_of",
    "tiling",
    "trailing",
    "untile",
]

#: the weights' spectra in the mixing's layout, keyed by the weights and everything that sets them (pass, transform
#: lengths, groups, dilation); checked against a copy of the weights on every hit
SPECTRA_CACHE = FilterCache(max_entries=32, max_bytes=256 << 20)
_COMPLEX_ITEMSIZE = {"float16": 8, "float32": 8, "float64": 16, "complex64": 8, "complex128": 16}

#: the cost model's constants, fitted by benchmarks/fft_tiles_fit.py (non-negative least squares on the relative
#: error of timings of 16 layers, each at every candidate length; benchmarks/CPU_NOTES.md): flops of the transforms
#: and of the mixing GEMMs per second, and bytes of spectra moved per second
FFT_FLOPS, MIX_FLOPS, SPECTRA_BYTES = 1.1e10, 5.0e10, 1.66e10


def written(xp: Any, y: Any, out: Any | None) -> Any:
    """``y`` (a view) as a fresh C-contiguous array, or copied into ``out``."""
    if out is None:
        return xp.ascontiguousarray(y)
    out[...] = y
    return out


def trailing(slices: list[slice]) -> tuple[Any, ...]:
    """An index of the trailing (spatial) axes: ``(..., *slices)``."""
    return (Ellipsis, *slices)


def is_real(spec: ConvSpec) -> bool:
    return not spec.dtype.startswith("complex")


def part_itemsize(spec: ConvSpec) -> int:
    """Bytes of one real number of ``spec``'s dtype (of each part of a complex one)."""
    return spec.itemsize if is_real(spec) else spec.itemsize // 2


def padded_lengths(spec: ConvSpec) -> tuple[int, ...]:
    return tuple(s + a + b for s, (a, b) in zip(spec.size, spec.padding, strict=True))


@dataclass(frozen=True)
class Tiling:
    """Overlap-save along every spatial axis: ``count`` tiles of ``length`` positions (the transform's length), each
    keeping ``step`` = ``length - extent + 1`` outputs (``extent``: the correlated kernel's)."""

    length: tuple[int, ...]
    step: tuple[int, ...]
    count: tuple[int, ...]
    extent: tuple[int, ...]
    real: bool
    #: the cost model's estimate of one call, in seconds
    seconds: float = 0.0

    @property
    def half(self) -> tuple[int, ...]:
        """The spectrum's lengths: the last axis ``length // 2 + 1`` for a real transform."""
        return (*self.length[:-1], self.length[-1] // 2 + 1) if self.real else self.length

    @property
    def tiles(self) -> int:
        return math.prod(self.count)

    @property
    def frequencies(self) -> int:
        return math.prod(self.half)

    @property
    def reach(self) -> tuple[int, ...]:
        """Positions of the signal the tiles read, per axis."""
        return tuple((c - 1) * s + n for c, s, n in zip(self.count, self.step, self.length, strict=True))


#: the longest transform the cost model may pick, None: no bound (the tests set it low, so that small inputs are cut
#: into many tiles)
LONGEST: int | None = None


def _candidates(backend: FFTKernels, extent: int, outputs: int, real: bool) -> list[int]:
    """Transform lengths worth costing along one axis: fast lengths from twice the extent to one tile of all the
    outputs (at most :data:`LONGEST`, but never below the extent)."""
    whole = backend.fast_length(outputs + extent - 1, real)
    wanted = [backend.fast_length(max(m * extent, 8), real) for m in (2, 3, 4, 6, 8, 12, 16)]
    wanted += [backend.fast_length(v, real) for v in (16, 32, 64, 128, 256, 512)]
    found = {t for t in wanted if extent <= t < whole} | {whole}
    if LONGEST is not None:
        top = max(LONGEST, extent)
        found = {t for t in found | set(range(extent, top + 1)) if t <= top}
    return sorted(found)


def tiling(backend: FFTKernels, outputs: tuple[int, ...], extent: tuple[int, ...], n: int, c_in: int, c_out: int,
           inner: int, real: bool, itemsize: int, summed: bool = False) -> Tiling:
    """The tiling of a correlation of ``n`` signals of ``c_in`` channels giving ``outputs`` positions of ``c_out``
    channels, with a kernel of ``extent`` and a mixing GEMM of depth ``inner`` per output: the transform length
    (the same on every axis, where the axis is long enough) that the cost model finds cheapest. It counts the
    transforms of every tile (n·(c_in + c_out) of them), the mixing GEMMs (c_out·inner complex
    products per tile and frequency) and the spectra moved (the tiles' twice, for the mixing's layout; the weights'
    once). ``itemsize`` is the real dtype's (4 for float32 and complex64). With ``summed`` (grad_weight) the mixing
    sums over the tiles and ``c_out·inner`` spectra are transformed back, not the tiles of ``c_out``."""
    per_axis = [_candidates(backend, e, o, real) for e, o in zip(extent, outputs, strict=True)]
    best: tuple[float, Tiling] | None = None
    for target in sorted({t for ts in per_axis for t in ts}):
        length = tuple(max([t for t in ts if t <= target] or [ts[0]]) for ts in per_axis)
        step = tuple(t - e + 1 for t, e in zip(length, extent, strict=True))
        count = tuple(-(-o // s) for o, s in zip(outputs, step, strict=True))
        tile = Tiling(length, step, count, extent, real)
        size = math.prod(length)
        transforms = n * (c_in + c_out) * tile.tiles + (c_out * inner if summed else 0)
        fft = 2.5 * size * math.log2(max(size, 2)) * transforms * (1 if real else 2)
        mix = 8 * c_out * inner * n * tile.tiles * tile.frequencies
        moved = (2 * transforms + c_out * inner) * tile.frequencies * 2 * itemsize
        cost = fft / FFT_FLOPS + mix / MIX_FLOPS + moved / SPECTRA_BYTES
        if best is None or cost < best[0]:
            best = (cost, tile)
    if best is None:  # never: every axis has a candidate (one tile of all its outputs)
        raise RuntimeError("fft: no transform length to choose from")
    return dataclasses.replace(best[1], seconds=best[0])


def pass_tiling(backend: FFTKernels, spec: ConvSpec, pass_: str) -> Tiling:
    """The tiling of pass ``pass_`` (``"forward"``, ``"grad_input"``, ``"grad_weight"``) of ``spec``: the forward
    pass correlates the padded input with the weights (every stride-1 output); grad_input correlates dL/dy spread
    with the weights, giving every position of the padded input; grad_weight cuts the spread dL/dy into tiles."""
    extent, real, part = spec.effective_kernel, is_real(spec), part_itemsize(spec)
    padded = padded_lengths(spec)
    if pass_ == "grad_input":
        return tiling(backend, padded, extent, spec.n, spec.k, spec.c, spec.kg, real, part)
    if pass_ == "grad_weight":
        spread = tuple((o - 1) * s + 1 for o, s in zip(spec.out_size, spec.stride, strict=True))
        return tiling(backend, spread, extent, spec.n, spec.c, spec.k, spec.cg, real, part, summed=True)
    every = tuple(p - e + 1 for p, e in zip(padded, extent, strict=True))
    return tiling(backend, every, extent, spec.n, spec.c, spec.k, spec.cg, real, part)


def spectra_bytes(spec: ConvSpec, tile: Tiling, c_in: int, c_out: int, n: int) -> int:
    """Temporaries of one pass, at most: the tiles' padded copy, the spectra of the tiles in and out (each once more
    in the mixing's layout) and the inverse transform's tiles."""
    signals = n * (c_in * math.prod(tile.reach) + c_out * tile.tiles * math.prod(tile.length))
    spectra = 2 * n * (c_in + c_out) * tile.tiles * tile.frequencies
    return signals * spec.itemsize + spectra * _COMPLEX_ITEMSIZE[spec.dtype]


def supports(spec: ConvSpec, limits: Limits = NO_LIMITS) -> str | None:
    """Every convolution, but for a workspace limit below its padded input's spectra (the tiles are all transformed
    at once)."""
    if limits.workspace is None:
        return None
    need = 2 * spec.n * spec.c * math.prod(padded_lengths(spec)) * _COMPLEX_ITEMSIZE[spec.dtype]
    if need > limits.workspace:
        return (f"its spectra need at least {need} bytes, above workspace_limit={limits.workspace} (im2col "
                f"honours a workspace limit)")
    return None


def leading(tile: Tiling) -> tuple[int, ...]:
    """The transformed axes of tiles laid out (*length, *count, N, C): the first D."""
    return tuple(range(len(tile.length)))


def tiles_of(xp: Any, a: Any, before: tuple[int, ...], tile: Tiling, conj: bool = False,
             spacing: tuple[int, ...] | None = None) -> Any:
    """The tiles (*length, *count, N, C) of ``a`` (N, C, *L) placed ``before`` positions into zeros (conjugated;
    with ``spacing``, its positions that far apart, zeros between: dL/dy spread by the stride): a strided view of
    one padded copy laid out channels last, (*reach, N, C), tile ``i`` from ``i·step`` on along each axis. In this
    layout each frequency of the tiles' spectra is one (tiles·N, C) matrix."""
    n, c = a.shape[:2]
    d = len(tile.length)
    apart = spacing or (1,) * d
    buf = xp.zeros((*tile.reach, n, c), dtype=a.dtype)
    kept = tuple(min(size, -(-(r - b) // s)) for size, r, b, s in zip(a.shape[2:], tile.reach, before, apart,
                                                                       strict=True))
    src = a[trailing([slice(0, k) for k in kept])]  # positions past the tiles' reach are never read
    src = src.transpose(*range(2, 2 + d), 0, 1)  # (N, C, *kept) -> (*kept, N, C), a view
    where = tuple(slice(b, b + (k - 1) * s + 1, s) for b, k, s in zip(before, kept, apart, strict=True))
    buf[where] = xp.conj(src) if conj else src
    spatial, rest = buf.strides[:d], buf.strides[d:]
    steps = tuple(st * s for st, s in zip(spatial, tile.step, strict=True))
    return xp.lib.stride_tricks.as_strided(buf, shape=(*tile.length, *tile.count, n, c),
                                           strides=(*spatial, *steps, *rest))


#: rows of a tile moved at once by :func:`untile` (its transposing copy, cut so that what it reads stays in cache;
#: measured in benchmarks/CPU_NOTES.md)
UNTILE_ROWS = 4


def untile(xp: Any, r: Any, tile: Tiling, start: tuple[int, ...], outputs: tuple[int, ...]) -> Any:
    """The outputs (N, K, *outputs) of the inverse-transformed tiles ``r`` (*length, *count, N, K): ``step``
    positions of each tile from ``start`` on, laid side by side (one copy, by bands of :data:`UNTILE_ROWS` rows;
    a view of it where the tiles hold more than the outputs)."""
    d = len(tile.count)
    kept = r[tuple(slice(a, a + s) for a, s in zip(start, tile.step, strict=True))]  # (*step, *count, N, K)
    order = (2 * d, 2 * d + 1, *[axis for i in range(d) for axis in (d + i, i)])  # -> (N, K, count1, step1, ...)
    moved = kept.transpose(order)
    whole = xp.empty(moved.shape, dtype=r.dtype)
    for j in range(0, tile.step[0], UNTILE_ROWS):  # the first axis's rows of every tile, a band at a time
        band = (slice(None),) * 3 + (slice(j, j + UNTILE_ROWS),)
        whole[band] = moved[band]
    whole = whole.reshape(*r.shape[2 * d:], *[c * s for c, s in zip(tile.count, tile.step, strict=True)])
    return whole[trailing([slice(0, o) for o in outputs])]  # (N, K, count·step, ...) cut to the outputs


def kernel_spectrum(backend: FFTKernels, w: Any, tile: Tiling, dilation: tuple[int, ...], groups: int,
                    adjoint: bool = False) -> Any:
    """The spectrum, in the mixing's layout (frequencies, G, C_in/G, C_out/G), of the weights ``w`` (K, C/G,
    *kernel) dilated and flipped: :func:`correlate` then correlates with ``w`` (the forward pass). With ``adjoint``,
    of ``w`` dilated, not flipped, its K and C swapped (C_in = K) and conjugated (complex): :func:`correlate` then
    convolves with it, summing over K (grad_input). Cached by the weights' contents (:data:`SPECTRA_CACHE`)."""
    xp = backend.xp
    d = len(tile.length)

    def compute(w: Any) -> Any:
        k, cg = w.shape[:2]
        wd = xp.zeros((k, cg, *tile.extent), dtype=w.dtype)
        wd[trailing([slice(None, None, dl) for dl in dilation])] = xp.conj(w) if adjoint and not tile.real else w
        flipped = wd if adjoint else wd[trailing([slice(None, None, -1) for _ in range(d)])]
        spectrum = backend.spectrum(flipped, tile.length, tuple(range(2, 2 + d)), tile.real)  # (K, C/G, *half)
        by_group = spectrum.reshape(groups, k // groups, cg, tile.frequencies)  # (G, K/G, C/G, f)
        return xp.ascontiguousarray(by_group.transpose((3, 0, 1, 2) if adjoint else (3, 0, 2, 1)))

    key = (adjoint, tile.length, tile.extent, groups, dilation)
    lookup = SPECTRA_CACHE.lookup(backend, w, key, compute)
    return lookup.settle(lookup.matches(0, w.shape[0]))


def batched_matmul(backend: FFTKernels, a: Any, b: Any) -> Any:
    """``a @ b`` for stacks (f, ...) of matrices, one per frequency: the frequencies cut into one range per worker
    of the backend's scheduler (each GEMM is too small for the BLAS's own threads)."""
    nf = a.shape[0]
    parts = backend.scheduler.workers() if backend.scheduler.blocks else 1
    if parts <= 1 or nf < 2 * parts:
        return backend.xp.matmul(a, b)
    out = backend.xp.empty((*a.shape[:-1], b.shape[-1]), dtype=a.dtype)
    bounds = [nf * i // parts for i in range(parts + 1)]

    def block(i: int) -> None:
        f0, f1 = bounds[i], bounds[i + 1]
        backend.xp.matmul(a[f0:f1], b[f0:f1], out=out[f0:f1])

    backend.scheduler.run_blocks(block, list(range(parts)), parts)
    return out


def _mix(backend: FFTKernels, s: Any, wt: Any) -> Any:
    """``Y[f, m, g·o] = Σ_i S[f, m, g·i]·W[f, g, i, o]`` for spectra ``s`` (f, tiles·N, C_in) and ``wt`` (f, G,
    C_in/G, C_out/G): a GEMM per frequency (per group), or broadcast products for one input channel per group."""
    nf, m, _ = s.shape
    _, g, ci, co = wt.shape
    if g == 1:
        return batched_matmul(backend, s, wt[:, 0])  # (f, M, C_in) @ (f, C_in, C_out)
    if ci == 1:  # depthwise and the like: no GEMM of depth one
        return (s.reshape(nf, m, g, 1) * wt.reshape(nf, 1, g, co)).reshape(nf, m, g * co)
    y = batched_matmul(backend, s.reshape(nf, m, g, ci).transpose(0, 2, 1, 3), wt)  # (f, G, M, C_out/G)
    return y.transpose(0, 2, 1, 3).reshape(nf, m, g * co)  # -> (f, M, G·C_out/G), a copy


def correlate(backend: FFTKernels, tiles: Any, wt: Any, tile: Tiling, outputs: tuple[int, ...]) -> Any:
    """``r[n, o, p] = Σ_i Σ_u k[o, i, u]·a[n, i, p + u]`` for the ``tiles`` of ``a`` (:func:`tiles_of`) and the
    spectrum ``wt`` of ``k`` flipped (:func:`kernel_spectrum`): (N, C_out, *outputs), a view."""
    n, c = tiles.shape[-2:]
    axes = leading(tile)
    spectra = backend.spectrum(tiles, tile.length, axes, tile.real)  # (*half, *count, N, C_in)
    mixed = _mix(backend, spectra.reshape(tile.frequencies, tile.tiles * n, c), wt)  # (f, tiles·N, C_out)
    r = backend.signal(mixed.reshape(*tile.half, *tile.count, n, -1), tile.length, axes, tile.real)
    return untile(backend.xp, r, tile, tuple(e - 1 for e in tile.extent), outputs)  # -> (N, C_out, *outputs)
