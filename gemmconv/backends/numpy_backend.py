"""The NumPy backend: NumPy arrays on the CPU, numba-compiled kernels, BLAS GEMMs."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from ..spec import ConvSpec
from .base import Backend

__all__ = ["NumpyBackend"]


#: one compiled kernel runs at a time (each uses every core; numba's workqueue layer forbids
#: concurrent launches); GEMMs between kernels are not serialised
_LAUNCH = threading.Lock()


def _launch(kernel: str, *args: Any) -> None:
    """Run compiled kernel ``kernel`` (numba is imported on first use, so ``import gemmconv`` stays cheap)."""
    from . import _numba_kernels

    with _LAUNCH:
        getattr(_numba_kernels, kernel)(*args)


def _c(a: Any) -> np.ndarray:
    """C-contiguous (what the compiled kernels expect); no copy if it already is."""
    return np.ascontiguousarray(a)


class NumpyBackend(Backend):
    """NumPy arrays; kernels compiled with numba, GEMMs through NumPy's BLAS."""

    name = "numpy"
    module = "numpy"
    dtypes = ("float32", "float64")

    @property
    def xp(self) -> Any:
        return np

    def owns(self, a: Any) -> bool:
        return isinstance(a, np.ndarray)

    def native(self, a: Any) -> Any:
        return a if a.dtype.isnative else a.astype(a.dtype.newbyteorder("="))

    def im2col(self, x: Any, spec: ConvSpec) -> Any:
        cols = np.empty((spec.n, spec.c * spec.kh * spec.kw, spec.oh * spec.ow), dtype=x.dtype)
        _launch(
            "im2col", _c(x), cols, spec.kh, spec.kw, spec.sh, spec.sw, spec.pt, spec.pl, spec.dh, spec.dw, spec.oh,
            spec.ow,
        )
        return cols

    def direct(self, x: Any, w: Any, b: Any | None, spec: ConvSpec) -> Any:
        out = np.empty(spec.out_shape, dtype=x.dtype)
        bias = _c(b) if b is not None else np.zeros(1, dtype=x.dtype)
        _launch(
            "direct", _c(x), _c(w), bias, b is not None, out, spec.sh, spec.sw, spec.pt, spec.pl, spec.dh, spec.dw,
            spec.groups,
        )
        return out

    def winograd_input(self, x: Any, spec: ConvSpec, bt: Any, m: int, th: int, tw: int) -> Any:
        t = m + 2
        v = np.empty((t, t, spec.c, spec.n * th * tw), dtype=x.dtype)
        _launch("winograd_input", _c(x), v, bt, m, th, tw, spec.pt, spec.pl)
        return v

    def winograd_output(self, mt: Any, b: Any | None, spec: ConvSpec, at: Any, m: int, th: int, tw: int) -> Any:
        out = np.empty(spec.out_shape, dtype=mt.dtype)
        bias = _c(b) if b is not None else np.zeros(1, dtype=mt.dtype)
        _launch("winograd_output", _c(mt), out, at, bias, b is not None, m, th, tw)
        return out
