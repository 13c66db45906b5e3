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

from collections.abc import Callable, Hashable
from typing import Any

from ..backends.base import Backend
from ..core._lru import LRU
from ..core.args import ConvArgs
from ..core.errors import StrategyNotSupportedError
from ..core.prepared import Prepared, as_prepared
from ..core.registry import (
    FORWARD,
    GRAD_INPUT,
    GRAD_WEIGHT,
    Strategy,
    call_select,
    get_strategy,
    supporting,
    unable,
)
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from ..strategies._common import deliver
from .validate import Validated, check_padded_fits, validate

#: the transposed convolution: the grad_input pass of the convolution whose output its input would be, plus a bias
TRANSPOSE = "transpose"

__all__ = ["ARRAYS", "PLAN_CACHE", "TRANSPOSE", "ConvPlan", "PlanCache", "cached", "check_out_dtype",
           "conform", "describe", "dtype_text", "limits_left", "make_plan", "resolve", "runner_for"]


def runner_for(backend: Backend, spec: ConvSpec, strategy: Strategy, limits: Limits = NO_LIMITS) -> Prepared:
    """The prepared convolution ``(x, w, b, out) -> y`` of ``strategy`` for validated 4-D arrays of
    ``spec``: the one place that pads explicitly (for padding modes other than zeros, and for strategies
    that do not pad with zeros themselves); a problem with no images or no input channels fills the
    result with the bias (zeros without one)."""
    if spec.n == 0 or spec.c == 0:
        return _filler(backend, spec)
    pads = spec.pads_explicitly(strategy.pads_zeros)
    inner = spec.without_padding() if pads else spec
    if strategy.prepare is not None:
        prepared = as_prepared(strategy.prepare(backend, inner, limits_left(limits, spec, strategy.pads_zeros)),
                               f"strategy {strategy.name!r}: prepare")
    else:
        prepared = _unprepared(backend, inner, strategy)
    if not pads:
        return prepared

    def padded(x: Any, w: Any, b: Any, out: Any) -> Any:
        return prepared(backend.pad(x, spec), w, b, out)

    return prepared.then(padded, before=("pad",), workspace_bytes=spec.padded_bytes)


def limits_left(limits: Limits, spec: ConvSpec, pads_zeros: bool) -> Limits:
    """The limits left to a strategy once the input is padded explicitly (:meth:`Limits.padding_explicitly`; a
    strategy's refusal has already checked that the padded copy fits)."""
    left = limits.padding_explicitly(spec, pads_zeros)
    if isinstance(left, str):  # never after the strategy's refusal
        raise RuntimeError(left)
    return left


def _unprepared(backend: Backend, spec: ConvSpec, strategy: Strategy) -> Prepared:
    """A strategy without ``prepare``: its ``run`` on each call (the kernels it calls are its own business)."""
    def run(x: Any, w: Any, b: Any, out: Any) -> Any:
        return deliver(strategy.run(backend, x, w, b, spec), out)

    return Prepared(run, (f"{strategy.name}.run",))


def _filler(backend: Backend, spec: ConvSpec) -> Prepared:
    def fill(x: Any, w: Any, b: Any, out: Any) -> Any:
        y = backend.xp.empty(spec.out_shape, dtype=x.dtype) if out is None else out
        y[...] = 0 if b is None else b.reshape(1, -1, *(1,) * spec.ndim)  # (K,) -> (1, K, 1, ...)
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


