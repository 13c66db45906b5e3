"""What the three passes of ``fft`` share (:mod:`.fft` describes them): the lengths of the transforms, the padded
signals, the weights' spectra and their cache, and the channel mixing per frequency."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..backends.kernels import FFTKernels
from ..core.registry import GRAD_INPUT
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from .filter_cache import FilterCache

__all__ = ["SPECTRA_CACHE", "Geometry", "axes_slices", "geometry", "mix", "placed", "spectra_bytes", "supports",
           "weight_spectrum"]

#: the weights' spectra, keyed by the weights and everything that sets their spectra (pass, lengths, groups)
SPECTRA_CACHE = FilterCache(max_entries=32, max_bytes=256 << 20)
_COMPLEX_ITEMSIZE = {"float16": 8, "float32": 8, "float64": 16, "complex64": 8, "complex128": 16}


@dataclass(frozen=True)
class Geometry:
    """Lengths of one FFT convolution, per spatial axis: the transform's (``fft``), the kernel's extent with its
    dilation (``extent``), dL/dy spread by the stride (``spread``), and the half spectrum's (``half``: the last axis
    ``fft // 2 + 1`` long for a real dtype)."""

    fft: tuple[int, ...]
    extent: tuple[int, ...]
    spread: tuple[int, ...]
    real: bool

    @property
    def half(self) -> tuple[int, ...]:
        return (*self.fft[:-1], self.fft[-1] // 2 + 1) if self.real else self.fft

    @property
    def frequencies(self) -> int:
        return math.prod(self.half)


def is_real(spec: ConvSpec) -> bool:
    return not spec.dtype.startswith("complex")


def geometry(backend: FFTKernels, spec: ConvSpec) -> Geometry:
    """The lengths of ``spec``'s FFT convolution on ``backend`` (whose fast lengths it rounds to)."""
    real = is_real(spec)
    padded = [s + a + b for s, (a, b) in zip(spec.size, spec.padding, strict=True)]
    return Geometry(fft=tuple(backend.fast_length(p, real) for p in padded), extent=spec.effective_kernel,
                    spread=tuple((o - 1) * s + 1 for o, s in zip(spec.out_size, spec.stride, strict=True)),
                    real=real)


def spectra_bytes(spec: ConvSpec, lengths: tuple[int, ...]) -> int:
    """Temporaries of one pass, at most: the spectra of the input side, the output side and the weights, each
    once more transposed for the mixing, and the padded signals (bounded by the spectra's size)."""
    half = math.prod((*lengths[:-1], lengths[-1] // 2 + 1)) if is_real(spec) else math.prod(lengths)
    spectra = (2 * spec.n * (spec.c + spec.k) + 2 * spec.k * spec.cg) * half
    signals = (spec.n * (spec.c + spec.k)) * math.prod(lengths)
    return spectra * _COMPLEX_ITEMSIZE[spec.dtype] + signals * spec.itemsize


def supports(spec: ConvSpec, limits: Limits = NO_LIMITS) -> str | None:
    """Every convolution, but for a workspace limit below its spectra (the transforms are not tiled yet)."""
    if limits.workspace is None:
        return None
    lengths = tuple(s + a + b for s, (a, b) in zip(spec.size, spec.padding, strict=True))  # the least lengths
    need = spectra_bytes(spec, lengths)
    if need > limits.workspace:
        return (f"its spectra need at least {need} bytes, above workspace_limit={limits.workspace} (im2col "
                f"honours a workspace limit)")
    return None


def axes_slices(starts: tuple[int, ...], counts: tuple[int, ...], steps: tuple[int, ...]) -> tuple[Any, ...]:
    """``(..., one slice per spatial axis)``: ``count`` positions from ``start``, every ``step``."""
    return (Ellipsis, *(slice(a, a + (n - 1) * s + 1, s) for a, n, s in zip(starts, counts, steps, strict=True)))


def placed(xp: Any, a: Any, lengths: tuple[int, ...], where: tuple[Any, ...], conj: bool = False) -> Any:
    """A zero array of ``a``'s leading shape and the spatial ``lengths``, ``a`` (conjugated) written at ``where``."""
    buf = xp.zeros((*a.shape[:2], *lengths), dtype=a.dtype)
    buf[where] = xp.conj(a) if conj else a
    return buf


def mix(xp: Any, a: Any, b: Any, groups: int, contract: str) -> Any:
    """The per-frequency channel mixing of spectra ``a`` (P, G·I, *f) and ``b`` (Q, G·I, *f)... as one batched GEMM:

    - ``contract="forward"``: ``a`` (N, C, *f) by ``b`` (K, C/G, *f) -> (N, K, *f), summing over C/G;
    - ``contract="input"``: ``a`` (N, K, *f) by ``b`` (K, C/G, *f) -> (N, C, *f), summing over K/G;
    - ``contract="weight"``: ``a`` (N, K, *f) by ``b`` (N, C, *f) -> (K, C/G, *f), summing over N.
    """
    f = a.shape[2:]
    nf = math.prod(f)
    g = groups
    if contract == "forward":
        n, c, k = a.shape[0], a.shape[1], b.shape[0]
        cg, kg = c // g, k // g
        if cg == 1:  # depthwise and the like: broadcast products, no GEMM of depth one
            y = b.reshape(1, g, kg, nf) * a.reshape(n, g, 1, nf)  # (K, 1, f) x (N, C, f) -> (N, G, K/G, f)
            return y.reshape(n, k, *f)
        bt = xp.ascontiguousarray(b.reshape(g, kg, cg, nf).transpose(3, 0, 1, 2))  # -> (f, G, K/G, C/G)
        at = xp.ascontiguousarray(a.reshape(n, g, cg, nf).transpose(3, 1, 2, 0))  # -> (f, G, C/G, N)
        y = xp.matmul(bt, at)  # (f, G, K/G, N)
        return xp.ascontiguousarray(y.transpose(3, 1, 2, 0)).reshape(n, k, *f)  # -> (N, K, *f)
    if contract == "input":
        n, k, cg = a.shape[0], a.shape[1], b.shape[1]
        kg, c = k // g, cg * g
        if kg == 1:
            dx = (b.reshape(1, g, cg, nf) * a.reshape(n, g, 1, nf)).reshape(n, c, *f)  # (N, G, C/G, f)
            return dx
        bt = xp.ascontiguousarray(b.reshape(g, kg, cg, nf).transpose(3, 0, 2, 1))  # -> (f, G, C/G, K/G)
        at = xp.ascontiguousarray(a.reshape(n, g, kg, nf).transpose(3, 1, 2, 0))  # -> (f, G, K/G, N)
        dx = xp.matmul(bt, at)  # (f, G, C/G, N)
        return xp.ascontiguousarray(dx.transpose(3, 1, 2, 0)).reshape(n, c, *f)  # -> (N, C, *f)
    n, k, c = a.shape[0], a.shape[1], b.shape[1]
    kg, cg = k // g, c // g
    at = xp.ascontiguousarray(a.reshape(n, g, kg, nf).transpose(3, 1, 2, 0))  # (N, K, f) -> (f, G, K/G, N)
    bt = xp.ascontiguousarray(b.reshape(n, g, cg, nf).transpose(3, 1, 0, 2))  # (N, C, f) -> (f, G, N, C/G)
    dw = xp.matmul(at, bt)  # (f, G, K/G, C/G)
    return xp.ascontiguousarray(dw.transpose(1, 2, 3, 0)).reshape(k, cg, *f)  # -> (K, C/G, *f)


def weight_spectrum(backend: FFTKernels, w: Any, spec: ConvSpec, geo: Geometry, pass_: str) -> Any:
    """The spectrum of ``w`` (K, C/G, *kernel), dilated (zeros between the taps) and, for the forward pass, flipped
    (a correlation as a convolution), for grad_input conjugated (complex): cached by its contents."""
    xp = backend.xp

    def compute(w: Any) -> Any:
        wd = xp.zeros((*w.shape[:2], *geo.extent), dtype=w.dtype)
        taps = (Ellipsis, *[slice(None, None, d) for d in spec.dilation])
        wd[taps] = w
        if pass_ == GRAD_INPUT and not geo.real:
            wd = xp.conj(wd)
        elif pass_ != GRAD_INPUT:
            flip = (Ellipsis, *[slice(None, None, -1) for _ in geo.extent])
            wd = wd[flip]  # flipped on every spatial axis
        return backend.spectrum(wd, geo.fft, geo.real)

    lookup = SPECTRA_CACHE.lookup(backend, w, (pass_, geo.fft, spec.groups, spec.dilation), compute)
    return lookup.settle(lookup.matches(0, w.shape[0]))


