"""The CuPy backend: CuPy arrays on an NVIDIA GPU, CUDA kernels compiled by NVRTC, cuBLAS GEMMs.

Everything runs on CuPy's current stream, on the device of the input, with no
transfer to or from the host. GEMMs go through ``cupy.matmul`` (cuBLAS); for
float16 CuPy accumulates them in float32, and the CUDA kernels here accumulate
in float32 for float16 and float32, in float64 for float64. TF32 is off unless
the user sets ``CUPY_TF32=1`` before importing CuPy.
"""

from __future__ import annotations

import contextlib
import functools
import os
from importlib import resources
from typing import Any

import numpy as np

from ..core._forksafe import ForkSafeLock
from ..core.spec import ConvSpec
from .cuda_launches import Launch, LaunchCache, LaunchSet, launch
from .kernels import DirectKernels, Im2colKernels, WinogradKernels
from .profiling import Profiler
from .scheduling import Scheduler

__all__ = ["CupyBackend"]

_CTYPES = {"float16": "__half", "float32": "float", "float64": "double"}
_BLOCK = 256
_TILE, _RY = 32, 4  # direct_tiled: a 32 x 32 output patch per block, 32 x 8 threads, 4 rows each
_SMEM_LIMIT = 48 * 1024  # what a block may use without opting in to more


def _name_expressions() -> list[str]:
    names = []
    for t in _CTYPES.values():
        names += [f"im2col<{t}>", f"direct_tiled<{t}, {_TILE}, {_RY}>", f"direct_global<{t}>"]
        names += [f"winograd_{io}<{t}, {m}>" for io in ("input", "output", "filter") for m in (2, 4)]
    return names


class CudaProfiler(Profiler):
    """CUDA events for times, a CuPy memory hook for peak memory."""

    peak_gemm_size = 8192

    def synchronize(self) -> None:
        import cupy

        cupy.cuda.get_current_stream().synchronize()

    def time_calls(self, fn: Any, repeat: int) -> list[float]:
        """GPU time of each call, from CUDA events recorded around it on the current stream."""
        import cupy

        pairs = []
        for _ in range(repeat):
            start, end = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            fn()
            end.record()
            pairs.append((start, end))
        pairs[-1][1].synchronize()
        return [cupy.cuda.get_elapsed_time(a, b) / 1e3 for a, b in pairs]

    def peak_memory(self, fn: Any) -> tuple[Any, int]:
        """``fn()`` and the peak device bytes it allocated beyond its result (a CuPy memory hook)."""
        hook = _PeakHook()
        with hook:
            result = fn()
        self.synchronize()
        return result, max(0, hook.peak - int(getattr(result, "nbytes", 0)))


