"""The backward passes of ``fft`` (:mod:`.fft` describes all three): grad_input and grad_weight, in every D and
dtype, tiled."""

from __future__ import annotations

from typing import Any

from ..backends.kernels import FFTKernels
from ..core.prepared import Prepared
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from ._common import add_bias
from .fft_spectra import (
    Tiling,
    batched_matmul,
    correlate,
    kernel_spectrum,
    leading,
    padded_lengths,
    pass_tiling,
    spectra_bytes,
    tiles_of,
    trailing,
    written,
)

__all__ = ["prepare_grad_input", "prepare_grad_weight"]


def _grad_input(backend: FFTKernels, spec: ConvSpec, tile: Tiling) -> Any:
    xp = backend.xp
    padded = padded_lengths(spec)
    crop = trailing([slice(a, a + s) for (a, _), s in zip(spec.padding, spec.size, strict=True)])
    front = tuple(e - 1 for e in tile.extent)

    def run(gy: Any, w: Any, bias: Any, out: Any) -> Any:
        # dL/dx of the padded input = dL/dy spread, convolved with the weights (correlated with them flipped)
        wt = kernel_spectrum(backend, w, tile, spec.dilation, spec.groups, adjoint=True)
        tiles = tiles_of(xp, gy, front, tile, spacing=spec.stride)
        dx = correlate(backend, tiles, wt, tile, padded)[crop]
        return add_bias(written(xp, dx, out), bias)  # the transposed convolution's bias, of the input's channels

    return run


def _weight_tiles(backend: FFTKernels, gy: Any, spec: ConvSpec, tile: Tiling) -> Any:
    """The spectra (f, tiles·N, K) of dL/dy spread, cut into tiles of ``step`` positions, each flipped."""
    xp = backend.xp
    n, k, d = gy.shape[0], gy.shape[1], spec.ndim
    lengths = tuple(c * s for c, s in zip(tile.count, tile.step, strict=True))
    whole = xp.zeros((*lengths, n, k), dtype=gy.dtype)  # dL/dy spread, channels last
    whole[tuple(slice(0, (o - 1) * s + 1, s) for o, s in zip(spec.out_size, spec.stride, strict=True))] = \
        gy.transpose(*range(2, 2 + d), 0, 1)  # (N, K, *out) -> (*out, N, K)
    parts = whole.reshape(*[v for c, s in zip(tile.count, tile.step, strict=True) for v in (c, s)], n, k)
    order = (*range(1, 2 * d, 2), *range(0, 2 * d, 2), 2 * d, 2 * d + 1)  # (c1, s1, ...) -> (*step, *count, N, K)
    flipped = parts.transpose(order)[tuple(slice(None, None, -1) for _ in range(d))]
    spectra = backend.spectrum(flipped, tile.length, leading(tile), tile.real)  # (*half, *count, N, K)
    return spectra.reshape(tile.frequencies, tile.tiles * n, k)


def _grad_weight(backend: FFTKernels, spec: ConvSpec, tile: Tiling) -> Any:
    xp = backend.xp
    before = tuple(a for a, _ in spec.padding)
    g, kg, cg, d = spec.groups, spec.kg, spec.cg, spec.ndim
    taps = tuple(slice(s - 1, s - 1 + e, dl) for s, e, dl in zip(tile.step, tile.extent, spec.dilation, strict=True))

    def run(x: Any, gy: Any, _: Any, out: Any) -> Any:
        n, nf = x.shape[0], tile.frequencies
        m = tile.tiles * n
        # each tile of dL/dy (flipped) convolved with the input's tile that its outputs read: dL/dw = Σ dL/dy·conj(x)
        xs = backend.spectrum(tiles_of(xp, x, before, tile, conj=not tile.real), tile.length, leading(tile),
                              tile.real).reshape(nf, m, g, cg)
        gs = _weight_tiles(backend, gy, spec, tile).reshape(nf, m, g, kg)
        if cg == kg == 1:  # depthwise: a product summed over the images and tiles
            dws = (gs * xs).sum(axis=1)  # (f, G)
        else:  # (f, G, K/G, M) @ (f, G, M, C/G): strided views the BLAS reads as they are
            dws = batched_matmul(backend, gs.transpose(0, 2, 3, 1), xs.transpose(0, 2, 1, 3))
        dw = backend.signal(dws.reshape(*tile.half, spec.k, cg), tile.length, leading(tile), tile.real)[taps]
        return written(xp, dw.transpose(d, d + 1, *range(d)), out)  # (*kernel, K, C/G) -> (K, C/G, *kernel)

    return run


def prepare_grad_input(backend: FFTKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    tile = pass_tiling(backend, spec, "grad_input")
    return Prepared(_grad_input(backend, spec, tile), ("fft", "mix", "ifft"),
                    spectra_bytes(spec, tile, spec.k, spec.c, spec.n))


def prepare_grad_weight(backend: FFTKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    tile = pass_tiling(backend, spec, "grad_weight")
    return Prepared(_grad_weight(backend, spec, tile), ("fft", "mix", "ifft"),
                    spectra_bytes(spec, tile, spec.c, spec.k, spec.n))
