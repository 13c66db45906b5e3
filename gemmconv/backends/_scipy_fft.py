"""The Fourier transforms of the NumPy backend: SciPy's ``scipy.fft`` (pocketfft), on as many threads as the call
may use.

SciPy is imported on the first transform, not with gemmconv.
"""

from __future__ import annotations

from typing import Any

from ._threads import available
from .kernels import FFTKernels

__all__ = ["ScipyFFT"]


def _fft() -> Any:
    import scipy.fft  # here, not at the top: importing gemmconv must not import SciPy

    return scipy.fft


class ScipyFFT(FFTKernels):
    """:class:`~.kernels.FFTKernels` by ``scipy.fft``: single precision stays single, and ``workers`` follows
    gemmconv's thread settings (the threads the call may keep busy)."""

    def fast_length(self, n: int, real: bool) -> int:
        return int(_fft().next_fast_len(n, real))

    def spectrum(self, a: Any, shape: tuple[int, ...], axes: tuple[int, ...], real: bool) -> Any:
        fft = _fft()
        return (fft.rfftn if real else fft.fftn)(a, s=shape, axes=axes, workers=available())

    def signal(self, a: Any, shape: tuple[int, ...], axes: tuple[int, ...], real: bool, overwrite: bool = False) -> Any:
        fft = _fft()
        return (fft.irfftn if real else fft.ifftn)(a, s=shape, axes=axes, workers=available(), overwrite_x=overwrite)
