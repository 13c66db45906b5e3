"""The NumPy backend: NumPy arrays on the CPU, numba-compiled kernels, BLAS GEMMs."""

from __future__ import annotations

import contextlib
import functools
import itertools
import math
import os
import threading
from typing import Any

import numpy as np

from ..core._forksafe import ForkSafeLock
from ..core.prepared import Prepared
from ..core.spec import ConvSpec
from . import _numba_backward, _numba_direct, _numba_im2col, _numba_winograd
from ._scipy_fft import ScipyFFT
from ._threads import CallThreads
from .kernels import (
    Col2imKernels,
    DirectGradKernels,
    DirectKernels,
    Im2colKernels,
    WinogradKernels,
    filter_transform,
    grad_tiles,
)
from .profiling import Profiler
from .scheduling import WorkerThreads

__all__ = ["NumpyBackend"]


def _launch(kernel: str, *args: Any) -> None:
    """Run compiled kernel ``kernel`` on the calling thread. Parallel work goes through
    the scheduler's workers (:class:`~.scheduling.WorkerThreads`): numba's own parallel launch measured slower than one
    thread (CPU_NOTES.md)."""
    _KERNELS[kernel](*args)


#: name -> compiled kernel (numba compiles each on its first call, or loads it from its disk cache)
_KERNELS: dict[str, Any] = {
    "im2col": _numba_im2col.im2col,
    "direct": _numba_direct.direct,
    "col2im": _numba_backward.col2im,
    "direct_grad_weight": _numba_backward.direct_grad_weight,
    "winograd_input": _numba_winograd.winograd_input,
    "winograd_output": _numba_winograd.winograd_output,
}


class _CallContext(CallThreads):
    """NumPy's floating-point warnings off and the call's threads decided (see ``NumpyBackend.device_context``)."""

    __slots__ = ("_errstate",)

    def __enter__(self) -> int:
        self._errstate = np.errstate(all="ignore")
        self._errstate.__enter__()
        return super().__enter__()

    def __exit__(self, *exc: object) -> None:
        super().__exit__()
        self._errstate.__exit__(None, None, None)


