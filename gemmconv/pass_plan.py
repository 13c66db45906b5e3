"""Plans of the backward passes and the transposed convolution: each decision taken once, then run many times.

:class:`PassPlan` is :class:`~gemmconv.plan.ConvPlan`'s counterpart for ``grad_input``, ``grad_weight`` and
the transposed convolution: made from the arrays (the shapes it is given stand in for the arrays it does not
have), it validates them as :func:`gemmconv.conv2d` does, resolves its strategy per pass through the registry
(``auto``: :func:`gemmconv.strategies.auto.choose_pass`), prepares the strategy's pass, and runs on any arrays
of the same shapes, dtype, library and device. The one place that handles padding modes other than zeros in the
passes: ``grad_input`` of the explicitly padded input folded back onto the input (:meth:`Backend.pad_adjoint`),
``grad_weight`` against the explicitly padded input.

    conv2d_grad_input -> PASS_PLANS -> PassPlan (validate, backend, strategy, prepare) -> runner -> kernels
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from ._lru import LRU
from .args import ConvArgs
from .backends import Backend, get_backend
from .errors import StrategyNotSupportedError
from .plan import check_out_dtype, conform
from .prepared import Prepared, as_prepared
from .registry import GRAD_INPUT, GRAD_WEIGHT, Strategy, get_strategy, supporting, unable
from .spec import ConvSpec
from .strategies import auto
from .strategies._common import deliver
from .validate import Validated, _check_array, _dtype_name, _pair, check_padded_fits, validate

__all__ = ["PASS_PLANS", "TRANSPOSE", "PassPlan", "make_pass_plan"]

#: the transposed convolution: the grad_input pass of the convolution whose output its input would be, plus a bias
TRANSPOSE = "transpose"

_NAMES = {GRAD_INPUT: ("w", "grad_y"), GRAD_WEIGHT: ("x", "grad_y"), TRANSPOSE: ("x", "w", "b")}


class PassPlan:
    """A backward pass (``"grad_input"``, ``"grad_weight"``) or transposed convolution (``"transpose"``) prepared
    for arrays like the ones it was made for; see :func:`gemmconv.plan_grad_input`.

    Attributes
    ----------
    pass_ : str
        What it computes.
    strategy : str
        The strategy it runs (what ``auto`` resolved to).
    spec : ConvSpec
        The forward convolution's normalised sizes and hyper-parameters.
    out_shape : tuple of int
        Shape of its result.
    workspace_bytes : int
        Bytes of temporary memory one call may hold beyond its result (from the sizes).
    kernels : tuple of str
        The backend operations one call runs, in order (also in the ``repr``).
    """

    def __init__(self, pass_: str, v: Validated, strat: Strategy, arrays: tuple[Any, ...], natives: tuple[Any, ...],
                 out_shape: tuple[int, ...], run: Callable[..., Any], prepared: Prepared) -> None:
        self.pass_, self.strategy, self.spec, self.backend = pass_, strat.name, v.spec, v.backend
        self.out_shape, self._run = out_shape, run
        self.workspace_bytes, self.kernels = prepared.workspace_bytes, prepared.kernels
        # what a call's arrays must match: the types of ``natives`` (the arrays as :meth:`Backend.native` makes
        # them, which :func:`conform` makes a call's arrays too), the shapes of the arrays as given
        self._types = tuple(None if a is None else type(a) for a in natives)
        self._shapes = tuple(None if a is None else tuple(a.shape) for a in arrays)
        self._dtype = v.x.dtype  # validated (x, or the stand-in for it): native
        self._device = v.backend.device_key(next(a for a in arrays if a is not None))
        self.nbytes = 4096  # what the plan cache counts (its closures and sizes)

    def __call__(self, *arrays: Any, out: Any | None = None) -> Any:
        """Run the plan on arrays of the shapes, dtype, library and device it was made for (``w, grad_y`` for
        ``grad_input``, ``x, grad_y`` for ``grad_weight``, ``x, w, b`` for ``transpose``); ``out``, if given,
        receives the result."""
        names = _NAMES[self.pass_]
        arrays = arrays + (None,) * (len(names) - len(arrays))
        if len(arrays) != len(names):
            raise TypeError(f"this {self.pass_} plan takes {', '.join(names)}, got {len(arrays)} arrays")
        backend = self.backend
        arrays = conform(backend, names, arrays, self._types, self._shapes, self._dtype)
        if backend.has_devices and backend.device_key(arrays[0]) != self._device:
            raise ValueError(f"{names[0]}: this plan was made for arrays on device {self._device}; make a plan "
                             "on that device")
        with backend.device_context(arrays[0]):
            y = self._run(*arrays)
        return _deliver(y, out)

    def __repr__(self) -> str:
        s = self.spec
        return (f"PassPlan({self.pass_}, {self.strategy}, {self.backend.name} {self._dtype}, -> {self.out_shape}, "
                f"kernel {s.kh}x{s.kw}, stride {(s.sh, s.sw)}, padding {(s.pt, s.pb, s.pl, s.pr)}, dilation "
                f"{(s.dh, s.dw)}, groups {s.groups}, kernels {' -> '.join(self.kernels)}, "
                f"workspace {self.workspace_bytes:,} bytes)")


def make_pass_plan(pass_: str, arrays: tuple[Any, ...], shape: tuple[int, ...], args: ConvArgs,
                   output_padding: Any = 0) -> PassPlan:
    """A new :class:`PassPlan` (not cached): ``arrays`` as :meth:`PassPlan.__call__` takes them, ``shape`` the
    one not given (``input_shape`` of grad_input, ``weight_shape`` of grad_weight; ignored for transpose)."""
    if pass_ == GRAD_INPUT:
        return _grad_input(arrays, shape, args)
    if pass_ == GRAD_WEIGHT:
        return _grad_weight(arrays, shape, args)
    return _transpose(arrays, args, output_padding)


def _grad_input(arrays: tuple[Any, ...], input_shape: tuple[int, ...], args: ConvArgs) -> PassPlan:
    w, grad_y = arrays
    backend = get_backend(w, "w")
    v = validate(_stand_in(backend, "input_shape", input_shape, w.dtype), w, None, args, ("input_shape", "w", "b"))
    _check_grad_y(v, grad_y)
    gy4 = backend.native(grad_y)[None] if v.unbatched else backend.native(grad_y)  # (K, OH, OW) -> (1, K, OH, OW)
    strat = _resolve(args.strategy, v, GRAD_INPUT, gy4, v.w)
    run = _grad_input_runner(backend, v, strat)

    def grad_input(w: Any, gy: Any) -> Any:
        dx = run(gy[None] if v.unbatched else gy, w, None, None)  # (K, OH, OW) -> (1, K, OH, OW)
        return dx[0] if v.unbatched else dx

    return PassPlan(GRAD_INPUT, v, strat, arrays, (v.w, gy4), tuple(input_shape), grad_input, run)


def _grad_weight(arrays: tuple[Any, ...], weight_shape: tuple[int, ...], args: ConvArgs) -> PassPlan:
    x, grad_y = arrays
    backend = get_backend(x, "x")
    v = validate(x, _stand_in(backend, "weight_shape", weight_shape, x.dtype, (4,)), None, args,
                 ("x", "weight_shape", "b"))
    _check_grad_y(v, grad_y)
    gy4 = backend.native(grad_y)[None] if v.unbatched else backend.native(grad_y)  # (K, OH, OW) -> (1, K, OH, OW)
    strat = _resolve(args.strategy, v, GRAD_WEIGHT, v.x, gy4)
    run = _grad_weight_runner(backend, v, strat)

    def grad_weight(x: Any, gy: Any) -> Any:
        if v.unbatched:  # (C, H, W) -> (1, C, H, W)
            return run(x[None], gy[None], None, None)
        return run(x, gy, None, None)

    return PassPlan(GRAD_WEIGHT, v, strat, arrays, (v.x, gy4), tuple(weight_shape), grad_weight, run)


def _transpose(arrays: tuple[Any, ...], args: ConvArgs, output_padding: Any) -> PassPlan:
    x, w, b = arrays
    backend = get_backend(x, "x")
    if not hasattr(x, "ndim") or x.ndim not in (3, 4):
        raise ValueError(f"x must be 3-D or 4-D, got {getattr(x, 'shape', type(x).__name__)}")
    if not hasattr(w, "ndim") or w.ndim != 4:
        raise ValueError(f"w must be 4-D (C_in, C_out / groups, KH, KW), got {getattr(w, 'shape', type(w).__name__)}")
    if isinstance(args.padding, str):
        raise ValueError(f"padding must be an int or a pair of ints for conv_transpose2d, got {args.padding!r}")
    groups = args.groups
    g = groups if isinstance(groups, int) and not isinstance(groups, bool) and groups > 0 else 1  # checked below
    x4 = x[None] if x.ndim == 3 else x
    n, c_in, h, wd = (int(s) for s in x4.shape)
    k_in, cg_out, kh, kw = (int(s) for s in w.shape)
    sh, sw = _pair("stride", args.stride, 1)
    ph, pw = _pair("padding", args.padding, 0)
    dh, dw = _pair("dilation", args.dilation, 1)
    oph, opw = _pair("output_padding", output_padding, 0)
    if oph >= max(sh, dh) or opw >= max(sw, dw):
        raise ValueError(f"output_padding={output_padding!r} must be smaller than either the stride {(sh, sw)} or "
                         f"the dilation {(dh, dw)} in each dimension")
    if k_in != c_in:
        raise ValueError(f"w.shape[0] must be the {c_in} input channels of x, got w of shape {tuple(w.shape)}")
    height = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    width = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    if height < 1 or width < 1:
        raise ValueError(f"the output would be {height}x{width}: padding={args.padding!r} is too large for x of "
                         f"{h}x{wd} and a {kh}x{kw} kernel")
    shape = (n, cg_out * g, height, width)
    v = validate(_stand_in(backend, "x", shape, x.dtype), w, None, args, ("x", "w", "b"))
    spec_dtype = v.spec.dtype
    if b is not None:  # the transposed convolution's bias: one value per output channel (C_out)
        _check_array("b", b, backend, (1,))
        if _dtype_name(b.dtype) != spec_dtype:  # the name: any byte order
            raise TypeError(f"b must have the dtype of x ({spec_dtype}), got {b.dtype}; cast it")
        if int(b.shape[0]) != shape[1]:
            raise ValueError(f"b must have shape ({shape[1]},) (one value per output channel), got {tuple(b.shape)}")
    spec = v.spec
    reach = spec.out_shape != tuple(x4.shape)  # output rows beyond the convolution's reach (output_padding)
    unbatched = x.ndim == 3

    def grad_y(x: Any) -> Any:
        gy = x[None] if unbatched else x  # (C_in, H, W) -> (1, C_in, H, W)
        if reach:
            full = backend.xp.zeros(spec.out_shape, dtype=x.dtype)
            full[:, :, :h, :wd] = gy
            gy = full
        return gy

    x_native = backend.native(x)
    strat = _resolve(args.strategy, v, GRAD_INPUT, grad_y(x_native), v.w)
    run = _grad_input_runner(backend, v, strat)

    def transpose(x: Any, w: Any, b: Any) -> Any:
        y = run(grad_y(x), w, b, None)
        return y[0] if unbatched else y

    natives = (x_native, v.w, None if b is None else backend.native(b))
    return PassPlan(TRANSPOSE, v, strat, arrays, natives, shape[1:] if unbatched else shape, transpose, run)


def _grad_input_runner(backend: Backend, v: Validated, strat: Strategy) -> Prepared:
    """``run(gy, w, bias, None) -> dL/dx`` (N, C, H, W) of ``v``'s convolution from ``gy`` (N, K, OH, OW), plus
    ``bias`` (C,) where given."""
    spec, xp = v.spec, backend.xp
    if spec.n == 0 or spec.c == 0 or spec.k == 0:
        def zeros(gy: Any, w: Any, bias: Any, out: Any) -> Any:
            dx = xp.zeros((spec.n, spec.c, spec.height, spec.width), dtype=w.dtype)
            return dx if bias is None else dx + bias.reshape(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1)
        return Prepared(zeros, ("fill",))
    explicit = spec.pads_explicitly(strat.pads_zeros)
    inner: ConvSpec = spec.without_padding() if explicit else spec
    prepared = as_prepared(strat.backward[GRAD_INPUT].prepare(backend, inner, v.limits),
                           f"strategy {strat.name!r}: grad_input prepare")
    if not explicit:
        return prepared

    def run(gy: Any, w: Any, bias: Any, out: Any) -> Any:
        dx = backend.pad_adjoint(prepared(gy, w, None, None), spec)
        if bias is not None:
            dx += bias.reshape(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1)
        return dx

    return prepared.then(run, after=("pad_adjoint",))


def _grad_weight_runner(backend: Backend, v: Validated, strat: Strategy) -> Prepared:
    """``run(x, gy, None, None) -> dL/dw`` (K, C/G, KH, KW) of ``v``'s convolution from its batched input and
    ``gy``."""
    spec, xp = v.spec, backend.xp
    if spec.n == 0 or spec.c == 0:
        return Prepared(lambda x, gy, _, out: xp.zeros((spec.k, spec.cg, spec.kh, spec.kw), dtype=x.dtype),
                        ("fill",))
    explicit = spec.pads_explicitly(strat.pads_zeros)  # then against the padded input
    if explicit:
        check_padded_fits(backend, v.x, spec)
    prepared = as_prepared(strat.backward[GRAD_WEIGHT].prepare(backend, spec.without_padding() if explicit else spec,
                                                               v.limits),
                           f"strategy {strat.name!r}: grad_weight prepare")
    if not explicit:
        return prepared

    def run(x: Any, gy: Any, _: Any, out: Any) -> Any:
        return prepared(backend.pad(x, spec), gy, None, None)

    return prepared.then(run, before=("pad",))


def _stand_in(backend: Backend, name: str, shape: Any, dtype: Any, ndims: tuple[int, ...] = (3, 4)) -> Any:
    """A read-only zero-strided array of ``shape`` (no memory): validation reads only its shape and dtype."""
    if not isinstance(shape, (tuple, list)) or len(shape) not in ndims or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        want = " or ".join(str(d) for d in ndims)
        raise ValueError(f"{name} must be a tuple of {want} non-negative ints, got {shape!r}")
    xp = backend.xp
    # one native element (dtype may be byte-swapped: converting the broadcast view would fill all of shape)
    return xp.broadcast_to(backend.native(xp.zeros((), dtype=dtype)), tuple(shape))


def _check_grad_y(v: Validated, grad_y: Any) -> None:
    """``grad_y`` must be of the convolution's output shape, library and dtype (errors name the expected ones)."""
    backend, spec = v.backend, v.spec
    owner = get_backend(grad_y, "grad_y")
    if owner is not backend:
        raise TypeError(f"grad_y is a {owner.name} array but the other arrays are {backend.name} arrays; "
                        f"pass all arrays from the same library")
    if _dtype_name(grad_y.dtype) != spec.dtype:  # the name: any byte order
        raise TypeError(f"grad_y must have dtype {spec.dtype} like the other arrays, got {grad_y.dtype}; cast it")
    want = spec.out_shape[1:] if v.unbatched else spec.out_shape
    if tuple(grad_y.shape) != want:
        raise ValueError(f"grad_y must have shape {want} (the convolution's output for these shapes and arguments), "
                         f"got {tuple(grad_y.shape)}")


