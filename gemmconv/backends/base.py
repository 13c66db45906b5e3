"""The backend interface: an array namespace plus the hot kernels strategies compose.

A strategy is written once against this interface. A backend supplies
``xp`` (the NumPy-compatible namespace of its arrays) and the kernels whose
speed depends on the hardware: column packing, the direct loop and the
Winograd tile transforms. GEMMs go through ``xp.matmul`` (BLAS / cuBLAS).
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
import tracemalloc
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from ..spec import ConvSpec

__all__ = ["Backend"]

_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


class Backend(ABC):
    """Base class of array backends.

    Subclasses set :attr:`name`, :attr:`module` and :attr:`dtypes` and
    implement the four kernels. Register an instance with
    :func:`gemmconv.backends.register_backend`, or publish the subclass in the
    ``gemmconv.backends`` entry-point group.
    """

    #: short name shown in messages and tables, e.g. ``"numpy"``
    name: str = ""
    #: top-level module of the array library; the backend is only consulted once
    #: that module is in ``sys.modules``, so no library is imported just to
    #: check an array's type
    module: str = ""
    #: dtype names this backend computes in
    dtypes: tuple[str, ...] = ()
    #: largest index the kernels compute without overflow (int64 on the CPU, less a margin); validation keeps
    #: every extent (padded input, dilated kernel, stride) to a quarter of it and every plane to it
    index_limit: int = 2**62 - 1
    #: whether Winograd's filter transform is cached (host-checked against a copy of the weights);
    #: a GPU backend recomputes it instead, as the check would need a device->host sync per call
    caches_filters: bool = True

    @property
    @abstractmethod
    def xp(self) -> Any:
        """The array namespace (``numpy``, ``cupy``, ...)."""

    @abstractmethod
    def owns(self, a: Any) -> bool:
        """Whether ``a`` is an array of this backend; only called once :attr:`module` is imported."""

    def loaded(self) -> bool:
        """Whether the array library has been imported by someone."""
        return self.module in sys.modules

    #: whether arrays of this backend live on one of several devices (plans then check the device)
    has_devices: bool = False

    def is_c_contiguous(self, a: Any) -> bool:
        """Whether ``a`` is C-contiguous (kernels write into such an ``out`` directly)."""
        return bool(a.flags.c_contiguous)

    def is_writeable(self, a: Any) -> bool:
        """Whether ``a`` may be written to."""
        return bool(getattr(a.flags, "writeable", True))

    def may_share_memory(self, a: Any, b: Any) -> bool:
        """Whether ``a`` and ``b`` may overlap (their memory bounds do)."""
        return bool(self.xp.may_share_memory(a, b))

    def device_key(self, a: Any) -> Hashable:
        """A hashable identity of the device holding ``a`` (for caches)."""
        return self.name

    def native(self, a: Any) -> Any:
        """``a`` in a layout the kernels accept (e.g. native byte order); ``a`` itself if it already is."""
        return a

    def data_ptr(self, a: Any) -> int:
        """Address of ``a``'s first element (for caches keyed by buffer)."""
        return int(a.__array_interface__["data"][0])

    def memory_bytes(self, a: Any) -> int | None:
        """Bytes of memory on the device holding ``a``: arrays larger than this are refused before any
        work (None: no such check)."""
        return None

    def device_context(self, a: Any) -> contextlib.AbstractContextManager:
        """A context in which work on ``a``'s device runs (nothing to switch on the CPU)."""
        return contextlib.nullcontext()

    def current_device(self) -> Any:
        """The device new arrays are made on (for caches of constants)."""
        return None

    def constant(self, key: str, value: Any, dtype: str) -> Any:
        """A small host constant (a transform matrix) as an array of this backend, made once per device."""
        cache = self.__dict__.setdefault("_constants", {})
        ck = (key, dtype, self.current_device())
        arr = cache.get(ck)
        if arr is None:
            arr = cache[ck] = self.xp.asarray(value, dtype=dtype)
        return arr

    def winograd_filter(self, w: Any, spec: ConvSpec, g: Any, m: int) -> Any:
        """Winograd's filter transform ``U = G w G^T`` laid out as (T², G, K/G, C/G), ``T = m + 2``.

        ``g`` is the (T, 3) matrix G in the working precision (float64 for float32/float64
        weights, float32 for float16), so the cached transform carries no extra rounding.
        """
        xp = self.xp
        t = m + 2
        u = xp.matmul(xp.matmul(g, w.astype(g.dtype)), g.T)  # (T, 3) @ (K, C/G, 3, 3) @ (3, T) -> (K, C/G, T, T)
        u = u.transpose(2, 3, 0, 1)  # -> (T, T, K, C/G)
        u = u.reshape(t * t, spec.groups, spec.kg, spec.cg)  # -> (T², G, K/G, C/G)
        return xp.ascontiguousarray(u.astype(spec.dtype))

    def clear_workspace(self) -> None:
        """Free buffers this backend reuses between calls (none here)."""

    def pad(self, x: Any, spec: ConvSpec) -> Any:
        """Pad ``x`` explicitly by ``spec``'s padding and padding mode."""
        widths = ((0, 0), (0, 0), (spec.pt, spec.pb), (spec.pl, spec.pr))
        return self.xp.pad(x, widths, mode=_PAD_MODES[spec.padding_mode])

    def matmul(self, a: Any, b: Any, scratch: bool = False, out: Any = None) -> Any:
        """``a @ b`` with NumPy's broadcasting over leading dimensions (BLAS / cuBLAS).

        ``scratch=True`` says the product is a temporary the caller drops before its next call
        on this thread, so a backend may write it into a reused buffer. ``out``, if given, is a
        view of the right shape (unit stride in its last axis) to write the product into.
        """
        if out is None:
            return self.xp.matmul(a, b)
        out[...] = self.xp.matmul(a, b)
        return out

    # -- blocked pipelines -----------------------------------------------------
    #: bytes of workspace one block of a blocked strategy (im2col, Winograd) should hold, so that a
    #: block's pack/transform, GEMM and unpack run in one core's cache; ``None``: one block, the
    #: whole problem (a GPU needs all the parallelism at once)
    block_bytes: int | None = None
    #: convolutions of fewer flops than this run as one block
    min_block_flops: int = 0

    def workers(self) -> int:
        """How many blocks :meth:`run_blocks` runs at once."""
        return 1

    def run_blocks(self, fn: Callable[[Any], None], items: Sequence[Any], workers: int | None = None) -> None:
        """Call ``fn(item)`` for each independent item (blocks of a blocked strategy), in any order, at most
        ``workers`` at once (default :meth:`workers`)."""
        for item in items:
            fn(item)

    def run_phases(self, phases: Sequence[tuple[Callable[[Any], None], Sequence[Any], Callable[[], None] | None]]
                   ) -> None:
        """For each phase ``(fn, items, after)`` in turn: :meth:`run_blocks` ``(fn, items)``, then ``after()``
        (if given); a phase's items may rely on every earlier phase being done."""
        for fn, items, after in phases:
            self.run_blocks(fn, items)
            if after is not None:
                after()

    def im2col_part(self, x: Any, spec: ConvSpec, n0: int, n1: int, o0: int, o1: int, ones_row: bool = False,
                    reuse: bool = False) -> Any:
        """Column matrices of images ``n0:n1`` and output rows ``o0:o1``: ``(n1-n0, C·KH·KW, (o1-o0)·OW)``,
        with ``ones_row`` one more row, of ones (a GEMM by weights with the bias as their last column
        then adds the bias). A fresh array, unless ``reuse`` (the library's own opt-in: the caller drops
        it before its next call on this thread) lets a backend write it into a buffer it reuses.

        This default packs the band of input rows those outputs read as a convolution of its own
        (its padding is the part of the original padding it touches) through :meth:`im2col`.
        """
        r0 = o0 * spec.sh - spec.pt  # first padded-input row read, in input coordinates
        r1 = (o1 - 1) * spec.sh - spec.pt + spec.ekh  # one past the last
        lo, hi = max(r0, 0), min(r1, spec.h)
        sub = dataclasses.replace(spec, n=n1 - n0, h=hi - lo, pt=lo - r0, pb=r1 - hi)
        cols = self.im2col(x[n0:n1, :, lo:hi], sub)  # x rows (N', C, rows, W) -> (N', C·R·S, OB·OW)
        if not ones_row:
            return cols
        ones = self.xp.ones((cols.shape[0], 1, cols.shape[2]), dtype=cols.dtype)
        return self.xp.concatenate([cols, ones], axis=1)  # -> (N', C·R·S + 1, OB·OW)

    def winograd_tiles(self, t: int, c: int, p: int, dtype: Any) -> Any:
        """An uninitialised array for ``p`` transformed input tiles of ``c`` channels, in the layout
        :meth:`winograd_input` returns (here ``(T, T, C, P)``)."""
        return self.xp.empty((t, t, c, p), dtype=dtype)

    def winograd_multiply(self, u: Any, v: Any, spec: ConvSpec, m: int, k0: int, k1: int,
                          reuse: bool = False) -> Any:
        """The products ``M = U V`` of the filter transform (:meth:`winograd_filter`) and input tiles
        (:meth:`winograd_input`) for output channels ``k0:k1`` (all of them when G > 1), in the layout
        :meth:`winograd_output` reads: here ``(T, T, KB, P)``. A fresh array unless ``reuse`` (see
        :meth:`im2col_part`)."""
        t, p = m + 2, v.shape[-1]
        v = v.reshape(t * t, spec.groups, spec.cg, p)  # (T, T, C, P) -> (T², G, C/G, P)
        uk = u if (k0, k1) == (0, spec.k) else u[:, :, k0:k1]  # (T², G, KB/G, C/G); KB < K only when G = 1
        mt = self.matmul(uk, v, scratch=reuse)  # (T², G, KB/G, C/G) @ (T², G, C/G, P) -> (T², G, KB/G, P)
        return mt.reshape(t, t, k1 - k0, p)  # -> (T, T, KB, P)

    def winograd_input_rows(self, x: Any, spec: ConvSpec, m: int, th: int, tw: int, r0: int, r1: int,
                            channels: tuple[int, int] | None = None, out: Any = None, reuse: bool = False) -> Any:
        """:meth:`winograd_input` for tile rows ``r0:r1`` of the ``N·th`` rows: ``(T, T, C, (r1-r0)·tw)``.

        With ``channels=(c0, c1)`` and ``out`` (T, T, C, (r1-r0)·tw), only those input channels are
        transformed, into ``out[:, :, c0:c1]``, and ``out`` is returned.
        Only called in blocks, so only backends that set :attr:`block_bytes` implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} transforms all tiles at once (block_bytes=None)")

    def winograd_output_rows(self, mt: Any, b: Any | None, out: Any, spec: ConvSpec, m: int, th: int, tw: int,
                             r0: int, k0: int) -> None:
        """:meth:`winograd_output` of tiles ``mt`` (T, T, KB, RB·tw), tile rows ``r0:r0+RB`` and output
        channels ``k0:k0+KB``, written into ``out`` (N, K, OH, OW).

        Only called in blocks, so only backends that set :attr:`block_bytes` implement it.
        """
        raise NotImplementedError(f"{type(self).__name__} transforms all tiles at once (block_bytes=None)")

    # -- measuring (compare tool, autotuning) -----------------------------------
    #: size of the square matrices whose product measures this backend's GEMM peak
    peak_gemm_size: int = 1024

    def synchronize(self) -> None:
        """Wait until work queued on the current device is done (nothing to wait for on the CPU)."""

    def time_calls(self, fn: Callable[[], Any], repeat: int) -> list[float]:
        """Seconds taken by each of ``repeat`` calls of ``fn`` (device work included)."""
        times = []
        for _ in range(repeat):
            self.synchronize()
            t0 = time.perf_counter()
            fn()
            self.synchronize()
            times.append(time.perf_counter() - t0)
        return times

    def peak_memory(self, fn: Callable[[], Any]) -> tuple[Any, int]:
        """``fn()`` and the peak bytes it held beyond what it returns (workspace), traced by tracemalloc."""
        was_tracing = tracemalloc.is_tracing()
        if not was_tracing:
            tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            base = tracemalloc.get_traced_memory()[0]
            result = fn()
            peak = tracemalloc.get_traced_memory()[1] - base
        finally:
            if not was_tracing:
                tracemalloc.stop()
        return result, max(0, peak - int(getattr(result, "nbytes", 0)))

    # -- kernels ---------------------------------------------------------------
    @abstractmethod
    def im2col(self, x: Any, spec: ConvSpec) -> Any:
        """Column matrices of shape ``(N, C·KH·KW, OH·OW)``, rows ordered (c, r, s), zero padding applied.

        One matrix per image, so the GEMM writes NCHW directly. Rows of group ``g`` are the contiguous
        block ``g·Cg·KH·KW ... (g+1)·Cg·KH·KW``.
        """

    @abstractmethod
    def direct(self, x: Any, w: Any, b: Any | None, spec: ConvSpec, out: Any = None) -> Any:
        """The whole convolution (with zero padding and bias) by direct loops; shape ``spec.out_shape``, written
        into ``out`` (C-contiguous) when given."""

    def direct_runner(self, spec: ConvSpec) -> Callable[[Any, Any, Any, Any], Any]:
        """``run(x, w, b, out)``: :meth:`direct` for ``spec``, with what depends only on sizes decided once."""
        return lambda x, w, b, out: self.direct(x, w, b, spec, out)

    def direct_workspace(self, spec: ConvSpec) -> int:
        """Bytes :meth:`direct` holds besides its result (0: none)."""
        return 0

    @abstractmethod
    def winograd_input(self, x: Any, spec: ConvSpec, m: int, th: int, tw: int, reuse: bool = False) -> Any:
        """Input tiles ``B^T d B`` of shape ``(T, T, C, N·th·tw)`` with ``T = m + 2``, zero padding applied; a
        fresh array unless ``reuse`` (see :meth:`im2col_part`)."""

    @abstractmethod
    def winograd_output(self, mt: Any, b: Any | None, spec: ConvSpec, m: int, th: int, tw: int,
                        out: Any = None) -> Any:
        """Output ``A^T M A`` from tiles ``mt`` of shape ``(T, T, K, N·th·tw)``, cropped, bias added; written into
        ``out`` (C-contiguous, ``spec.out_shape``) when given."""

    def __repr__(self) -> str:
        return f"<gemmconv backend {self.name!r}>"
