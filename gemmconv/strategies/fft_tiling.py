"""How a pass of ``fft`` is cut (:mod:`.fft` describes the passes): the overlap-save tiling, the cost model that
picks its transform length, and the chunks (images, rows of tiles) that keep its temporaries within a
``workspace_limit``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass

from ..backends.kernels import FFTKernels
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from .fft_phases import phased

__all__ = [
    "FFT_FLOPS",
    "LONGEST",
    "MIX_FLOPS",
    "SPECTRA_BYTES",
    "STRIDE_BY",
    "Cut",
    "Geometry",
    "Tiling",
    "cut",
    "geometry",
    "is_real",
    "least_workspace",
    "padded_lengths",
    "spectra_bytes",
    "supports",
    "tiling",
]

#: the cost model's constants, fitted by benchmarks/fft_tiles_fit.py (non-negative least squares on the relative
#: error of timings of 16 layers, each at every candidate length; benchmarks/CPU_NOTES.md): flops of the transforms
#: and of the mixing GEMMs per second, and bytes of spectra moved per second
FFT_FLOPS, MIX_FLOPS, SPECTRA_BYTES = 1.1e10, 5.0e10, 1.66e10

#: how a strided pass runs: None, as the cost model predicts faster (:func:`cut`); ``"polyphase"`` or
#: ``"subsample"`` wherever it keeps to the workspace limit (the tests and benchmarks set it)
STRIDE_BY: str | None = None

#: the longest transform the cost model may pick, None: no bound (the tests set it low, so that small inputs are cut
#: into many tiles)
LONGEST: int | None = None


def is_real(spec: ConvSpec) -> bool:
    return not spec.dtype.startswith("complex")


def padded_lengths(spec: ConvSpec) -> tuple[int, ...]:
    return tuple(s + a + b for s, (a, b) in zip(spec.size, spec.padding, strict=True))


@dataclass(frozen=True)
class Tiling:
    """Overlap-save along every spatial axis: ``count`` tiles of ``length`` positions (the transform's length), each
    keeping ``step`` = ``length - extent + 1`` outputs (``extent``: the correlated kernel's). ``chunk``: the images
    and the rows of tiles (along the first axis) transformed at once, None for all of them."""

    length: tuple[int, ...]
    step: tuple[int, ...]
    count: tuple[int, ...]
    extent: tuple[int, ...]
    real: bool
    #: the cost model's estimate of one call, in seconds
    seconds: float = 0.0
    chunk: tuple[int, int] | None = None

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

    def rows(self, count: int) -> Tiling:
        """The tiling of ``count`` rows of these tiles (along the first axis), unchunked."""
        return dataclasses.replace(self, count=(count, *self.count[1:]), chunk=None)


@dataclass(frozen=True)
class Geometry:
    """What a pass correlates: ``n`` signals of ``c_in`` channels giving ``outputs`` positions of ``c_out`` channels
    through a kernel of ``extent``, a mixing GEMM of depth ``inner`` per output; ``summed`` (grad_weight): the
    mixing sums over the tiles, and ``c_out·inner`` spectra are transformed back instead of the tiles'."""

    outputs: tuple[int, ...]
    extent: tuple[int, ...]
    n: int
    c_in: int
    c_out: int
    inner: int
    real: bool
    itemsize: int  # of the real numbers (4 for float32 and complex64)
    summed: bool = False

    @property
    def complex_itemsize(self) -> int:
        return max(2 * self.itemsize, 8)  # scipy.fft transforms float16 in complex64

    @property
    def signal_itemsize(self) -> int:
        return self.itemsize if self.real else 2 * self.itemsize


def geometry(spec: ConvSpec, pass_: str) -> Geometry:
    """The correlation of pass ``pass_`` (``"forward"``, ``"grad_input"``, ``"grad_weight"``) of ``spec``: the forward
    pass correlates the padded input with the weights (every stride-1 output); grad_input correlates dL/dy spread
    with the weights, giving every position of the padded input; grad_weight cuts the spread dL/dy into tiles."""
    extent, real = spec.effective_kernel, is_real(spec)
    part = spec.itemsize if real else spec.itemsize // 2
    padded = padded_lengths(spec)
    if pass_ == "grad_input":
        return Geometry(padded, extent, spec.n, spec.k, spec.c, spec.kg, real, part)
    if pass_ == "grad_weight":
        spread = tuple((o - 1) * s + 1 for o, s in zip(spec.out_size, spec.stride, strict=True))
        return Geometry(spread, extent, spec.n, spec.c, spec.k, spec.cg, real, part, summed=True)
    if pass_ != "forward":
        raise ValueError(f"pass_={pass_!r}: expected 'forward', 'grad_input' or 'grad_weight'")
    every = tuple(p - e + 1 for p, e in zip(padded, extent, strict=True))
    return Geometry(every, extent, spec.n, spec.c, spec.k, spec.cg, real, part)


def _fast_lengths(backend: FFTKernels, extent: int, outputs: int, real: bool) -> list[int]:
    """Transform lengths worth costing along one axis: fast lengths from twice the extent to one tile of all the
    outputs (at most :data:`LONGEST`, but never below the extent)."""
    whole = backend.fast_length(outputs + extent - 1, real)
    wanted = [backend.fast_length(max(m * extent, 8), real) for m in (2, 3, 4, 6, 8, 12, 16)]
    wanted += [backend.fast_length(v, real) for v in (16, 32, 64, 128, 256, 512)]
    return _bounded({t for t in wanted if extent <= t < whole} | {whole}, extent)


def _powers_of_two(extent: int, outputs: int) -> list[int]:
    """The powers of two from the extent to one tile of all the outputs (at most :data:`LONGEST`): the lengths
    :func:`supports` costs without a backend (a power of two is fast for every backend's transforms)."""
    found, t = set(), 1 << max(extent - 1, 0).bit_length()
    while True:
        found.add(t)
        if t >= outputs + extent - 1:
            return _bounded(found, extent)
        t *= 2


def _bounded(lengths: set[int], extent: int) -> list[int]:
    if LONGEST is not None:
        top = max(LONGEST, extent)
        lengths = {t for t in lengths | set(range(extent, top + 1)) if t <= top}
    return sorted(lengths)


def _tilings(per_axis: list[list[int]], g: Geometry) -> Iterator[Tiling]:
    """One tiling per target length: each axis's longest candidate up to it (its shortest, past it)."""
    for target in sorted({t for ts in per_axis for t in ts}):
        length = tuple(max([t for t in ts if t <= target] or [ts[0]]) for ts in per_axis)
        step = tuple(t - e + 1 for t, e in zip(length, g.extent, strict=True))
        count = tuple(-(-o // s) for o, s in zip(g.outputs, step, strict=True))
        yield Tiling(length, step, count, g.extent, g.real)


def _seconds(tile: Tiling, g: Geometry) -> float:
    """The cost model: the transforms of every tile (n·(c_in + c_out) of them, or n·c_in + c_out·inner summed), the
    mixing GEMMs (c_out·inner complex products per tile and frequency) and the spectra moved (the tiles' twice, for
    the mixing's layout; the weights' once)."""
    size = math.prod(tile.length)
    transforms = g.n * (g.c_in + g.c_out) * tile.tiles + (g.c_out * g.inner if g.summed else 0)
    fft = 2.5 * size * math.log2(max(size, 2)) * transforms * (1 if g.real else 2)
    mix = 8 * g.c_out * g.inner * g.n * tile.tiles * tile.frequencies
    moved = (2 * transforms + g.c_out * g.inner) * tile.frequencies * 2 * g.itemsize
    return fft / FFT_FLOPS + mix / MIX_FLOPS + moved / SPECTRA_BYTES


def _fixed_bytes(tile: Tiling, g: Geometry) -> int:
    """Temporaries that do not grow with the chunk: the weights' spectrum (its transform and the copy in the mixing's
    layout, which the spectra cache then keeps, with a copy of the weights) and the weights dilated (split into
    phases, zero-padded to the transform's length); or grad_weight's sums of spectra (the sum and one chunk's) and
    their inverse transform (whose real transform copies its input)."""
    pairs, f = g.c_out * g.inner, tile.frequencies
    if g.summed:
        return pairs * (3 * f * g.complex_itemsize + math.prod(tile.length) * g.signal_itemsize)
    kernel = 4 * math.prod(tile.extent) + math.prod(tile.length)  # ... and zero-padded to the length by scipy.fft
    return pairs * (2 * f * g.complex_itemsize + kernel * g.signal_itemsize)


def _image_bytes(tile: Tiling, g: Geometry) -> int:
    """Temporaries per image of ``tile``'s tiles, at most: the tiles' padded copy (and, complex, the input conjugated
    for grad_weight), their spectra in and out (each once more: the mixing's output, the real inverse transform's
    copy of its input), the inverse transform's tiles and their outputs side by side (grad_weight: dL/dy's tiles
    instead, and their copy zero-padded to the transform's length)."""
    outs = g.c_out * tile.tiles * (math.prod(tile.step) + math.prod(tile.length))  # grad_weight: dL/dy's zero-padded
    signals = (1 if g.real or not g.summed else 2) * g.c_in * math.prod(tile.reach) + outs
    spectra = 2 * (g.c_in + g.c_out) * tile.tiles * tile.frequencies
    return signals * g.signal_itemsize + spectra * g.complex_itemsize


def _chunked(tile: Tiling, g: Geometry, limit: int | None) -> Tiling | None:
    """``tile`` with the largest chunk whose temporaries fit ``limit``: every image and row, else whole images, else
    rows of tiles of one image; None where one row of one image does not fit."""
    if limit is None:
        return tile
    room = limit - _fixed_bytes(tile, g)
    whole = _image_bytes(tile, g)
    if g.n * whole <= room:
        return tile
    if whole <= room:
        return dataclasses.replace(tile, chunk=(room // whole, tile.count[0]))
    lo, hi = 0, tile.count[0]  # rows that fit: at least lo (0: none), fewer than hi (the bytes grow with the rows)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if _image_bytes(tile.rows(mid), g) <= room else (lo, mid)
    return dataclasses.replace(tile, chunk=(1, lo)) if lo else None


def tiling(backend: FFTKernels, g: Geometry, limit: int | None = None) -> Tiling:
    """The tiling of ``g`` that the cost model finds cheapest (the transform length, the same on every axis where
    the axis is long enough), chunked to keep its temporaries within ``limit`` bytes. Under a limit the powers of
    two that :func:`supports` weighs are candidates too, so that a limit it accepts always has a tiling."""
    per_axis = [_fast_lengths(backend, e, o, g.real) for e, o in zip(g.extent, g.outputs, strict=True)]
    found = list(_tilings(per_axis, g))
    if limit is not None:
        found += _tilings([_powers_of_two(e, o) for e, o in zip(g.extent, g.outputs, strict=True)], g)
    fitting = [t for t in (_chunked(t, g, limit) for t in found) if t is not None]
    if not fitting:  # never from cut: it offers only options whose least workspace (powers of two) fits
        raise RuntimeError(f"fft: no tiling within workspace_limit={limit}")
    best = min(fitting, key=lambda t: _seconds(t, g))
    return dataclasses.replace(best, seconds=_seconds(best, g))


def spectra_bytes(tile: Tiling, g: Geometry) -> int:
    """The temporaries of one pass cut by ``tile``, at most."""
    images, rows = tile.chunk or (g.n, tile.count[0])
    return _fixed_bytes(tile, g) + images * _image_bytes(tile.rows(rows), g)


@dataclass(frozen=True)
class Cut:
    """How a pass of ``spec`` runs: the convolution ``runs`` (``spec`` itself, or the stride-1 convolution of its
    phases where ``phases``: :mod:`.fft_phases`) in the tiles of ``tile``."""

    runs: ConvSpec
    tile: Tiling
    pass_: str
    phases: bool = False

    @property
    def workspace_bytes(self) -> int:
        """The temporaries of the pass, at most."""
        return spectra_bytes(self.tile, geometry(self.runs, self.pass_)) + _split_bytes(self.runs, self.phases)

    @property
    def seconds(self) -> float:
        """The cost model's estimate of one call: the tiles', and the polyphase split's copies moved."""
        return self.tile.seconds + _split_bytes(self.runs, self.phases) / SPECTRA_BYTES


def cut(backend: FFTKernels, spec: ConvSpec, pass_: str, limits: Limits = NO_LIMITS) -> Cut:
    """The cut of pass ``pass_`` of ``spec`` within ``limits``: a strided convolution by the polyphase split or by
    subsampling every output at stride 1, whichever the cost model predicts faster (:data:`STRIDE_BY` forces
    one), of those that keep to the limit."""
    room = limits.workspace
    fitting = [(s, p) for s, p in _options(spec) if room is None or _option_least(s, p, pass_) <= room]
    forced = [(s, p) for s, p in fitting if ("polyphase" if p else "subsample") == STRIDE_BY]
    cuts = [Cut(s, tiling(backend, geometry(s, pass_), None if room is None else room - _split_bytes(s, p)), pass_, p)
            for s, p in forced or fitting]
    return min(cuts, key=lambda c: c.seconds)


def _options(spec: ConvSpec) -> list[tuple[ConvSpec, bool]]:
    """The convolutions a pass of ``spec`` can run as, each with whether it is the polyphase split's."""
    return [(spec, False)] + ([(phased(spec), True)] if spec.strided else [])


def _option_least(runs: ConvSpec, phases: bool, pass_: str) -> int:
    """The least workspace of one of :func:`_options`: one row of tiles of one image, and the split's copies."""
    return _least(runs, pass_) + _split_bytes(runs, phases)


def _split_bytes(runs: ConvSpec, phases: bool) -> int:
    """The polyphase split's copies: the phases of the input (or of its gradient) and their interleaved copy."""
    return 2 * runs.n * runs.c * math.prod(runs.size) * runs.itemsize if phases else 0


def _least(spec: ConvSpec, pass_: str) -> int:
    """The temporaries of one row of tiles of one image of ``spec``, at the best length a power of two."""
    g = geometry(spec, pass_)
    found = _tilings([_powers_of_two(e, o) for e, o in zip(g.extent, g.outputs, strict=True)], g)
    return min(_fixed_bytes(t, g) + _image_bytes(t.rows(1), g) for t in found)


def least_workspace(spec: ConvSpec, pass_: str = "forward") -> int:
    """The smallest ``workspace_limit`` pass ``pass_`` of ``spec`` keeps to: the temporaries of one row of tiles of
    one image, at the best length a power of two (of the polyphase split's convolution too, if strided)."""
    return min(_option_least(s, p, pass_) for s, p in _options(spec))


def supports(spec: ConvSpec, limits: Limits = NO_LIMITS, pass_: str = "forward") -> str | None:
    """Every convolution, but for a workspace limit below :func:`least_workspace`."""
    if limits.workspace is None or spec.n == 0 or spec.c == 0:  # without images or channels nothing is transformed
        return None
    need = least_workspace(spec, pass_)
    if need <= limits.workspace:
        return None
    return (f"its {pass_} pass needs at least {need} bytes (the spectra of one row of tiles of one image), above "
            f"workspace_limit={limits.workspace}; pass workspace_limit >= {need}")