def conform(backend: Backend, names: tuple[str, ...], arrays: tuple[Any, ...], types: tuple[Any, ...],
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


#: the arrays a plan of each pass takes, in order; a last ``"b"`` may be left out (no bias)
ARRAYS = {FORWARD: ("x", "w", "b"), GRAD_INPUT: ("w", "grad_y"), GRAD_WEIGHT: ("x", "grad_y"),
          TRANSPOSE: ("x", "w", "b")}

#: ``operands(a, b, c) -> (a, b, c)``: a plan's arrays (conformed; c None for two) as its prepared pass takes them,
#: batched; None for the forward pass (``x, w, b`` with ``x`` batched)
Operands = Callable[[Any, Any, Any], tuple[Any, Any, Any]]


class ConvPlan:
    """One pass of a convolution prepared for arrays like the ones it was made for: the forward pass
    (:func:`gemmconv.plan`), ``grad_input`` (:func:`gemmconv.plan_grad_input`), ``grad_weight``
    (:func:`gemmconv.plan_grad_weight`) or the transposed convolution (:func:`gemmconv.plan_conv_transpose2d`).

    Attributes
    ----------
    pass_ : str
        What it computes: ``"forward"``, ``"grad_input"``, ``"grad_weight"`` or ``"transpose"``.
    strategy : str
        The strategy it runs (what ``auto`` resolved to).
    requested : str
        The strategy asked for (``"auto"`` by default).
    spec : ConvSpec
        The (forward) convolution's normalised sizes and hyper-parameters.
    backend : Backend
        The backend of its arrays.
    out_shape : tuple of int
        Shape of its result ((K, OH, OW) for an unbatched forward input).
    workspace_bytes : int
        Bytes of temporary memory one call may hold beyond its result (an upper bound, computed from
        the sizes: the column matrices, transformed tiles or padded copy the strategy makes).
    limits : Limits
        The resources the plan keeps to (its workspace limit).
    kernels : tuple of str
        The backend operations one call runs, in order (``"pad"``, ``"im2col_part"``, ``"matmul"``, ...),
        as the strategy's prepared pass names them; also in the ``repr``.
    launches : LaunchSet or None
        On the GPU, the kernel launches a forward plan runs (functions, launch sizes, size arguments, the
        cuBLAS handle), filled by its first call: what a CUDA-graph capture needs besides the arrays.
    """

    def __init__(self, pass_: str, v: Validated, requested: str, chosen: Strategy, prepared: Prepared,
                 arrays: tuple[Any, ...], natives: tuple[Any, ...], out_shape: tuple[int, ...],
                 operands: Operands | None, squeeze: bool, launches: Any = None) -> None:
        backend, spec = v.backend, v.spec
        self.pass_, self.backend, self.spec, self.limits = pass_, backend, spec, v.limits
        self.requested, self.strategy = requested, chosen.name
        self.out_shape, self.launches = out_shape, launches
        self.workspace_bytes, self.kernels = prepared.workspace_bytes, prepared.kernels
        #: an estimate of the bytes the plan itself holds (what the plan cache counts): a fixed share for its
        #: objects and what its prepared pass keeps (``held_bytes``: constants such as a zero bias)
        self.nbytes = _PLAN_OVERHEAD + prepared.held_bytes
        self._call, self._operands, self._squeeze = prepared.run, operands, squeeze
        self._names = ARRAYS[pass_]
        # what a call's arrays must match (three entries, None where there is no array): the types of the arrays
        # as validated (native byte order, the library's own array type), the shapes as given; another byte order
        # or an ndarray subclass (np.memmap) is converted by conform
        pad = (None,) * (3 - len(arrays))
        self._types = tuple(None if a is None else type(a) for a in natives) + pad
        self._shapes = tuple(None if a is None else tuple(a.shape) for a in arrays) + pad
        self._dtype = v.x.dtype  # validated (x, or the stand-in for it): native
        first = next(a for a in arrays if a is not None)
        self._device = backend.device_key(first)
        self._has_device = backend.has_devices
        # the backend's context (device, NumPy's warnings), unless the prepared pass needs none
        self._context = backend.device_context if prepared.needs_context else None

    def __call__(self, a: Any, b: Any, c: Any | None = None, out: Any | None = None) -> Any:
        """Run the plan on arrays of the shapes, dtype, library and device it was made for: ``x, w, b=None``
        (forward and transposed convolution), ``w, grad_y`` (grad_input) or ``x, grad_y`` (grad_weight).

        ``out``, if given, receives the result (an array of the plan's ``out_shape``, dtype and library that
        does not overlap the inputs) and is returned.
        """
        types, shapes, dtype = self._types, self._shapes, self._dtype
        if (type(a) is not types[0] or type(b) is not types[1] or a.shape != shapes[0] or b.shape != shapes[1]
                or a.dtype != dtype or b.dtype != dtype
                or (c is None) != (shapes[2] is None)
                or (c is not None and (type(c) is not types[2] or c.shape != shapes[2] or c.dtype != dtype))
                or (self._has_device and self.backend.device_key(a) != self._device)):
            a, b, c = self._conform(a, b, c)
        target = dest = None
        if out is not None:
            dest = self._check_out(out, (a, b, c))  # out itself, or a plain view of it (np.memmap)
            target = dest[None] if self._squeeze else dest  # (K, OH, OW) -> (1, K, OH, OW)
            if not self.backend.is_c_contiguous(target):
                target = None  # computed fresh, then copied
        operands = self._operands
        if operands is None:  # the forward pass: x, w, b as they are, x batched
            if self._squeeze:
                a = a[None]  # (C, H, W) -> (1, C, H, W)
        else:
            a, b, c = operands(a, b, c)
        if self._context is None:
            y = self._call(a, b, c, target)
        else:
            with self._context(a):
                y = self._call(a, b, c, target)
        if dest is not None:
            if y is not target:
                dest[...] = y[0] if self._squeeze else y
            return out
        return y[0] if self._squeeze else y

    def _conform(self, a: Any, b: Any, c: Any) -> tuple[Any, Any, Any]:
        """The arrays of a call that missed the quick check, as the plan runs them (:func:`conform`: another
        byte order or an ndarray subclass converted), or an error naming what differs."""
        names = self._names
        if len(names) == 2 and c is not None:
            raise TypeError(f"this {self.pass_} plan takes {', '.join(names)} (and out=), got a third array")
        given = conform(self.backend, names, (a, b, c)[:len(names)], self._types[:len(names)],
                        self._shapes[:len(names)], self._dtype)
        first = given[0]
        if self._has_device and self.backend.device_key(first) != self._device:
            raise ValueError(f"{names[0]}: this plan was made for arrays on device {self._device}, got one on "
                             f"device {self.backend.device_key(first)}; make a plan on that device")
        return (*given, None) if len(names) == 2 else (given[0], given[1], given[2])

    def _check_out(self, out: Any, arrays: tuple[Any, ...]) -> Any:
        backend = self.backend
        if not backend.owns(out):
            like = self._types[0].__name__ if self._types[0] is not None else "the inputs"
            raise ValueError(f"out must be a {like} like {self._names[0]}, got {type(out).__name__}")
        check_out_dtype(out, self.out_shape, self._dtype)
        if self._has_device and backend.device_key(out) != self._device:
            raise ValueError(f"out must be on the device of {self._names[0]} ({self._device}), got device "
                             f"{backend.device_key(out)}")
        if not backend.is_writeable(out):
            raise ValueError("out is read-only; pass a writeable array")
        for name, a in zip(self._names, arrays, strict=False):
            if a is not None and backend.may_share_memory(out, a):
                raise ValueError(f"out overlaps {name}; pass an array that shares no memory with the inputs")
        return backend.native(out)  # native already: out itself, or a plain view of a subclass's memory

    def __repr__(self) -> str:
        s = self.spec
        chosen = self.strategy if self.requested == self.strategy else f"{self.strategy} (from {self.requested})"
        name = "grad_y" if self.pass_ == GRAD_INPUT else "x"  # the pass's batched input
        given = f"{name} {self._shapes[self._names.index(name)]}"
        what = chosen if self.pass_ == FORWARD else f"{self.pass_}, {chosen}"
        return (f"ConvPlan({what}, {self.backend.name} {self._dtype}, {given} -> {self.out_shape}, kernel "
                f"{'x'.join(map(str, s.kernel))}, stride {s.stride}, padding {sum(s.padding, ())}, dilation "
                f"{s.dilation}, groups {s.groups}, padding_mode {s.padding_mode!r}, "
                f"kernels {' -> '.join(self.kernels)}, workspace {self.workspace_bytes:,} bytes)")


def resolve(name: str, pass_: str, v: Validated, operands: tuple[Any, Any, Any],
            prepare: Callable[[Strategy], Prepared]) -> tuple[Strategy, Strategy]:
    """``(requested, chosen)``: the strategy named and the one that runs pass ``pass_`` of ``v``'s convolution.

    A strategy that names itself must be able to run the pass (a :class:`StrategyNotSupportedError` says why
    not and which can). A chooser (``select``, as ``auto``) picks for every pass the same way: called with the
    pass's batched ``operands`` (what it may measure on), ``runner_for(name)`` (a candidate's prepared pass,
    from ``prepare``) and, where its ``select`` takes it, ``pass_``; what it picks must be able to run the pass.
    """
    backend, spec, limits = v.backend, v.spec, v.limits
    requested = get_strategy(name)
    if requested.select is None:
        reason = unable(requested, spec, backend, limits, pass_)
        if reason is not None:
            why = reason if pass_ == FORWARD else f"{reason} ({pass_})"
            raise StrategyNotSupportedError(requested.name, why, supporting(spec, backend, limits, pass_),
                                            _summary(spec))
        return requested, requested
    with backend.device_context(operands[0]):
        if pass_ == FORWARD and spec.pads_explicitly(pads_zeros=True):  # (whatever it picks, these modes pad)
            check_padded_fits(backend, v.x, spec)
        picked = call_select(requested, backend, operands, spec, limits,
                             lambda s: prepare(get_strategy(s)), pass_)
    chosen = get_strategy(picked)
    reason = unable(chosen, spec, backend, limits, pass_)
    if reason is not None:
        raise StrategyNotSupportedError(chosen.name, f"{reason} ({pass_}; chosen by {requested.name})",
                                        supporting(spec, backend, limits, pass_), _summary(spec))
    return requested, chosen


def _summary(spec: ConvSpec) -> str:
    return (f"kernel {'x'.join(map(str, spec.kernel))}, stride {spec.stride}, dilation {spec.dilation}, "
            f"groups {spec.groups}, x {spec.in_shape}")


#: bytes a plan's own objects take, at most (its closures, sizes and lists of blocks, as tracemalloc counts them
#: for the built-in strategies)
_PLAN_OVERHEAD = 4096


def spatial_dims(a: Any, batched: int = 2) -> int:
    """The number of spatial axes of an array ``a`` with ``batched`` leading axes (weights: 2) of a 1-D, 2-D or
    3-D convolution; 2 where it has none of those (validation then says what a 2-D one needs)."""
    ndim = getattr(a, "ndim", None)
    return ndim - batched if isinstance(ndim, int) and 1 <= ndim - batched <= 3 else 2


def make_plan(x: Any, w: Any, b: Any, args: ConvArgs, ndim: int | None = None) -> ConvPlan:
    """A new forward :class:`ConvPlan` (not cached) of an ``ndim``-D convolution (None: as many spatial axes as
    ``w`` has)."""
    v = validate(x, w, b, args, ndim=spatial_dims(w) if ndim is None else ndim)
    backend, spec, limits = v.backend, v.spec, v.limits
    requested, chosen = resolve(args.strategy, FORWARD, v, (v.x, v.w, v.b),
                                lambda s: runner_for(backend, spec, s, limits))
    pads = spec.pads_explicitly(chosen.pads_zeros)
    if pads:
        check_padded_fits(backend, v.x, spec)
    prepared = runner_for(backend, spec, chosen, limits)
    with backend.device_context(v.x):  # the kernel launches (sizes, handles) where the backend keeps them (CuPy)
        launches = backend.launches(spec.without_padding() if pads else spec, x.dtype)
    out_shape = spec.out_shape[1:] if v.unbatched else spec.out_shape
    return ConvPlan(FORWARD, v, requested.name, chosen, prepared, (x, w, b), (v.x, v.w, v.b), out_shape, None,
                    v.unbatched, launches)


class PlanCache(LRU[ConvPlan]):
    """Plans by everything they depend on, least recently used evicted past ``max_entries`` plans or
    ``max_bytes`` of their estimated size (:attr:`ConvPlan.nbytes`: no workspace, which is allocated per
    call; sizes, closures, lists of blocks and small constants such as a zero bias)."""

    def __init__(self, max_entries: int = 256, max_bytes: int = 16 << 20) -> None:
        super().__init__(max_entries, max_bytes, size=lambda plan: plan.nbytes)


#: the plans :func:`gemmconv.conv2d` and the backward passes reuse
PLAN_CACHE = PlanCache()


def cached(key: Hashable | None, make: Callable[[], ConvPlan]) -> ConvPlan:
    """The plan under ``key`` in :data:`PLAN_CACHE`, made and kept on a miss (``key`` None: made, not kept)."""
    if key is None:
        return make()
    return PLAN_CACHE.get_or_make(key, make)
