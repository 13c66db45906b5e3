"""The CuPy backend: CuPy arrays on an NVIDIA GPU, CUDA kernels compiled by NVRTC, cuBLAS GEMMs.

Everything runs on CuPy's current stream, on the device of the input, with no
transfer to or from the host. GEMMs go through ``cupy.matmul`` (cuBLAS); for
float16 CuPy accumulates them in float32, and the CUDA kernels here accumulate
in float32 for float16 and float32, in float64 for float64. TF32 is off unless
the user sets ``CUPY_TF32=1`` before importing CuPy.
"""

from __future__ import annotations

import contextlib
import threading
from importlib import resources
from typing import Any

from ..spec import ConvSpec
from .base import Backend

__all__ = ["CupyBackend"]

_CTYPES = {"float16": "__half", "float32": "float", "float64": "double"}
_BLOCK = 256
_TILE = 16  # direct_tiled's output patch is _TILE x _TILE, one thread each
_SMEM_LIMIT = 48 * 1024  # what a block may use without opting in to more


def _name_expressions() -> list[str]:
    names = []
    for t in _CTYPES.values():
        names += [f"im2col<{t}>", f"direct_tiled<{t}, {_TILE}>", f"direct_global<{t}>"]
        names += [f"winograd_{io}<{t}, {m}>" for io in ("input", "output") for m in (2, 4)]
    return names


class CupyBackend(Backend):
    """CuPy arrays; CUDA kernels (``backends/cuda/kernels.cu``), GEMMs through cuBLAS."""

    name = "cupy"
    module = "cupy"
    dtypes = ("float16", "float32", "float64")
    caches_filters = False  # see winograd.py: a content check would cost a device->host sync per call

    def __init__(self) -> None:
        self._modules: dict[int, Any] = {}
        self._lock = threading.Lock()

    @property
    def xp(self) -> Any:
        import cupy

        return cupy

    def owns(self, a: Any) -> bool:
        import cupy

        return isinstance(a, cupy.ndarray)

    def device_key(self, a: Any) -> int:
        return int(a.device.id)

    def data_ptr(self, a: Any) -> int:
        return int(a.data.ptr)

    def device_context(self, a: Any) -> contextlib.AbstractContextManager:
        return a.device  # kernels, GEMMs and allocations on the device holding the input

    def current_device(self) -> int:
        import cupy

        return int(cupy.cuda.Device().id)

    # -- compiled kernels ------------------------------------------------------
    def _kernel(self, name: str) -> Any:
        import cupy

        dev = self.current_device()
        module = self._modules.get(dev)
        if module is None:
            with self._lock:
                module = self._modules.get(dev)
                if module is None:
                    code = resources.files(__package__).joinpath("cuda/kernels.cu").read_text()
                    module = cupy.RawModule(code=code, options=("-std=c++17",), name_expressions=_name_expressions())
                    self._modules[dev] = module
        return module.get_function(name)

    @staticmethod
    def _ctype(a: Any) -> str:
        return _CTYPES[a.dtype.name]

    def im2col(self, x: Any, spec: ConvSpec) -> Any:
        import cupy

        x = cupy.ascontiguousarray(x)
        p = spec.oh * spec.ow
        cols = cupy.empty((spec.n, spec.c * spec.kh * spec.kw, p), dtype=x.dtype)
        grid = (spec.n * spec.c * spec.kh * spec.kw, -(-p // _BLOCK))
        args = (x, cols, spec.c, spec.h, spec.w, spec.kh, spec.kw, spec.sh, spec.sw, spec.pt, spec.pl,
                spec.dh, spec.dw, spec.oh, spec.ow)
        self._kernel(f"im2col<{self._ctype(x)}>")(grid, (_BLOCK,), tuple(_i32(a) for a in args))
        return cols

    def direct(self, x: Any, w: Any, b: Any | None, spec: ConvSpec) -> Any:
        import cupy

        x, w = cupy.ascontiguousarray(x), cupy.ascontiguousarray(w)
        bias = cupy.ascontiguousarray(b) if b is not None else w  # never read when has_bias == 0
        out = cupy.empty(spec.out_shape, dtype=x.dtype)
        acc_size = 8 if x.dtype.name == "float64" else 4
        in_h = (_TILE - 1) * spec.sh + spec.ekh
        in_w = (_TILE - 1) * spec.sw + spec.ekw
        smem = in_h * in_w * acc_size
        common = (spec.c, spec.h, spec.w, spec.k, spec.cg, spec.kh, spec.kw, spec.sh, spec.sw, spec.pt, spec.pl,
                  spec.dh, spec.dw, spec.oh, spec.ow, spec.groups)
        t = self._ctype(x)
        if smem <= _SMEM_LIMIT and spec.k < 65536 and spec.n < 65536:
            tiles_h, tiles_w = -(-spec.oh // _TILE), -(-spec.ow // _TILE)
            args = (x, w, bias, int(b is not None), out, *common, tiles_w)
            self._kernel(f"direct_tiled<{t}, {_TILE}>")(
                (tiles_h * tiles_w, spec.k, spec.n), (_TILE, _TILE), tuple(_i32(a) for a in args), shared_mem=smem
            )
        else:
            total = spec.n * spec.k * spec.oh * spec.ow
            args = (x, w, bias, int(b is not None), out, spec.n, *common)
            grid = min(-(-total // _BLOCK), 65535 * 32)
            self._kernel(f"direct_global<{t}>")((grid,), (_BLOCK,), tuple(_i32(a) for a in args))
        return out

    def winograd_input(self, x: Any, spec: ConvSpec, bt: Any, m: int, th: int, tw: int) -> Any:
        import cupy

        x = cupy.ascontiguousarray(x)
        t = m + 2
        p = spec.n * th * tw
        v = cupy.empty((t, t, spec.c, p), dtype=x.dtype)
        args = (x, v, spec.n, spec.c, spec.h, spec.w, th, tw, spec.pt, spec.pl)
        grid = -(-spec.c * p // _BLOCK)
        self._kernel(f"winograd_input<{self._ctype(x)}, {m}>")((grid,), (_BLOCK,), tuple(_i32(a) for a in args))
        return v

    def winograd_output(self, mt: Any, b: Any | None, spec: ConvSpec, at: Any, m: int, th: int, tw: int) -> Any:
        import cupy

        mt = cupy.ascontiguousarray(mt)
        out = cupy.empty(spec.out_shape, dtype=mt.dtype)
        bias = cupy.ascontiguousarray(b) if b is not None else mt  # never read when has_bias == 0
        p = spec.n * th * tw
        args = (mt, out, bias, int(b is not None), spec.n, spec.k, spec.oh, spec.ow, th, tw)
        grid = -(-spec.k * p // _BLOCK)
        self._kernel(f"winograd_output<{self._ctype(mt)}, {m}>")((grid,), (_BLOCK,), tuple(_i32(a) for a in args))
        return out


def _i32(a: Any) -> Any:
    """Python ints as 32-bit C ints (the kernels' ``int`` parameters); arrays pass through."""
    import numpy as np

    return np.int32(a) if isinstance(a, int) else a
