"""``fft``: convolution by the convolution theorem, in every D and dtype, every pass.

Each pass is a correlation ``r[p] = Σ_u k[u]·a[p + u]`` of a long signal ``a`` with a kernel ``k``, cut into tiles
(overlap-save, as cuDNN's FFT_TILING and SciPy's ``oaconvolve``): tile ``i`` of ``length`` positions, from
``i·step`` on along each axis, keeps the ``step = length - extent + 1`` outputs that no product wraps onto. Every
tile is transformed (a real transform for real dtypes), the channels are mixed per frequency by one batched GEMM
(``(C_out/G x C_in/G) @ (C_in/G x N·tiles)`` per group; products of broadcast arrays where a group has one input
channel), and transformed back. A cost model (:func:`.fft_spectra.tiling`) picks the length: longer tiles waste
fewer positions on the overlap but make larger spectra of the weights.

- **forward**: ``a`` the padded input, ``k`` the weights (dilated: zeros between the taps); all outputs of stride
  1 are computed and every ``stride``-th kept.
- **grad_input**: ``a`` dL/dy spread to every ``stride``-th position (zeros between) and padded by the kernel's
  extent less one, ``k`` the weights flipped, K and C swapped (and conjugated, complex): the padded input's
  gradient, cropped to the input.
- **grad_weight**: the sum over the positions of dL/dy, cut into tiles instead: each tile of dL/dy spread (flipped)
  convolved with the input's tile that its outputs read; the mixing sums over the images and tiles
  (``(K/G x N·tiles) @ (N·tiles x C/G)``); dL/dw is read at the taps. For complex dtypes it uses conj(x).

The backend supplies the transforms (:class:`~gemmconv.backends.kernels.FFTKernels`); the weights' spectra are
cached in the mixing's layout (:data:`SPECTRA_CACHE`, content-checked and bounded like Winograd's transformed
filters). A non-finite input reaches every output of its image's transform, not just those that read it.
"""

from __future__ import annotations

from typing import Any

from ..backends.kernels import FFTKernels
from ..core.prepared import Prepared
from ..core.registry import GRAD_INPUT, GRAD_WEIGHT, PassImpl, Strategy
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from . import fft_grad
from ._common import add_bias
from .fft_spectra import (
    SPECTRA_CACHE,
    Tiling,
    correlate,
    kernel_spectrum,
    padded_lengths,
    pass_tiling,
    spectra_bytes,
    supports,
    tiles_of,
    trailing,
    written,
)

__all__ = ["SPECTRA_CACHE", "STRATEGY", "prepare", "run", "supports"]


def _forward(backend: FFTKernels, spec: ConvSpec, tile: Tiling) -> Any:
    xp = backend.xp
    before = tuple(a for a, _ in spec.padding)
    every = tuple(p - e + 1 for p, e in zip(padded_lengths(spec), tile.extent, strict=True))  # outputs at stride 1
    strided = trailing([slice(None, None, s) for s in spec.stride])

    def run(x: Any, w: Any, b: Any, out: Any) -> Any:
        wt = kernel_spectrum(backend, w, tile, spec.dilation, spec.groups)
        y = correlate(backend, tiles_of(xp, x, before, tile), wt, tile, every)[strided]  # (N, K, *out)
        return add_bias(written(xp, y, out), b)

    return run


def prepare(backend: FFTKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    tile = pass_tiling(backend, spec, "forward")
    return Prepared(_forward(backend, spec, tile), ("fft", "mix", "ifft"), spectra_bytes(spec, tile, spec.c, spec.k,
                                                                                           spec.n))


def run(backend: FFTKernels, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    return prepare(backend, spec)(x, w, b, None)


STRATEGY = Strategy(
    name="fft",
    run=run,
    prepare=prepare,
    supports=supports,
    needs=("fft",),
    backward={GRAD_INPUT: PassImpl(fft_grad.prepare_grad_input, supports, ("fft",)),
              GRAD_WEIGHT: PassImpl(fft_grad.prepare_grad_weight, supports, ("fft",))},
    description="FFT: the convolution theorem, one transform per signal and a GEMM per frequency; its cost "
    "hardly grows with the kernel, its error is relative to the largest values",
    dims=(1, 2, 3),
)
