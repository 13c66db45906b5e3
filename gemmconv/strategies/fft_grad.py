"""The backward passes of ``fft`` (:mod:`.fft` describes all three): grad_input and grad_weight, in every D and
dtype."""

from __future__ import annotations

from typing import Any

from ..backends.kernels import FFTKernels
from ..core.prepared import Prepared
from ..core.registry import GRAD_INPUT
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from .fft_spectra import Geometry, axes_slices, geometry, mix, placed, spectra_bytes, weight_spectrum

__all__ = ["prepare_grad_input", "prepare_grad_weight"]


def _grad_input(backend: FFTKernels, spec: ConvSpec, geo: Geometry) -> Any:
    xp = backend.xp
    before = tuple(a for a, _ in spec.padding)

    def run(gy: Any, w: Any, bias: Any, out: Any) -> Any:
        spread = placed(xp, gy, geo.fft, axes_slices((0,) * spec.ndim, spec.out_size, spec.stride))
        gs = backend.spectrum(spread, geo.fft, geo.real)  # (N, K, *f)
        dxs = mix(xp, gs, weight_spectrum(backend, w, spec, geo, GRAD_INPUT), spec.groups, "input")  # (N, C, *f)
        dx = backend.signal(dxs, geo.fft, geo.real)[axes_slices(before, spec.size, (1,) * spec.ndim)]  # unpadded
        if out is None:
            out = xp.ascontiguousarray(dx)
        else:
            out[...] = dx
        if bias is not None:
            out += bias.reshape(1, -1, *(1,) * spec.ndim)  # (C,) -> (1, C, 1, ...)
        return out

    return run


def _grad_weight(backend: FFTKernels, spec: ConvSpec, geo: Geometry) -> Any:
    xp = backend.xp
    before = tuple(a for a, _ in spec.padding)
    # dL/dy spread by the stride and flipped: dL/dy[o] at spread - 1 - o·stride
    flipped = (Ellipsis, *(slice(sp - 1, None, -s) for sp, s in zip(geo.spread, spec.stride, strict=True)))
    taps = axes_slices(tuple(sp - 1 for sp in geo.spread), spec.kernel, spec.dilation)

    def run(x: Any, gy: Any, _: Any, out: Any) -> Any:
        where = axes_slices(before, spec.size, (1,) * spec.ndim)
        conj = not geo.real  # dL/dw = Σ dL/dy · conj(x) (torch autograd's, for complex)
        xs = backend.spectrum(placed(xp, x, geo.fft, where, conj) if any(before) or conj else x, geo.fft,
                              geo.real)  # (N, C, *f)
        gs = backend.spectrum(placed(xp, gy, geo.fft, flipped), geo.fft, geo.real)  # (N, K, *f)
        dw = backend.signal(mix(xp, gs, xs, spec.groups, "weight"), geo.fft, geo.real)[taps]  # (K, C/G, *kernel)
        if out is None:
            return xp.ascontiguousarray(dw)
        out[...] = dw
        return out

    return run


def prepare_grad_input(backend: FFTKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    geo = geometry(backend, spec)
    return Prepared(_grad_input(backend, spec, geo), ("fft", "mix", "ifft"), spectra_bytes(spec, geo.fft))


def prepare_grad_weight(backend: FFTKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    geo = geometry(backend, spec)
    return Prepared(_grad_weight(backend, spec, geo), ("fft", "mix", "ifft"), spectra_bytes(spec, geo.fft))