@functools.lru_cache(maxsize=1)
def _physical_memory() -> int | None:
    """Bytes of physical memory of this machine (None where the OS does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def _rows(v: np.ndarray) -> np.ndarray:
    """The C-contiguous (T², pitch) buffer under a (T², P, C) view of :meth:`NumpyBackend._spaced`, or of a
    C-contiguous (T², P, C) array (the compiled kernels then see contiguous rows)."""
    return np.lib.stride_tricks.as_strided(v, shape=(v.shape[0], v.strides[0] // v.itemsize),
                                           strides=(v.strides[0], v.itemsize))


def _c(a: Any) -> np.ndarray:
    """C-contiguous (what the compiled kernels expect); no copy if it already is.

    The kernels index rows as contiguous vectors, so any other layout (Fortran order, slices with steps,
    negative strides) is copied here. A zero-stride input (``np.broadcast_to``) is copied too: its copy
    takes the memory of an ordinary array of its shape, which the kernels need to read it as rows, and
    never more; nothing writes to an input (a broadcast view is read-only, so a write would raise)."""
    return np.ascontiguousarray(a)


class NumpyBackend(Im2colKernels, DirectKernels, WinogradKernels, Col2imKernels, DirectGradKernels, ScipyFFT):
    """NumPy arrays; kernels compiled with numba, GEMMs through NumPy's BLAS.

    Blocked strategies (im2col, Winograd, 1x1) and ``direct`` run their blocks on its scheduler's
    worker threads (:class:`~.scheduling.WorkerThreads`), each block on one core.
    Temporaries (column matrices, Winograd's transformed tiles and their product) live in buffers
    kept per thread and reused by the next call, so a large layer does not page-fault its
    workspace in afresh every time (glibc returns allocations over 32 MiB to the system on free).
    Each kept buffer is at most :attr:`max_kept_bytes` (64 MiB); :meth:`clear_workspace` (and
    :func:`gemmconv.clear_caches`) frees them. Kernels called from outside return fresh arrays: the
    reuse is the library's own opt-in (``reuse=True``, ``scratch=True``).
    """

    #: largest reused buffer kept between calls, per thread and kind (columns, tiles, GEMM products); blocks
    #: are cut to the scheduler's ``block_bytes``, so only one-block problems come near it
    max_kept_bytes: int = 64 << 20

    def __init__(self) -> None:
        self._local = threading.local()
        self._all_bufs: list[dict[str, Any]] = []  # every thread's buffers, for clear_workspace
        self._bufs_lock = ForkSafeLock()
        self.scheduler = WorkerThreads()
        # a peak-memory measurement first frees the reused buffers, so the measured call allocates its workspace
        self.profiler = Profiler(before_peak=self.clear_workspace)

    def memory_bytes(self, a: Any) -> int | None:
        return _physical_memory()

    def device_context(self, a: Any) -> contextlib.AbstractContextManager:
        """While a convolution runs: NumPy's floating-point warnings off on this thread (NaN or Inf in the
        input make NaN or Inf in the output, as in torch, with no warning; the workers do the same), and its
        threads decided once from the cores free now (:class:`._threads.CallThreads`)."""
        return _CallContext()

    def _scratch(self, key: str, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        """A reused C-contiguous buffer of ``shape`` for temporary ``key`` on this thread."""
        bufs = getattr(self._local, "bufs", None)
        if bufs is None:
            bufs = self._local.bufs = {}
            with self._bufs_lock:
                self._all_bufs.append(bufs)
        size = math.prod(shape)
        buf = bufs.get(key)
        if buf is None or buf.dtype != dtype or buf.size < size:
            buf = np.empty(size, dtype=dtype)
            if buf.nbytes <= self.max_kept_bytes:
                bufs[key] = buf  # kept for the next call; a larger one is freed with its call
        return buf[:size].reshape(shape)

    def clear_workspace(self) -> None:
        """Free the reused buffers of every thread (call it while no convolution runs)."""
        with self._bufs_lock:
            for bufs in self._all_bufs:
                bufs.clear()

    def matmul(self, a: Any, b: Any, scratch: bool = False, out: Any = None) -> Any:
        if out is None and scratch:
            shape = (*np.broadcast_shapes(a.shape[:-2], b.shape[:-2]), a.shape[-2], b.shape[-1])
            out = self._scratch("gemm", shape, np.result_type(a, b))
        return np.matmul(a, b, out=out)

    name = "numpy"
    module = "numpy"
    dtypes = ("float32", "float64", "complex64", "complex128")

    @property
    def xp(self) -> Any:
        return np

    def owns(self, a: Any) -> bool:
        return isinstance(a, np.ndarray)

    def native(self, a: Any) -> Any:
        """``a`` in native byte order, a memory map (``np.memmap``, ``np.load(mmap_mode=...)``) as a plain
        ``numpy.ndarray`` view of its memory: a native copy of a byte-swapped array (big-endian on
        little-endian machines, as FITS files give); ``a`` itself if it already is one. Other subclasses
        (masked arrays, arrays with units) keep their type, whose meaning a plain view would drop. Strides are
        left as they are (what the compiled kernels get is made C-contiguous by :func:`_c`)."""
        if isinstance(a, np.memmap):
            a = a.view(np.ndarray)  # no copy: the same memory (a read-only memory map stays read-only)
        if a.dtype.isnative:
            return a
        native = a.dtype.newbyteorder("=")
        if 0 in a.strides:  # broadcast (np.broadcast_to): swap the elements it holds, broadcast them again
            held = a[tuple(slice(0, 1) if s == 0 else slice(None) for s in a.strides)]
            return np.broadcast_to(held.astype(native), a.shape)
        return a.astype(native)

    def im2col(self, x: Any, spec: ConvSpec) -> Any:
        return self.im2col_part(x, spec, 0, spec.n, 0, spec.oh)

    def im2col_part(self, x: Any, spec: ConvSpec, n0: int, n1: int, o0: int, o1: int, ones_row: bool = False,
                    reuse: bool = False) -> Any:
        crs = spec.c * spec.kh * spec.kw
        shape = (n1 - n0, crs + ones_row, (o1 - o0) * spec.ow)
        if reuse:
            cols = self._scratch("cols", shape, x.dtype)
            # the kernel fills rows :crs only; the ones stay from the last call of this shape on this thread's
            # buffer (the mark, kept with the buffers so clear_workspace drops it, holds the buffer itself, so
            # a reallocated one never matches)
            bufs = self._local.bufs
            mark = bufs.get("ones_mark")
            if ones_row and (mark is None or mark[0] is not cols.base or mark[1] != shape):
                cols[:, crs] = 1
            bufs["ones_mark"] = (cols.base, shape) if ones_row else None
        else:
            cols = np.empty(shape, dtype=x.dtype)
            if ones_row:
                cols[:, crs] = 1
        if (spec.kh, spec.kw, spec.pt, spec.pl) == (1, 1, 0, 0):  # a 1x1 kernel's strided pixels, no padding
            # NumPy's strided copy: faster here than a compiled loop (CPU_NOTES.md)
            ob, sh, sw = o1 - o0, spec.sh, spec.sw
            # (NB, C, OB·OW) rows of cols -> (NB, C, OB, OW)
            np.copyto(cols[:, : spec.c].reshape(n1 - n0, spec.c, ob, spec.ow),
                      x[n0:n1, :, o0 * sh: (o1 - 1) * sh + 1: sh, : (spec.ow - 1) * sw + 1: sw])
            return cols
        _launch(
            "im2col", _c(x), cols, spec.kh, spec.kw, spec.sh, spec.sw, spec.pt, spec.pl, spec.dh, spec.dw, spec.ow,
            n0, o0,
        )
        return cols

    def direct(self, x: Any, w: Any, b: Any | None, spec: ConvSpec, out: Any = None) -> Any:
        out = np.empty(spec.out_shape, dtype=x.dtype) if out is None else out
        x, w, bias = _c(x), _c(w), self._bias(b, spec, x.dtype)
        args = (x, w, bias, out, spec.sh, spec.sw, spec.pt, spec.pl, spec.dh, spec.dw, spec.groups)
        # planes n·K + k, in parts of near-equal size
        self._in_parts("direct", args, spec.n * spec.k, spec.flops < self.scheduler.min_direct_flops)
        return out

    def _in_parts(self, kernel: str, args: tuple[Any, ...], total: int, small: bool) -> None:
        """Kernel ``kernel`` over ``[0, total)`` (its last two arguments): on this thread where the work is
        ``small``, else in near-equal parts (four per worker) on the workers; each part writes its own output."""
        if small:
            _launch(kernel, *args, 0, total)
            return
        parts = min(total, 4 * self.scheduler.workers())
        bounds = [total * i // parts for i in range(parts + 1)]
        self.scheduler.run_blocks(lambda part: _launch(kernel, *args, *part), list(itertools.pairwise(bounds)))

    def direct_runner(self, spec: ConvSpec) -> Prepared:
        """:meth:`direct` with the kernel, its size arguments and (under ``min_direct_flops``) its one part
        on the calling thread decided once: the per-call cost of a small convolution is then the kernel's."""
        if spec.flops >= self.scheduler.min_direct_flops:
            return super().direct_runner(spec)
        kernel = _KERNELS["direct"]
        sizes = (spec.sh, spec.sw, spec.pt, spec.pl, spec.dh, spec.dw, spec.groups, 0, spec.n * spec.k)
        shape, zeros = spec.out_shape, np.zeros(spec.k, dtype=spec.dtype)  # read only, the bias when there is none

        def run(x: Any, w: Any, b: Any, out: Any) -> Any:
            y = np.empty(shape, dtype=x.dtype) if out is None else out
            kernel(_c(x), _c(w), zeros if b is None else _c(b), y, *sizes)
            return y

        # compiled code only: no NumPy warning to silence, no device to select
        return Prepared(run, ("direct",), self.direct_workspace(spec), held_bytes=int(zeros.nbytes),
                        needs_context=False)

    def col2im(self, cols: Any, spec: ConvSpec) -> Any:
        dx = np.zeros((spec.n, spec.c, spec.height, spec.width), dtype=cols.dtype)
        self.col2im_part(cols, dx, spec, 0, 0)
        return dx

    def col2im_part(self, cols: Any, dx: Any, spec: ConvSpec, n0: int, o0: int,
                    channels: tuple[int, int] | None = None, images: int = 0) -> None:
        c0, c1 = (0, spec.c) if channels is None else channels
        args = (_c(cols), dx, spec.kh, spec.kw, spec.sh, spec.sw, spec.pt, spec.pl, spec.dh, spec.dw, spec.ow,
                spec.oh, n0, o0, c0, images)
        flops = spec.flops * cols.shape[0] * cols.shape[2] // (spec.n * spec.oh * spec.ow)  # the part's share
        if channels is not None:  # one part, on this thread (the caller runs the parts)
            _launch("col2im", *args, c0, c1)
            return
        self._in_parts("col2im", args, spec.c, flops < self.scheduler.min_block_flops)  # slices of input channels

    def direct_grad_weight(self, x: Any, gy: Any, spec: ConvSpec) -> Any:
        dw = np.empty((spec.k, spec.cg, spec.kh, spec.kw), dtype=x.dtype)
        args = (_c(x), _c(gy), dw, spec.sh, spec.sw, spec.pt, spec.pl, spec.dh, spec.dw, spec.groups)
        # slices of output channels, on the workers from the forward loop's threshold on
        self._in_parts("direct_grad_weight", args, spec.k, spec.flops < self.scheduler.min_direct_flops)
        return dw

    def direct_grad_workspace(self, spec: ConvSpec) -> int:
        """At unit stride, a padded input plane and a plane of dL/dy in its rows per part in flight (the kernel's
        dot products); rows of accumulators per tap at any stride."""
        planes = 0
        if (spec.sh, spec.sw) == (1, 1):
            wp = spec.ow + spec.ekw - 1
            planes = (spec.oh + spec.ekh - 1) * wp + spec.ekw - 1 + spec.oh * wp
        per_part = (planes + spec.kh * spec.kw * (spec.ow + 1)) * spec.itemsize
        small = spec.flops < self.scheduler.min_direct_flops
        return per_part * (1 if small else min(spec.k, self.scheduler.workers()))

    def direct_workspace(self, spec: ConvSpec) -> int:
        """A padded plane and an accumulator per worker (unit stride; the kernel's buffered path)."""
        if (spec.sh, spec.sw) != (1, 1):
            return 0
        wp = spec.ow + spec.ekw - 1
        per_worker = ((spec.oh + spec.ekh - 1) * wp + spec.oh * wp + spec.ekw) * spec.itemsize
        return per_worker * (1 if spec.flops < self.scheduler.min_direct_flops else self.scheduler.workers())

    # Winograd, laid out channels-last: the transforms run over contiguous vectors of channels, and
    # the GEMM is M^T = V^T U^T per tile element, (P, C) @ (C, K) -> (P, K) (the base class's
    # layout is U V, (K, C) @ (C, P)).
    def winograd_filter(self, w: Any, spec: ConvSpec, g: Any, m: int) -> Any:
        w5 = w.reshape(spec.groups, spec.kg, spec.cg, 9).transpose(0, 2, 1, 3)  # (K, C/G, 3, 3) -> (G, C/G, K/G, 9)
        u = filter_transform(np, w5.reshape(-1, 9), g)  # rows (g, c, k) -> (T², G·C/G·K/G)
        return u.reshape((m + 2) ** 2, spec.groups, spec.cg, spec.kg)  # -> (T², G, C/G, K/G)

    def winograd_tiles(self, t: int, c: int, p: int, dtype: Any) -> np.ndarray:
        return self._spaced("wino_v", t * t, p, c, dtype, scratch=False)

    def winograd_input(self, x: Any, spec: ConvSpec, m: int, th: int, tw: int, reuse: bool = False) -> Any:
        return self.winograd_input_rows(x, spec, m, th, tw, 0, spec.n * th, reuse=reuse)

    def winograd_input_rows(self, x: Any, spec: ConvSpec, m: int, th: int, tw: int, r0: int, r1: int,
                            channels: tuple[int, int] | None = None, out: Any = None, reuse: bool = False) -> Any:
        """Input tiles as (T², P, C), P = (r1 - r0)·tw."""
        t, p = m + 2, (r1 - r0) * tw
        c0, c1 = channels if channels is not None else (0, spec.c)
        v = out if out is not None else self._spaced("wino_v", t * t, p, spec.c, x.dtype, scratch=reuse)
        _launch("winograd_input", _c(x), _rows(v), p, m, th, tw, spec.pt, spec.pl, r0, c0, c1)
        return v

    def winograd_multiply(self, u: Any, v: Any, spec: ConvSpec, m: int, k0: int, k1: int,
                          reuse: bool = False) -> Any:
        """M^T = V^T U^T for output channels k0:k1, as (T², P, KB)."""
        t2, p = v.shape[0], v.shape[1]
        g, kb = spec.groups, k1 - k0
        vg = v.reshape(t2, p, g, spec.cg).transpose(0, 2, 1, 3)  # (T², P, C) -> (T², G, P, C/G), a view
        uk = u if (k0, k1) == (0, spec.k) else u[:, :, :, k0:k1]  # (T², G, C/G, KB/G); KB < K only when G = 1
        mt = self._spaced("gemm", t2, p, kb, v.dtype, scratch=reuse)  # (T², P, KB)
        # (T², G, P, C/G) @ (T², G, C/G, KB/G) -> (T², G, P, KB/G), written as (T², P, KB)
        np.matmul(vg, uk, out=mt.reshape(t2, p, g, kb // g).transpose(0, 2, 1, 3))
        return mt

    def winograd_grad_tiles(self, gp: Any, spec: ConvSpec, m: int, th: int, tw: int, r0: int, r1: int,
                            aa: Any) -> Any:
        """dL/dy's tiles as (T², P, K), channels-last like the input tiles."""
        return grad_tiles(np, gp, m, th, tw, r0, r1, aa)

    def winograd_weight_multiply(self, u: Any, v: Any, spec: ConvSpec, m: int, out: Any = None,
                                 reuse: bool = False) -> Any:
        t2, p, g = v.shape[0], v.shape[1], spec.groups
        vg = v.reshape(t2, p, g, spec.cg).transpose(0, 2, 1, 3)  # (T², P, C) -> (T², G, P, C/G), a view
        ug = u.reshape(t2, p, g, spec.kg).transpose(0, 2, 3, 1)  # (T², P, K) -> (T², G, K/G, P), a view
        return self.matmul(ug, vg, scratch=reuse, out=out)  # -> (T², G, K/G, C/G)

    def winograd_output(self, mt: Any, b: Any | None, spec: ConvSpec, m: int, th: int, tw: int,
                        out: Any = None) -> Any:
        out = np.empty(spec.out_shape, dtype=mt.dtype) if out is None else out
        self.winograd_output_rows(mt, b, out, spec, m, th, tw, 0, 0)
        return out

    def winograd_output_rows(self, mt: Any, b: Any | None, out: Any, spec: ConvSpec, m: int, th: int, tw: int,
                             r0: int, k0: int) -> None:
        _launch("winograd_output", _rows(mt), mt.shape[1], mt.shape[2], out, self._bias(b, spec, mt.dtype),
                m, th, tw, r0, k0)

    def _spaced(self, key: str, t2: int, p: int, c: int, dtype: Any, scratch: bool) -> np.ndarray:
        """(T², P, C) whose T² matrices start an odd number of cache lines apart (a fresh array, or this
        thread's reused buffer ``key``).

        The transforms touch all T² matrices for each tile; were they a multiple of 4 KiB apart (P·C·4
        bytes is, at 256 channels and 16 tiles), those accesses would fall in one set of the L1 cache
        and evict each other (measured: CPU_NOTES.md).
        """
        itemsize = np.dtype(dtype).itemsize
        lines = -(-c * p * itemsize // 64)
        pitch = (lines + 1 - lines % 2) * 64 // itemsize  # elements from one matrix to the next
        buf = self._scratch(key, (t2 * pitch,), dtype) if scratch else np.empty(t2 * pitch, dtype=dtype)
        # (T²·pitch,) -> (T², P, C) view: matrix i starts at i·pitch
        strides = (pitch * itemsize, c * itemsize, itemsize)
        return np.lib.stride_tricks.as_strided(buf, shape=(t2, p, c), strides=strides)

    @staticmethod
    def _bias(b: Any | None, spec: ConvSpec, dtype: Any) -> np.ndarray:
        return _c(b) if b is not None else np.zeros(spec.k, dtype=dtype)
