"""Plans: one convolution's decisions taken once, then run many times.

:func:`plan` validates the arguments, finds the backend from the arrays, resolves
``auto`` (by its rule, or by measuring when autotuning is on) and lets the strategy
take every decision that depends only on sizes (its blocks, workspace and launch
sizes). :class:`ConvPlan` then runs on any arrays of the same shapes, dtype,
library and device. :func:`gemmconv.conv2d` is a lookup in :data:`PLAN_CACHE`
followed by a plan call: there is one call path.

    conv2d -> plan (validate, backend, strategy) -> ConvPlan.__call__ -> runner -> kernels
"""

from __future__ import annotations

import math
from typing import Any

from ._lru import LRU
from .args import ConvArgs
from .errors import StrategyNotSupportedError
from .prepared import Prepared, as_prepared
from .registry import Strategy, get_strategy, supporting, unable
from .spec import NO_LIMITS, ConvSpec, Limits
from .strategies._common import deliver
from .validate import check_padded_fits, validate

__all__ = ["PLAN_CACHE", "ConvPlan", "PlanCache", "check_out_dtype", "conform", "describe", "dtype_text", "make_plan",
           "runner_for"]


def runner_for(backend: Any, spec: ConvSpec, strategy: Strategy, limits: Limits = NO_LIMITS) -> Prepared:
    """The prepared convolution ``(x, w, b, out) -> y`` of ``strategy`` for validated 4-D arrays of
    ``spec``: the one place that pads explicitly (for padding modes other than zeros, and for strategies
    that do not pad with zeros themselves); a problem with no images or no input channels fills the
    result with the bias (zeros without one)."""
    if spec.n == 0 or spec.c == 0:
        return _filler(backend, spec)
    pads = spec.pads_explicitly(strategy.pads_zeros)
    inner = spec.without_padding() if pads else spec
    if strategy.prepare is not None:
        prepared = as_prepared(strategy.prepare(backend, inner, limits), f"strategy {strategy.name!r}: prepare")
    else:
        prepared = _unprepared(backend, inner, strategy)
    if not pads:
        return prepared

    def padded(x: Any, w: Any, b: Any, out: Any) -> Any:
        return prepared(backend.pad(x, spec), w, b, out)

    padded_shape = (spec.n, spec.c, spec.height + spec.pt + spec.pb, spec.width + spec.pl + spec.pr)
    return prepared.then(padded, before=("pad",), workspace_bytes=math.prod(padded_shape) * spec.itemsize)


def _unprepared(backend: Any, spec: ConvSpec, strategy: Strategy) -> Prepared:
    """A strategy without ``prepare``: its ``run`` on each call (the kernels it calls are its own business)."""
    def run(x: Any, w: Any, b: Any, out: Any) -> Any:
        return deliver(strategy.run(backend, x, w, b, spec), out)

    return Prepared(run, (f"{strategy.name}.run",))


def _filler(backend: Any, spec: ConvSpec) -> Prepared:
    def fill(x: Any, w: Any, b: Any, out: Any) -> Any:
        y = backend.xp.empty(spec.out_shape, dtype=x.dtype) if out is None else out
        y[...] = 0 if b is None else b.reshape(1, -1, 1, 1)  # (K,) -> (1, K, 1, 1)
        return y

    return Prepared(fill, ("fill",))


def dtype_text(dtype: Any) -> str:
    """How a message names ``dtype``: its name, with its byte order where that is not the machine's
    (``big-endian float32``, where NumPy's ``str`` gives ``>f4``)."""
    if getattr(dtype, "isnative", True):
        return str(dtype)
    return f"{'big' if dtype.byteorder == '>' else 'little'}-endian {dtype.name}"


def _kind(t: type) -> str:
    """How a message names array type ``t``: ``numpy array`` for a library's own array type, ``numpy
    MaskedArray`` for another one."""
    return f"{t.__module__.split('.')[0]} {'array' if t.__name__ == 'ndarray' else t.__name__}"


