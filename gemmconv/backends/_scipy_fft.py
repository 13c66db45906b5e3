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

    def signal(self, a: Any, shape: tuple[int, ...], axes: tuple[int, ...], real: bool, overwrite: bool = False,
               keep: tuple[slice, ...] | None = None) -> Any:
        fft, workers = _fft(), available()
        keep = keep or tuple(slice(None) for _ in axes)
        for n, axis, kept in zip(shape[:-1], axes[:-1], keep[:-1], strict=True):  # complex along these, each cut
            a = _along(fft.ifft(a, n=n, axis=axis, workers=workers, overwrite_x=overwrite), axis, kept)
            overwrite = True  # a temporary from here on
        last = (fft.irfft if real else fft.ifft)(a, n=shape[-1], axis=axes[-1], workers=workers,
                                                 overwrite_x=overwrite)
        return _along(last, axes[-1], keep[-1])


def _along(a: Any, axis: int, kept: slice) -> Any:
    """``a`` cut to ``kept`` along ``axis`` (a view)."""
    return a[(slice(None),) * axis + (kept,)]
