"""The backward passes of ``fft`` (:mod:`.fft` describes all three): grad_input and grad_weight, in every D and
dtype, tiled."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..backends.kernels import FFTKernels
from ..core.prepared import Prepared
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from ._common import add_bias
from .fft_phases import merge_kernel, merge_signal, split_signal
from .fft_spectra import batched_matmul, chunks, correlate, kernel_spectrum, leading, tiles_of, written
from .fft_tiling import Cut, Tiling, cut

__all__ = ["prepare_grad_input", "prepare_grad_weight"]


def _grad_input(backend: FFTKernels, spec: ConvSpec, c: Cut) -> Any:
    xp, runs, tile = backend.xp, c.runs, c.tile
    keep = tuple(slice(a, a + s, 1) for (a, _), s in zip(runs.padding, runs.size, strict=True))  # the input's
    front = tuple(e - 1 for e in tile.extent)
    phases = spec if c.phases else None

    def run(gy: Any, w: Any, bias: Any, out: Any) -> Any:
        # dL/dx of the padded input = dL/dy spread, convolved with the weights (correlated with them flipped)
        wt = kernel_spectrum(backend, w, tile, runs.dilation, runs.groups, adjoint=True, phases=phases)

        def tiles(sub: Tiling, images: slice, origin: int) -> Any:
            return tiles_of(xp, gy[images], front, sub, spacing=runs.stride, origin=origin)

        dx = correlate(backend, tiles, wt, tile, runs.n, runs.c, keep)  # (N, C, *size), or of the phases
        dx = dx if phases is None else merge_signal(xp, dx, spec)
        return add_bias(written(xp, dx, out), bias)  # the transposed convolution's bias, of the input's channels

    return run


def _weight_tiles(backend: FFTKernels, gy: Any, runs: ConvSpec, tile: Tiling, origin: int) -> Any:
    """The spectra (f, tiles·N, K) of dL/dy spread, cut into tiles of ``step`` positions (the first from ``origin``
    on), each flipped."""
    d = runs.ndim
    parts = tiles_of(backend.xp, gy, (0,) * d, dataclasses.replace(tile, length=tile.step), spacing=runs.stride,
                     origin=origin)  # (*step, *count, N, K)
    flipped = parts[tuple(slice(None, None, -1) for _ in range(d))]
    spectra = backend.spectrum(flipped, tile.length, leading(tile), tile.real)  # (*half, *count, N, K)
    return spectra.reshape(tile.frequencies, tile.tiles * gy.shape[0], gy.shape[1])


def _grad_weight(backend: FFTKernels, spec: ConvSpec, c: Cut) -> Any:
    xp, runs, tile = backend.xp, c.runs, c.tile
    before = tuple(a for a, _ in runs.padding)
    g, kg, cg, d = runs.groups, runs.kg, runs.cg, runs.ndim
    taps = tuple(slice(s - 1, s - 1 + e, dl) for s, e, dl in zip(tile.step, tile.extent, runs.dilation, strict=True))

    def chunk(a: Any, gy: Any, sub: Tiling, origin: int) -> Any:
        """The sum (f, G, K/G, C/G) over the images and tiles of one chunk (its temporaries die with it)."""
        nf, m = tile.frequencies, sub.tiles * a.shape[0]
        # each tile of dL/dy (flipped) convolved with the input's tile that its outputs read: Σ dL/dy·conj(x)
        xs = backend.spectrum(tiles_of(xp, a, before, sub, conj=not tile.real, origin=origin), tile.length,
                              leading(tile), tile.real).reshape(nf, m, g, cg)
        gs = _weight_tiles(backend, gy, runs, sub, origin).reshape(nf, m, g, kg)
        if cg == kg == 1:  # depthwise: a product summed over the images and tiles
            return (gs * xs).sum(axis=1).reshape(nf, g, 1, 1)  # (f, G) -> (f, G, 1, 1)
        # (f, G, K/G, M) @ (f, G, M, C/G): strided views the BLAS reads as they are
        return batched_matmul(backend, gs.transpose(0, 2, 3, 1), xs.transpose(0, 2, 1, 3))

    def run(x: Any, gy: Any, _: Any, out: Any) -> Any:
        a = x if not c.phases else split_signal(xp, x, spec)  # (N, C, *size), or its phases (N, C·s^D, ...)
        dws: Any = None
        for images, sub, origin in chunks(tile, runs.n):
            part = chunk(a[images], gy[images], sub, origin)
            dws = part if dws is None else xp.add(dws, part, out=dws)
            del part  # before the next chunk's spectra
        dw = backend.signal(dws.reshape(*tile.half, runs.k, cg), tile.length, leading(tile), tile.real,
                            overwrite=True, keep=taps)  # (*kernel, K, C/G): dL/dw at the taps only
        dw = dw.transpose(d, d + 1, *range(d))  # (*kernel, K, C/G) -> (K, C/G, *kernel), a view
        return written(xp, dw if not c.phases else merge_kernel(xp, dw, spec), out)

    return run


_KERNELS = {False: ("fft", "mix", "ifft"), True: ("split", "fft", "mix", "ifft", "merge")}


def prepare_grad_input(backend: FFTKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    c = cut(backend, spec, "grad_input", limits)
    return Prepared(_grad_input(backend, spec, c), _KERNELS[c.phases], c.workspace_bytes)


def prepare_grad_weight(backend: FFTKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    c = cut(backend, spec, "grad_weight", limits)
    return Prepared(_grad_weight(backend, spec, c), _KERNELS[c.phases], c.workspace_bytes)