def describe(a: Any) -> str:
    """How a message names ``a``: an array's library and type, shape and dtype (``numpy array of shape
    (6, 8, 3, 3) and dtype big-endian float32``), anything else's type."""
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        return type(a).__name__
    return f"{_kind(type(a))} of shape {tuple(a.shape)} and dtype {dtype_text(a.dtype)}"


def conform(backend: Any, names: tuple[str, ...], arrays: tuple[Any, ...], types: tuple[Any, ...],
            shapes: tuple[Any, ...], dtype: Any) -> tuple[Any, ...]:
    """``arrays`` as a plan runs them: each of ``backend``'s arrays as :meth:`~Backend.native` makes it (native
    byte order, the library's own array type), checked against what the plan was made for (``types``,
    ``shapes``, ``dtype``; a type None: no array). A ``ValueError`` names the argument, what it should be
    and the one thing that differs."""
    conformed: list[Any] = []
    for name, a, want_type, want_shape in zip(names, arrays, types, shapes, strict=True):
        if want_type is None or a is None:
            what = "a bias" if name == "b" else name
            if a is not None:
                raise ValueError(f"{name}: this plan was made without {what}, got a {describe(a)}; make a plan "
                                 f"with {what}")
            if want_type is not None:
                raise ValueError(f"{name}: this plan was made with {what} of shape {want_shape}, got None; pass "
                                 f"one or make a plan without {what}")
            conformed.append(None)
            continue
        n = backend.native(a) if backend.owns(a) else a
        if type(n) is not want_type:
            why = "another library or array type"
        elif tuple(n.shape) != want_shape:
            why = "another shape"
        elif n.dtype != dtype:
            why = f"another dtype: {n.dtype.name}, not {dtype}"
        else:
            conformed.append(n)
            continue
        raise ValueError(f"{name}: this plan was made for a {_kind(want_type)} of shape {want_shape} and dtype "
                         f"{dtype}, got a {describe(a)} ({why}); make a plan for these arrays")
    return tuple(conformed)


def check_out_dtype(out: Any, shape: tuple[int, ...], dtype: Any) -> None:
    """``out`` must have the result's ``shape`` and native ``dtype`` (a ``ValueError`` otherwise): results
    are written in the machine's byte order, as NumPy's own functions return them."""
    if tuple(out.shape) == shape and out.dtype == dtype:
        return
    if tuple(out.shape) == shape and out.dtype.name == str(dtype) and not out.dtype.isnative:
        raise ValueError(f"out has dtype {dtype_text(out.dtype)}; results are written in the machine's byte order, "
                         f"as NumPy's own functions return them: pass an array of dtype {dtype} (and convert the "
                         f"result with .astype('{out.dtype.str}') where a file needs that order)")
    raise ValueError(f"out must have shape {shape} and dtype {dtype} (the result's), got shape {tuple(out.shape)} "
                     f"and dtype {dtype_text(out.dtype)}")


