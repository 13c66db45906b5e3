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
    """NumPy arrays; kernels compiled with numba, GEMMs through NumPy's BLAS.

    Temporaries (im2col's column matrices, Winograd's transformed tiles and their product) live in
    buffers kept per thread and reused by the next call, so a large layer does not page-fault its
    workspace in afresh every time (glibc returns allocations over 32 MiB to the system on free).
    The buffers stay allocated, as large as the largest layer seen; :meth:`clear_workspace` frees
    them.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def _scratch(self, key: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A reused C-contiguous buffer of ``shape`` for temporary ``key`` on this thread."""
        bufs = self._local.__dict__.setdefault("bufs", {})
        size = int(np.prod(shape, dtype=np.int64))
        buf = bufs.get(key)
        if buf is None or buf.dtype != dtype or buf.size < size:
            buf = bufs[key] = np.empty(size, dtype=dtype)
        return buf[:size].reshape(shape)

    def clear_workspace(self) -> None:
        """Free this thread's reused buffers."""
        self._local.__dict__.pop("bufs", None)

    def peak_memory(self, fn: Any) -> tuple[Any, int]:
        self.clear_workspace()  # so the measured call allocates (and reports) its workspace
        return super().peak_memory(fn)

    def matmul(self, a: Any, b: Any, scratch: bool = False) -> Any:
        if not scratch:
            return np.matmul(a, b)
        shape = (*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1])
        return np.matmul(a, b, out=self._scratch("gemm", shape, np.result_type(a, b)))

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
        cols = self._scratch("cols", (spec.n, spec.c * spec.kh * spec.kw, spec.oh * spec.ow), x.dtype)
        _launch(
            "im2col", _c(x), cols, spec.kh, spec.kw, spec.sh, spec.sw, spec.pt, spec.pl, spec.dh, spec.dw, spec.oh,
            spec.ow,
        )
        return cols

    def direct(self, x: Any, w: Any, b: Any | None, spec: ConvSpec) -> Any:
        out = np.empty(spec.out_shape, dtype=x.dtype)
        bias = _c(b) if b is not None else np.zeros(spec.k, dtype=x.dtype)
        _launch(
            "direct", _c(x), _c(w), bias, out, spec.sh, spec.sw, spec.pt, spec.pl, spec.dh, spec.dw,
            spec.groups,
        )
        return out

    def winograd_input(self, x: Any, spec: ConvSpec, m: int, th: int, tw: int) -> Any:
        t = m + 2
        v = self._scratch("wino_v", (t, t, spec.c, spec.n * th * tw), x.dtype)
        _launch("winograd_input", _c(x), v, m, th, tw, spec.pt, spec.pl)
        return v

    def winograd_output(self, mt: Any, b: Any | None, spec: ConvSpec, m: int, th: int, tw: int) -> Any:
        out = np.empty(spec.out_shape, dtype=mt.dtype)
        bias = _c(b) if b is not None else np.zeros(spec.k, dtype=mt.dtype)
        _launch("winograd_output", _c(mt), out, bias, m, th, tw)
        return out