def _resolve(name: str, v: Validated, pass_: str, a: Any, b: Any) -> Strategy:
    """The strategy that runs pass ``pass_``: ``auto``'s choice (measured on the pass's batched operands ``a`` and
    ``b`` when autotuning is on), or the one named if it can."""
    requested = get_strategy(name)
    if requested.select is not None:
        prepare = _grad_input_runner if pass_ == GRAD_INPUT else _grad_weight_runner

        def runner_for(s: str) -> Any:
            return prepare(v.backend, v, get_strategy(s))

        with v.backend.device_context(a):
            return get_strategy(auto.select_pass(v.backend, a, b, v.spec, pass_, v.limits, runner_for))
    reason = unable(requested, v.spec, v.backend, v.limits, pass_)
    if reason is not None:
        raise StrategyNotSupportedError(requested.name, f"{reason} ({pass_})",
                                        supporting(v.spec, v.backend, v.limits, pass_))
    return requested


def _deliver(y: Any, out: Any | None) -> Any:
    if out is None:
        return y
    if not isinstance(out, type(y)) or not hasattr(out, "dtype"):
        raise ValueError(f"out must be a {type(y).__name__} of shape {tuple(y.shape)} and dtype {y.dtype}, got "
                         f"{type(out).__name__}")
    check_out_dtype(out, tuple(y.shape), y.dtype)
    return deliver(y, out)


#: the pass plans :func:`gemmconv.conv2d_grad_input` and the others reuse: least recently used evicted past 256
#: plans or 16 MiB of their estimated size
PASS_PLANS: LRU[PassPlan] = LRU(256, 16 << 20, size=lambda p: p.nbytes)


def cached(key: Hashable | None, make: Callable[[], PassPlan]) -> PassPlan:
    """The plan under ``key`` in :data:`PASS_PLANS`, made and kept on a miss (``key`` None: made, not kept)."""
    if key is None:
        return make()
    return PASS_PLANS.get_or_make(key, make)