class ConvPlan:
    """A convolution prepared for arrays like the ones it was made for; see :func:`gemmconv.plan`.

    Attributes
    ----------
    strategy : str
        The strategy it runs (what ``auto`` resolved to).
    requested : str
        The strategy asked for (``"auto"`` by default).
    spec : ConvSpec
        The normalised sizes and hyper-parameters.
    backend : Backend
        The backend of its arrays.
    out_shape : tuple of int
        Shape of its result ((K, OH, OW) for unbatched input).
    workspace_bytes : int
        Bytes of temporary memory one call may hold beyond its result (an upper bound, computed from
        the sizes: the column matrices, transformed tiles or padded copy the strategy makes).
    limits : Limits
        The resources the plan keeps to (its workspace limit).
    kernels : tuple of str
        The backend operations one call runs, in order (``"pad"``, ``"im2col_part"``, ``"matmul"``, ...),
        as the strategy's prepared pass names them; also in the ``repr``.
    launches : LaunchSet or None
        On the GPU, the kernel launches it runs (functions, launch sizes, size arguments, the cuBLAS
        handle), filled by its first call: what a CUDA-graph capture needs besides the arrays.
    """

    def __init__(self, x: Any, w: Any, b: Any, args: ConvArgs) -> None:
        v = validate(x, w, b, args)
        backend, spec, limits = v.backend, v.spec, v.limits
        requested = get_strategy(args.strategy)
        self.backend, self.spec, self.limits, self.requested = backend, spec, limits, requested.name
        if requested.select is None:
            reason = unable(requested, spec, backend, limits)
            if reason is not None:
                raise StrategyNotSupportedError(requested.name, reason, supporting(spec, backend, limits),
                                                _summary(spec))
            chosen = requested
        else:
            with backend.device_context(v.x):
                if spec.pads_explicitly(pads_zeros=True):  # (whatever auto picks, these modes pad a copy)
                    check_padded_fits(backend, v.x, spec)
                name = requested.select(backend, v.x, v.w, v.b, spec, limits,
                                        lambda s: runner_for(backend, spec, get_strategy(s), limits))
            chosen = get_strategy(name)
        pads = spec.pads_explicitly(chosen.pads_zeros)
        if pads:
            check_padded_fits(backend, v.x, spec)
        self.strategy = chosen.name
        self._run = runner_for(backend, spec, chosen, limits)
        #: the kernel launches the plan runs (sizes, handles) where the backend keeps them (CuPy), else None
        with backend.device_context(v.x):
            self.launches = backend.launches(spec.without_padding() if pads else spec, x.dtype)
        self._unbatched = v.unbatched
        self.out_shape = spec.out_shape[1:] if v.unbatched else spec.out_shape
        self.workspace_bytes = self._run.workspace_bytes
        #: the backend operations a call runs, in order (``"pad"``, ``"im2col_part"``, ``"matmul"``, ...)
        self.kernels = self._run.kernels
        #: an estimate of the bytes the plan itself holds (what the plan cache counts): a fixed share for its
        #: objects and what its prepared pass keeps (``held_bytes``: constants such as a zero bias)
        self.nbytes = _PLAN_OVERHEAD + self._run.held_bytes
        # what a call's arrays must match: the validated ones (native byte order, the library's own array type),
        # x's shape as given; another byte order or an ndarray subclass (np.memmap) is converted by _conform
        self._types = (type(v.x), type(v.w), None if v.b is None else type(v.b))
        self._shapes = (tuple(x.shape), tuple(w.shape), None if b is None else tuple(b.shape))
        self._dtype = v.x.dtype
        self._device = backend.device_key(x)
        self._has_device = backend.has_devices
        # the backend's context (device, NumPy's warnings), unless the runner needs none
        self._context = backend.device_context if self._run.needs_context else None

    def __call__(self, x: Any, w: Any, b: Any | None = None, out: Any | None = None) -> Any:
        """Run the plan on ``x``, ``w`` and ``b`` (shapes, dtype, library and device as when it was made).

        ``out``, if given, receives the result (an array of the plan's ``out_shape``, dtype and
        library that does not overlap the inputs) and is returned.
        """
        types, shapes, dtype = self._types, self._shapes, self._dtype
        if (type(x) is not types[0] or type(w) is not types[1] or x.shape != shapes[0] or w.shape != shapes[1]
                or x.dtype != dtype or w.dtype != dtype
                or (b is None) != (shapes[2] is None)
                or (b is not None and (type(b) is not types[2] or b.shape != shapes[2] or b.dtype != dtype))
                or (self._has_device and self.backend.device_key(x) != self._device)):
            x, w, b = self._conform(x, w, b)
        backend = self.backend
        x4 = x[None] if self._unbatched else x  # (C, H, W) -> (1, C, H, W)
        target = None
        if out is not None:
            dest = self._check_out(out, x, w, b)  # out itself, or a plain view of it (np.memmap)
            target = dest[None] if self._unbatched else dest  # (K, OH, OW) -> (1, K, OH, OW)
            if not backend.is_c_contiguous(target):
                target = None  # computed fresh, then copied
        if self._context is None:
            y = self._run(x4, w, b, target)
        else:
            with self._context(x4):
                y = self._run(x4, w, b, target)
        if out is not None:
            if target is None:
                dest[...] = y[0] if self._unbatched else y
            return out
        return y[0] if self._unbatched else y

    def _conform(self, x: Any, w: Any, b: Any) -> tuple[Any, Any, Any]:
        """The arrays of a call that missed the quick check, as the plan runs them (:func:`conform`: another
        byte order or an ndarray subclass converted), or a ``ValueError`` naming what differs."""
        x, w, b = conform(self.backend, ("x", "w", "b"), (x, w, b), self._types, self._shapes, self._dtype)
        if self._has_device and self.backend.device_key(x) != self._device:
            raise ValueError(f"x: this plan was made for arrays on device {self._device}, got one on device "
                             f"{self.backend.device_key(x)}; make a plan on that device")
        return x, w, b

    def _check_out(self, out: Any, x: Any, w: Any, b: Any) -> Any:
        backend = self.backend
        if not backend.owns(out):
            raise ValueError(f"out must be a {self._types[0].__name__} like x, got {type(out).__name__}")
        check_out_dtype(out, self.out_shape, self._dtype)
        if self._has_device and backend.device_key(out) != self._device:
            raise ValueError(f"out must be on the device of x ({self._device}), got device {backend.device_key(out)}")
        if not backend.is_writeable(out):
            raise ValueError("out is read-only; pass a writeable array")
        for name, a in (("x", x), ("w", w), ("b", b)):
            if a is not None and backend.may_share_memory(out, a):
                raise ValueError(f"out overlaps {name}; pass an array that shares no memory with the inputs")
        return backend.native(out)  # native already: out itself, or a plain view of a subclass's memory

    def __repr__(self) -> str:
        s = self.spec
        chosen = self.strategy if self.requested == self.strategy else f"{self.strategy} (from {self.requested})"
        x_shape = self._shapes[0]
        return (f"ConvPlan({chosen}, {self.backend.name} {self._dtype}, x {x_shape} -> {self.out_shape}, kernel "
                f"{s.kh}x{s.kw}, stride {(s.sh, s.sw)}, padding {(s.pt, s.pb, s.pl, s.pr)}, dilation "
                f"{(s.dh, s.dw)}, groups {s.groups}, padding_mode {s.padding_mode!r}, "
                f"kernels {' -> '.join(self.kernels)}, workspace {self.workspace_bytes:,} bytes)")


