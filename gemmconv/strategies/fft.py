"""``fft``: convolution by the convolution theorem, in every D and dtype, every pass.

Each pass is one correlation of two zero-padded signals at a common transform length ``F`` per axis (the padded
input's length P, rounded up to a fast length: no product wraps around onto an output that is kept), then a channel
mixing per frequency, then one inverse transform and a crop:

- **forward**: ``y = x ⋆ w``: the spectra of the padded input and of the weights flipped (and dilated: zeros
  between the taps), ``Y[n, k] = Σ_c X[n, c]·W[k, c]`` per frequency, the output read from ``E - 1`` on
  (``E``: the kernel's extent) every ``stride``-th position: a stride is a subsampling.
- **grad_input**: dL/dy spread to every ``stride``-th position (zeros between), convolved with the (dilated)
  weights: ``DX[n, c] = Σ_k G[n, k]·W[k, c]``, cropped to the input (its padding dropped).
- **grad_weight**: the padded input correlated with dL/dy spread and flipped: ``DW[k, c] = Σ_n G[n, k]·X[n, c]``,
  read at the taps (every ``dilation``-th position from the spread's length less one).

Complex dtypes transform as they are (no pairs): grad_input uses the conjugated weights and grad_weight the
conjugated input, as torch autograd does. Real ones use the half spectra of real transforms. The mixing is one
batched GEMM over the frequencies (``(K/G x C/G) @ (C/G x N)`` per group), or a product of broadcast arrays where
a group has one input channel (depthwise).

The backend supplies the transforms (:class:`~gemmconv.backends.kernels.FFTKernels`); the weights' spectra are
cached (:data:`SPECTRA_CACHE`, content-checked and bounded like Winograd's transformed filters).
"""

from __future__ import annotations

from typing import Any

from ..backends.kernels import FFTKernels
from ..core.prepared import Prepared
from ..core.registry import GRAD_INPUT, GRAD_WEIGHT, PassImpl, Strategy
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from . import fft_grad
from .fft_spectra import (
    SPECTRA_CACHE,
    Geometry,
    axes_slices,
    geometry,
    mix,
    placed,
    spectra_bytes,
    supports,
    weight_spectrum,
)

__all__ = ["SPECTRA_CACHE", "STRATEGY", "prepare", "run", "supports"]


def _forward(backend: FFTKernels, spec: ConvSpec, geo: Geometry) -> Any:
    xp = backend.xp
    before = tuple(a for a, _ in spec.padding)
    start = tuple(e - 1 for e in geo.extent)

    def run(x: Any, w: Any, b: Any, out: Any) -> Any:
        where = axes_slices(before, spec.size, (1,) * spec.ndim)
        xs = backend.spectrum(placed(xp, x, geo.fft, where) if any(before) else x, geo.fft, geo.real)  # (N, C, *f)
        ys = mix(xp, xs, weight_spectrum(backend, w, spec, geo, "forward"), spec.groups, "forward")  # (N, K, *f)
        y = backend.signal(ys, geo.fft, geo.real)[axes_slices(start, spec.out_size, spec.stride)]  # cropped
        if out is None:
            out = xp.ascontiguousarray(y)
        else:
            out[...] = y
        if b is not None:
            out += b.reshape(1, -1, *(1,) * spec.ndim)  # (K,) -> (1, K, 1, ...)
        return out

    return run


def prepare(backend: FFTKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    geo = geometry(backend, spec)
    return Prepared(_forward(backend, spec, geo), ("fft", "mix", "ifft"), spectra_bytes(spec, geo.fft))


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