class CupyBackend(Im2colKernels, DirectKernels, WinogradKernels):
    """CuPy arrays; CUDA kernels (``backends/cuda/kernels.cu``), GEMMs through cuBLAS."""

    name = "cupy"
    module = "cupy"
    dtypes = ("float16", "float32", "float64", "complex64", "complex128")
    caches_filters = False  # a content check would cost a device->host sync per call; one fused kernel instead
    index_limit = 2**31 - 1  # the CUDA kernels take int (32-bit) sizes and index planes in int
    has_devices = True
    scheduler = Scheduler()  # the whole problem in one launch: a GPU needs all its parallelism at once
    profiler = CudaProfiler()

    def __init__(self) -> None:
        self._modules: dict[int, Any] = {}
        self._functions: dict[tuple[int, str], Any] = {}
        self._lock = ForkSafeLock()
        self._launch_sets = LaunchCache()

    def launches(self, spec: ConvSpec, dtype: Any) -> LaunchSet:
        """The kernel launches of ``spec`` in ``dtype`` on the current device: what a CUDA-graph capture of
        the convolution needs besides its arrays, in one place (see :mod:`.cuda_launches`)."""
        device = self.current_device()

        def make() -> LaunchSet:
            import cupy

            return LaunchSet(device, cupy.cuda.device.get_cublas_handle())

        return self._launch_sets.get_or_make((spec, str(dtype), device), make)

    def clear_workspace(self) -> None:
        """Forget the launch sets (CuPy's memory pool holds the device memory: ``cupy.get_default_memory_pool()``)."""
        self._launch_sets.clear()

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
        from cupy_backends.cuda.api import runtime

        return int(runtime.getDevice())

    # -- compiled kernels ------------------------------------------------------
    def _kernel(self, name: str) -> Any:
        """The compiled kernel ``name`` on the current device (compiled once per device, then a dict lookup)."""
        key = (self.current_device(), name)
        fn = self._functions.get(key)
        if fn is None:
            import cupy

            with self._lock:
                module = self._modules.get(key[0])
                if module is None:
                    code = resources.files(__package__).joinpath("cuda/kernels.cu").read_text()
                    module = cupy.RawModule(code=code, options=("-std=c++17",), name_expressions=_name_expressions())
                    self._modules[key[0]] = module
                fn = self._functions[key] = module.get_function(name)
        return fn

    @staticmethod
    def _ctype(a: Any) -> str:
        return _CTYPES[a.dtype.name]

    def im2col(self, x: Any, spec: ConvSpec) -> Any:
        import cupy

        x = cupy.ascontiguousarray(x)
        cols = cupy.empty((spec.n, spec.c * spec.kh * spec.kw, spec.oh * spec.ow), dtype=x.dtype)

        def build() -> Launch:
            sizes = (spec.n, spec.c, spec.height, spec.width, spec.kh, spec.kw, spec.sh, spec.sw, spec.pt, spec.pl,
                     spec.dh, spec.dw, spec.oh, spec.ow)
            grid = (-(-spec.n * spec.c * spec.kh * spec.kw // 8),)  # a warp per column-matrix row, 8 per block
            return launch(self._kernel(f"im2col<{self._ctype(x)}>"), grid, (32, 8), sizes)

        self.launches(spec, x.dtype).get("im2col", build)(x, cols)
        return cols

    def direct(self, x: Any, w: Any, b: Any | None, spec: ConvSpec, out: Any = None) -> Any:
        import cupy

        x, w = cupy.ascontiguousarray(x), cupy.ascontiguousarray(w)
        bias = cupy.ascontiguousarray(b) if b is not None else w  # never read when has_bias == 0
        out = cupy.empty(spec.out_shape, dtype=x.dtype) if out is None else out
        self.launches(spec, x.dtype).get("direct", lambda: self._direct_launch(spec, x.dtype))(
            x, w, bias, np.int32(b is not None), out)
        return out

    def _direct_launch(self, spec: ConvSpec, dtype: Any) -> Launch:
        """direct_tiled (a 32x32 output patch per block, its receptive field in shared memory) where that
        fits, else direct_global (one thread per output)."""
        acc_size = 8 if str(dtype) == "float64" else 4
        in_h = (_TILE - 1) * spec.sh + spec.ekh
        in_w = (_TILE - 1) * spec.sw + spec.ekw
        smem = in_h * in_w * acc_size
        common = (spec.c, spec.height, spec.width, spec.k, spec.cg, spec.kh, spec.kw, spec.sh, spec.sw,
                  spec.pt, spec.pl, spec.dh, spec.dw, spec.oh, spec.ow, spec.groups)
        t = _CTYPES[str(dtype)]
        if smem <= _SMEM_LIMIT and spec.k < 65536 and spec.n < 65536:
            tiles_h, tiles_w = -(-spec.oh // _TILE), -(-spec.ow // _TILE)
            return launch(self._kernel(f"direct_tiled<{t}, {_TILE}, {_RY}>"), (tiles_h * tiles_w, spec.k, spec.n),
                          (_TILE, _TILE // _RY), (*common, tiles_w), shared_mem=smem)
        total = spec.n * spec.k * spec.oh * spec.ow
        grid = min(-(-total // _BLOCK), 65535 * 32)
        return launch(self._kernel(f"direct_global<{t}>"), (grid,), (_BLOCK,), (spec.n, *common))

    def winograd_input(self, x: Any, spec: ConvSpec, m: int, th: int, tw: int, reuse: bool = False) -> Any:
        import cupy

        x = cupy.ascontiguousarray(x)
        t = m + 2
        p = spec.n * th * tw
        v = cupy.empty((t, t, spec.c, p), dtype=x.dtype)

        def build() -> Launch:
            kernel = self._kernel(f"winograd_input<{self._ctype(x)}, {m}>")
            return launch(kernel, (-(-spec.c * p // _BLOCK),), (_BLOCK,),
                          (spec.n, spec.c, spec.height, spec.width, th, tw, spec.pt, spec.pl))

        self.launches(spec, x.dtype).get(f"winograd_input{m}", build)(x, v)
        return v

    def winograd_filter(self, w: Any, spec: ConvSpec, g: Any, m: int) -> Any:
        import cupy

        w = cupy.ascontiguousarray(w)
        t = m + 2
        filters = spec.k * spec.cg
        u = cupy.empty((t * t, spec.groups, spec.kg, spec.cg), dtype=w.dtype)  # (T², G, K/G, C/G)

        def build() -> Launch:
            kernel = self._kernel(f"winograd_filter<{self._ctype(w)}, {m}>")
            return Launch(kernel, (-(-filters // _BLOCK),), (_BLOCK,), (np.int64(filters),))  # a 64-bit count

        self.launches(spec, w.dtype).get(f"winograd_filter{m}", build)(w, u)
        return u

    def matmul(self, a: Any, b: Any, scratch: bool = False, out: Any = None) -> Any:
        c = _cublas_matmul(a, b)  # CuPy's memory pool already reuses device memory
        if out is None:
            return c
        out[...] = c
        return out

    def winograd_output(self, mt: Any, b: Any | None, spec: ConvSpec, m: int, th: int, tw: int,
                        out: Any = None) -> Any:
        import cupy

        mt = cupy.ascontiguousarray(mt)
        out = cupy.empty(spec.out_shape, dtype=mt.dtype) if out is None else out
        bias = cupy.ascontiguousarray(b) if b is not None else mt  # never read when has_bias == 0
        p = spec.n * th * tw

        def build() -> Launch:
            kernel = self._kernel(f"winograd_output<{self._ctype(mt)}, {m}>")
            return launch(kernel, (-(-spec.k * p // _BLOCK),), (_BLOCK,), (spec.n, spec.k, spec.oh, spec.ow, th, tw))

        self.launches(spec, mt.dtype).get(f"winograd_output{m}", build)(mt, out, bias, np.int32(b is not None))
        return out


@functools.cache
def _peak_hook_class() -> Any:
    import cupy

    class PeakHook(cupy.cuda.MemoryHook):
        """Tracks the bytes allocated from CuPy's memory pool while it is active, and their peak."""

        name = "gemmconv_peak"

        def __init__(self) -> None:
            self.current = self.peak = 0
            self._sizes: dict[int, int] = {}

        def malloc_postprocess(self, device_id: int, size: int, mem_size: int, mem_ptr: int, pmem_id: int) -> None:
            self._sizes[mem_ptr] = mem_size
            self.current += mem_size
            self.peak = max(self.peak, self.current)

        def free_postprocess(self, device_id: int, mem_size: int, mem_ptr: int, pmem_id: int) -> None:
            self.current -= self._sizes.pop(mem_ptr, 0)

    return PeakHook


def _PeakHook() -> Any:
    return _peak_hook_class()()


#: host-side alpha = 1 and beta = 0 for cuBLAS, made once (their addresses are passed)
_SCALARS = {t: (np.array(1, dtype=t), np.array(0, dtype=t)) for t in (np.float32, np.float64)}


def gemm_plan(a: Any, b: Any) -> tuple[tuple[int, ...], list[list[int]], list[int]]:
    """See :func:`_gemm_plan`; memoised on the operands' shapes and strides."""
    return _gemm_plan(tuple(a.shape), tuple(a.strides), tuple(b.shape), tuple(b.strides), a.itemsize)


@functools.lru_cache(maxsize=1024)
def _gemm_plan(a_shape: tuple[int, ...], a_strides: tuple[int, ...], b_shape: tuple[int, ...],
               b_strides: tuple[int, ...], itemsize: int) -> tuple[tuple[int, ...], list[list[int]], list[int]]:
    """How to run ``a @ b`` (C-contiguous operands, NumPy broadcasting) as strided-batched GEMMs.

    Returns the batch shape of the result, the loops to run in Python (``[size, stride_a, stride_b,
    stride_c]`` each, element strides) and the one batch dimension to give cuBLAS (same form).
    A broadcast batch dimension has stride 0; dimensions whose strides line up are merged, so the
    Python loops are empty unless a batch dimension is broadcast in one operand but not in an
    inner one (the groups of a grouped convolution with N > 1, say); then cuBLAS batches the
    largest dimension and Python loops over the others.
    """
    batch = tuple(int(v) for v in np.broadcast_shapes(a_shape[:-2], b_shape[:-2]))
    nd = len(batch)
    m, n = a_shape[-2], b_shape[-1]

    def strides(shape: tuple[int, ...], st: tuple[int, ...]) -> list[int]:  # element strides, 0 where broadcast
        pad = nd - (len(shape) - 2)
        full = (1,) * pad + shape[:-2]
        el = [0] * pad + [v // itemsize for v in st[:-2]]
        return [0 if sz == 1 else v for sz, v in zip(full, el, strict=False)]

    c_strides = [int(np.prod(batch[i + 1:], dtype=np.int64)) * m * n for i in range(nd)]
    dims = [[size, sa, sb, sc] for size, sa, sb, sc in
            zip(batch, strides(a_shape, a_strides), strides(b_shape, b_strides), c_strides, strict=False) if size != 1]
    merged: list[list[int]] = []
    for d in dims:  # merge (outer, inner) when outer stride == inner stride * inner size, for a, b and c
        if merged and all(merged[-1][i] == d[i] * d[0] for i in (1, 2, 3)):
            merged[-1] = [merged[-1][0] * d[0], d[1], d[2], d[3]]
        else:
            merged.append(d)
    if not merged:
        merged = [[1, 0, 0, m * n]]
    big = max(range(len(merged)), key=lambda i: merged[i][0])  # cuBLAS batches the largest, Python loops the rest
    return batch, merged[:big] + merged[big + 1:], merged[big]


def _cublas_matmul(a: Any, b: Any) -> Any:
    """``a @ b`` with NumPy broadcasting over the batch dimensions, as strided-batched cuBLAS GEMMs.

    Unlike ``cupy.matmul`` this keeps float16 in float16 (accumulating in float32, on the tensor
    cores), where ``cupy.matmul`` casts to float32 and back, and it never copies a broadcast
    operand or builds pointer arrays: a broadcast batch dimension is a batch stride of 0.
    """
    import cupy
    from cupy_backends.cuda.api import runtime
    from cupy_backends.cuda.libs import cublas

    a, b = cupy.ascontiguousarray(a), cupy.ascontiguousarray(b)
    m, k = a.shape[-2:]
    n = b.shape[-1]
    batch, outer, inner = gemm_plan(a, b)
    c = cupy.empty((*batch, m, n), dtype=a.dtype)
    if c.size == 0:
        return c
    dtype = a.dtype.name
    data_type = {"float16": runtime.CUDA_R_16F, "float32": runtime.CUDA_R_32F, "float64": runtime.CUDA_R_64F}[dtype]
    if dtype == "float64":
        compute, scalar = cublas.CUBLAS_COMPUTE_64F, np.float64
    elif dtype == "float32" and os.environ.get("CUPY_TF32", "0") not in ("", "0"):
        compute, scalar = cublas.CUBLAS_COMPUTE_32F_FAST_TF32, np.float32  # the user opted in, as for CuPy
    else:
        compute, scalar = cublas.CUBLAS_COMPUTE_32F, np.float32
    one, zero = _SCALARS[scalar]
    handle = cupy.cuda.device.get_cublas_handle()
    size = a.itemsize
    op_n = 0  # CUBLAS_OP_N
    for index in np.ndindex(*(d[0] for d in outer)):
        oa, ob, oc = (sum(i * d[j] for i, d in zip(index, outer, strict=False)) * size for j in (1, 2, 3))
        # row-major C = A @ B is column-major C^T = B^T A^T: cuBLAS gets (b, a) with m and n swapped
        cublas.gemmStridedBatchedEx(
            handle, op_n, op_n, n, m, k, one.ctypes.data,
            b.data.ptr + ob, data_type, n, inner[2],
            a.data.ptr + oa, data_type, k, inner[1],
            zero.ctypes.data, c.data.ptr + oc, data_type, n, inner[3],
            inner[0], compute, cublas.CUBLAS_GEMM_DEFAULT,
        )
    return c