def _summary(spec: ConvSpec) -> str:
    return (f"kernel {spec.kh}x{spec.kw}, stride {(spec.sh, spec.sw)}, dilation {(spec.dh, spec.dw)}, "
            f"groups {spec.groups}, x {(spec.n, spec.c, spec.height, spec.width)}")


#: bytes a plan's own objects take, at most (its closures, sizes and lists of blocks; measured with
#: tracemalloc at 2-3 KiB for the built-in strategies)
_PLAN_OVERHEAD = 4096


def make_plan(x: Any, w: Any, b: Any, args: ConvArgs) -> ConvPlan:
    """A new :class:`ConvPlan` (not cached)."""
    return ConvPlan(x, w, b, args)


class PlanCache(LRU[ConvPlan]):
    """Plans by everything they depend on, least recently used evicted past ``max_entries`` plans or
    ``max_bytes`` of their estimated size (:attr:`ConvPlan.nbytes`: no workspace, which is allocated per
    call; sizes, closures, lists of blocks and small constants such as a zero bias)."""

    def __init__(self, max_entries: int = 256, max_bytes: int = 16 << 20) -> None:
        super().__init__(max_entries, max_bytes, size=lambda plan: plan.nbytes)


#: the plans :func:`gemmconv.conv2d` reuses
PLAN_CACHE = PlanCache()
