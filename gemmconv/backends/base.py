"""What a backend is: an array library's namespace, its devices and the arrays it owns.

A backend has four parts, each with one job:

- this class: the array namespace ``xp``, ownership of arrays, devices, padding and GEMMs
  (``xp.matmul``: BLAS / cuBLAS);
- the kernel families it provides (:mod:`.kernels`: im2col packing, the direct loop, Winograd's
  transforms), declared by deriving from their mixins and asked for with :meth:`Backend.provides`;
- its :attr:`~Backend.scheduler` (:mod:`.scheduling`): whether and how work is cut into blocks;
- its :attr:`~Backend.profiler` (:mod:`.profiling`): timers and peak memory.

A strategy is written once against these; it asks for capabilities, never for a device.
"""

from __future__ import annotations

import contextlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Hashable
from typing import Any

from ..core.spec import ConvSpec
from .profiling import Profiler
from .scheduling import Scheduler

__all__ = ["Backend"]

_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


class Backend(ABC):
    """Base class of array backends.

    Subclasses set :attr:`name`, :attr:`module` and :attr:`dtypes`, derive from the kernel families
    they provide (:mod:`.kernels`) and set a scheduler and profiler. Register an instance with
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
    #: how the backend runs a strategy's blocks (:mod:`.scheduling`)
    scheduler: Scheduler = Scheduler()
    #: how the backend measures (:mod:`.profiling`)
    profiler: Profiler = Profiler()

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
        """``a`` as the library's own array type in native byte order (a view, or a copy where the bytes must
        be swapped); ``a`` itself if it already is. Plans and validation compare and run only such arrays, so
        an array of any byte order, or of a subclass of the array type, runs as its native counterpart."""
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

    def launches(self, spec: ConvSpec, dtype: Any) -> Any:
        """The kernel launches of a convolution kept in one place for a later capture (a CUDA graph), or None
        where the backend keeps none (the CPU)."""
        return None

    def clear_workspace(self) -> None:
        """Free buffers this backend reuses between calls (none here)."""

    def pad(self, x: Any, spec: ConvSpec) -> Any:
        """Pad ``x`` explicitly by ``spec``'s padding and padding mode."""
        widths = ((0, 0), (0, 0), *spec.padding)
        return self.xp.pad(x, widths, mode=_PAD_MODES[spec.padding_mode])

    def pad_adjoint(self, g: Any, spec: ConvSpec) -> Any:
        """The adjoint of :meth:`pad`: a gradient ``g`` with respect to the padded input, (N, C, *padded size),
        folded back onto the input, (N, C, *size): each padded element's gradient added to the input element
        it copies (none for zeros), as autograd does. A fresh array."""
        for axis, ((before, after), size) in enumerate(zip(spec.padding, spec.size, strict=True), start=2):
            g = _fold(g, before, after, size, spec.padding_mode, axis=axis)
        return g

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

    def provides(self, family: str) -> bool:
        """Whether this backend provides kernel family ``family`` (``"im2col"``, ``"direct"``, ``"winograd"``)."""
        return any(cls.__dict__.get("family") == family for cls in type(self).__mro__)

    def __repr__(self) -> str:
        return f"<gemmconv backend {self.name!r}>"


def _fold(g: Any, before: int, after: int, size: int, mode: str, axis: int) -> Any:
    """:meth:`Backend.pad_adjoint` along one axis: ``g`` has ``before + size + after`` entries there."""
    def part(lo: int, hi: int, step: int = 1) -> Any:  # g[..., lo:hi:step, ...] along axis
        index = [slice(None)] * g.ndim
        index[axis] = slice(lo, hi, step) if step > 0 else slice(hi - 1, (lo - 1) if lo > 0 else None, -1)
        return g[tuple(index)]

    def into(x: Any, lo: int, hi: int) -> Any:
        index = [slice(None)] * x.ndim
        index[axis] = slice(lo, hi)
        return x[tuple(index)]

    x = part(before, before + size).copy()  # the input's own positions
    if mode == "zeros" or (before == 0 and after == 0):
        return x
    if mode == "reflect":  # padded position before - i (i = 1..before) copies input i; after: size - 1 - i
        if before:
            into(x, 1, before + 1)[...] += part(0, before, -1)
        if after:
            into(x, size - 1 - after, size - 1)[...] += part(before + size, before + size + after, -1)
    elif mode == "replicate":  # every padded position copies the edge
        if before:
            into(x, 0, 1)[...] += part(0, before).sum(axis=axis, keepdims=True)
        if after:
            into(x, size - 1, size)[...] += part(before + size, before + size + after).sum(axis=axis, keepdims=True)
    elif mode == "circular":  # the first before positions copy the last ones; the last after, the first
        if before:
            into(x, size - before, size)[...] += part(0, before)
        if after:
            into(x, 0, after)[...] += part(before + size, before + size + after)
    return x

