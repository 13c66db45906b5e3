"""What the three passes of ``fft`` share (:mod:`.fft` describes them; :mod:`.fft_tiling` cuts them): the tiles,
the weights' spectra and their cache, the channel mixing per frequency, the chunks a pass runs in and the
reassembly of the kept outputs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from ..backends.kernels import FFTKernels
from ..core.spec import ConvSpec
from ._common import deliver, trailing
from .fft_phases import split_kernel
from .fft_tiling import Tiling
from .filter_cache import FilterCache

__all__ = [
    "SPECTRA_CACHE",
    "TilesFn",
    "batched_matmul",
    "chunks",
    "correlate",
    "kernel_spectrum",
    "leading",
    "tiles_of",
    "untile",
    "written",
]

#: the weights' spectra in the mixing's layout, keyed by the weights and everything that sets them (pass, transform
#: lengths, the kernel's extent, groups, dilation, the polyphase split's stride); checked against a copy of the
#: weights on every hit
SPECTRA_CACHE = FilterCache(max_entries=32, max_bytes=256 << 20)


def written(xp: Any, y: Any, out: Any | None) -> Any:
    """``y`` (a view) as a fresh C-contiguous array, or copied into ``out``."""
    return deliver(y if out is not None else xp.ascontiguousarray(y), out)


def leading(tile: Tiling) -> tuple[int, ...]:
    """The transformed axes of tiles laid out (*length, *count, N, C): the first D."""
    return tuple(range(len(tile.length)))


def inside(lo: int, hi: int, first: int, spacing: int, count: int) -> tuple[int, int]:
    """The indices ``[i0, i1)`` of the ``count`` positions ``first + i·spacing`` that lie in ``[lo, hi)``."""
    i0 = max(0, -(-(lo - first) // spacing))
    return i0, max(i0, min(count, -(-(hi - first) // spacing)))


def tiles_of(xp: Any, a: Any, before: tuple[int, ...], tile: Tiling, conj: bool = False,
             spacing: tuple[int, ...] | None = None, origin: int = 0) -> Any:
    """The tiles (*length, *count, N, C) of ``a`` (N, C, *L) placed ``before`` positions into zeros (conjugated;
    with ``spacing``, its positions that far apart, zeros between: dL/dy spread by the stride), the first tile from
    position ``origin`` of the first axis on: a strided view of one padded copy laid out channels last,
    (*reach, N, C), tile ``i`` from ``i·step`` on along each axis. In this layout each frequency of the tiles'
    spectra is one (tiles·N, C) matrix."""
    n, c = a.shape[:2]
    d = len(tile.length)
    apart = spacing or (1,) * d
    buf = xp.zeros((*tile.reach, n, c), dtype=a.dtype)
    lows = (origin, *(0,) * (d - 1))
    found = [inside(lo, lo + r, b, s, size)
             for lo, r, b, s, size in zip(lows, tile.reach, before, apart, a.shape[2:], strict=True)]
    if all(i1 > i0 for i0, i1 in found):  # positions outside the tiles' reach are never read
        src = a[trailing([slice(i0, i1) for i0, i1 in found])]
        src = src.transpose(*range(2, 2 + d), 0, 1)  # (N, C, *kept) -> (*kept, N, C), a view
        where = tuple(slice(b + i0 * s - lo, b + (i1 - 1) * s - lo + 1, s)
                      for (i0, i1), b, s, lo in zip(found, before, apart, lows, strict=True))
        buf[where] = xp.conj(src) if conj else src
    spatial, rest = buf.strides[:d], buf.strides[d:]
    steps = tuple(st * s for st, s in zip(spatial, tile.step, strict=True))
    return xp.lib.stride_tricks.as_strided(buf, shape=(*tile.length, *tile.count, n, c),
                                           strides=(*spatial, *steps, *rest))


def chunks(tile: Tiling, n: int) -> Iterator[tuple[slice, Tiling, int]]:
    """The chunks of a pass cut by ``tile``: the images, the tiling of the rows of tiles and the first position
    (along the first axis) of each; one chunk of everything where ``tile`` is not chunked."""
    if tile.chunk is None:
        yield slice(None), tile, 0
        return
    images, rows = tile.chunk
    for n0 in range(0, n, images):
        for r0 in range(0, tile.count[0], rows):
            yield slice(n0, n0 + images), tile.rows(min(rows, tile.count[0] - r0)), r0 * tile.step[0]


#: rows of a tile moved at once by :func:`untile` (its transposing copy, cut so that what it reads stays in cache;
#: measured in benchmarks/CPU_NOTES.md)
UNTILE_ROWS = 4


def untile(xp: Any, r: Any, tile: Tiling) -> Any:
    """The outputs (N, K, *count·step) of the kept positions ``r`` (*step, *count, N, K) of the inverse-transformed
    tiles, laid side by side (one copy, by bands of :data:`UNTILE_ROWS` rows)."""
    d = len(tile.count)
    order = (2 * d, 2 * d + 1, *[axis for i in range(d) for axis in (d + i, i)])  # -> (N, K, count1, step1, ...)
    moved = r.transpose(order)
    whole = xp.empty(moved.shape, dtype=r.dtype)
    for j in range(0, tile.step[0], UNTILE_ROWS):  # the first axis's rows of every tile, a band at a time
        band = (slice(None),) * 3 + (slice(j, j + UNTILE_ROWS),)
        whole[band] = moved[band]
    return whole.reshape(*r.shape[2 * d:], *[c * s for c, s in zip(tile.count, tile.step, strict=True)])


def kernel_spectrum(backend: FFTKernels, w: Any, tile: Tiling, dilation: tuple[int, ...], groups: int,
                    adjoint: bool = False, phases: ConvSpec | None = None) -> Any:
    """The spectrum, in the mixing's layout (frequencies, G, C_in/G, C_out/G), of the weights ``w`` (K, C/G,
    *kernel) dilated and flipped: :func:`correlate` then correlates with ``w`` (the forward pass). With ``adjoint``,
    of ``w`` dilated, not flipped, its K and C swapped (C_in = K) and conjugated (complex): :func:`correlate` then
    convolves with it, summing over K (grad_input). With ``phases`` (a strided convolution's spec), of the phases of
    ``w`` (:func:`.fft_phases.split_kernel`; ``dilation`` then ones). Cached by the weights' contents
    (:data:`SPECTRA_CACHE`)."""
    xp = backend.xp
    d = len(tile.length)

    def compute(w: Any) -> Any:
        if phases is not None:
            w = split_kernel(xp, w, phases)  # (K, C/G, *kernel) -> (K, C/G·s^D, *taps)
        k, cg = w.shape[:2]
        wd = xp.zeros((k, cg, *tile.extent), dtype=w.dtype)
        wd[trailing([slice(None, None, dl) for dl in dilation])] = xp.conj(w) if adjoint and not tile.real else w
        flipped = wd if adjoint else wd[trailing([slice(None, None, -1) for _ in range(d)])]
        spectrum = backend.spectrum(flipped, tile.length, tuple(range(2, 2 + d)), tile.real)  # (K, C/G, *half)
        by_group = spectrum.reshape(groups, k // groups, cg, tile.frequencies)  # (G, K/G, C/G, f)
        return xp.ascontiguousarray(by_group.transpose((3, 0, 1, 2) if adjoint else (3, 0, 2, 1)))

    split = None if phases is None else (phases.stride, phases.dilation)
    key = (adjoint, tile.length, tile.extent, groups, dilation, split)
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


#: the tiles of a chunk: ``(tiling, images, origin) -> (*length, *count, N', C)`` (:func:`tiles_of`)
TilesFn = Callable[[Tiling, slice, int], Any]


def _correlate(backend: FFTKernels, tiles: Any, wt: Any, tile: Tiling) -> Any:
    """Every output (N, C_out, *count·step) of the ``tiles`` correlated with the kernel of spectrum ``wt``."""
    n, c = tiles.shape[-2:]
    axes = leading(tile)
    spectra = backend.spectrum(tiles, tile.length, axes, tile.real)  # (*half, *count, N, C_in)
    mixed = _mix(backend, spectra.reshape(tile.frequencies, tile.tiles * n, c), wt)  # (f, tiles·N, C_out)
    kept = tuple(slice(e - 1, e - 1 + s) for e, s in zip(tile.extent, tile.step, strict=True))  # no wrapped product
    r = backend.signal(mixed.reshape(*tile.half, *tile.count, n, -1), tile.length, axes, tile.real,
                       overwrite=True, keep=kept)  # (*step, *count, N, C_out); the mixed spectra are a temporary
    return untile(backend.xp, r, tile)


def correlate(backend: FFTKernels, tiles_for: TilesFn, wt: Any, tile: Tiling, n: int, c_out: int,
              keep: tuple[slice, ...]) -> Any:
    """``r[n, o, p] = Σ_i Σ_u k[o, i, u]·a[n, i, p + u]`` for the tiles of ``a`` (``tiles_for``) and the spectrum
    ``wt`` of ``k`` flipped (:func:`kernel_spectrum`), at the positions ``keep`` (slices with a start, stop and
    step): (N, C_out, *kept), a view where the pass is one chunk, else assembled chunk by chunk."""
    if tile.chunk is None:
        return _correlate(backend, tiles_for(tile, slice(None), 0), wt, tile)[trailing(list(keep))]
    xp, first = backend.xp, keep[0]
    lengths = [len(range(k.start, k.stop, k.step)) for k in keep]
    y = xp.empty((n, c_out, *lengths), dtype=wt.real.dtype if tile.real else wt.dtype)
    for images, sub, lo in chunks(tile, n):
        j0, j1 = inside(lo, lo + sub.count[0] * sub.step[0], first.start, first.step, lengths[0])
        if j1 == j0:
            continue
        part = _correlate(backend, tiles_for(sub, images, lo), wt, sub)  # (N', C_out, *count·step)
        rows = slice(first.start + j0 * first.step - lo, first.start + (j1 - 1) * first.step - lo + 1, first.step)
        y[images, :, j0:j1] = part[trailing([rows, *keep[1:]])]
        del part  # before the next chunk's spectra
    return y

