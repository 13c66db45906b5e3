"""Plans of the backward passes and the transposed convolution: the arrays checked, the strategy resolved and
its pass prepared, into a :class:`~gemmconv.planning.plan.ConvPlan` like the forward pass's.

Made from the arrays (the shapes it is given stand in for the arrays it does not have), each validates them as
:func:`gemmconv.conv2d` does and resolves its strategy per pass (:func:`gemmconv.planning.plan.resolve`). The one place
that handles padding modes other than zeros in the passes: ``grad_input`` of the explicitly padded input folded
back onto the input (:meth:`Backend.pad_adjoint`), ``grad_weight`` against the explicitly padded input.

    conv2d_grad_input -> PLAN_CACHE -> make_pass_plan (validate, resolve, prepare) -> ConvPlan -> kernels
"""

from __future__ import annotations

from typing import Any

from ..backends import Backend, get_backend
from ..core.args import ConvArgs
from ..core.prepared import Prepared, as_prepared
from ..core.registry import GRAD_INPUT, GRAD_WEIGHT, Strategy
from ..core.spec import ConvSpec
from .plan import PLAN_CACHE, TRANSPOSE, ConvPlan, cached, limits_left, resolve, spatial_dims
from .validate import Validated, _check_array, check_dtype, check_padded_fits, per_axis, stand_in, validate

__all__ = ["PASS_PLANS", "TRANSPOSE", "cached", "make_pass_plan"]

#: the plans of the passes are kept in the one plan cache (this name stays for code that imported it)
PASS_PLANS = PLAN_CACHE


def make_pass_plan(pass_: str, arrays: tuple[Any, ...], shape: tuple[int, ...], args: ConvArgs,
                   output_padding: Any = 0, ndim: int | None = None) -> ConvPlan:
    """A new :class:`~gemmconv.planning.plan.ConvPlan` of pass ``pass_`` (not cached) of an ``ndim``-D convolution
    (None: as many spatial axes as the weights have, or ``weight_shape``): ``arrays`` as the plan takes them,
    ``shape`` the one not given (``input_shape`` of grad_input, ``weight_shape`` of grad_weight; ignored for
    transpose)."""
    if pass_ == GRAD_INPUT:
        return _grad_input(arrays, shape, args, spatial_dims(arrays[0]) if ndim is None else ndim)
    if pass_ == GRAD_WEIGHT:
        if ndim is None:
            ndim = len(shape) - 2 if isinstance(shape, (tuple, list)) and 3 <= len(shape) <= 5 else 2
        return _grad_weight(arrays, shape, args, ndim)
    return _transpose(arrays, args, output_padding, spatial_dims(arrays[1]) if ndim is None else ndim)


def _grad_input(arrays: tuple[Any, ...], input_shape: tuple[int, ...], args: ConvArgs, ndim: int) -> ConvPlan:
    w, grad_y = arrays
    backend = get_backend(w, "w")
    v = validate(_stand_in(backend, "input_shape", input_shape, w.dtype, (ndim + 1, ndim + 2)), w, None, args,
                 ("input_shape", "w", "b"), ndim)
    _check_grad_y(v, grad_y)
    gy4 = backend.native(grad_y)[None] if v.unbatched else backend.native(grad_y)  # (K, OH, OW) -> (1, K, OH, OW)
    requested, chosen = resolve(args.strategy, GRAD_INPUT, v, (gy4, v.w, None),
                                lambda s: _grad_input_runner(backend, v, s))
    unbatched = v.unbatched

    def operands(w: Any, gy: Any, _: Any) -> tuple[Any, Any, Any]:
        return (gy[None] if unbatched else gy), w, None  # (K, OH, OW) -> (1, K, OH, OW)

    return ConvPlan(GRAD_INPUT, v, requested.name, chosen, _grad_input_runner(backend, v, chosen), arrays,
                    (v.w, gy4), tuple(input_shape), operands, unbatched)


def _grad_weight(arrays: tuple[Any, ...], weight_shape: tuple[int, ...], args: ConvArgs, ndim: int) -> ConvPlan:
    x, grad_y = arrays
    backend = get_backend(x, "x")
    v = validate(x, _stand_in(backend, "weight_shape", weight_shape, x.dtype, (ndim + 2,)), None, args,
                 ("x", "weight_shape", "b"), ndim)
    _check_grad_y(v, grad_y)
    gy4 = backend.native(grad_y)[None] if v.unbatched else backend.native(grad_y)  # (K, OH, OW) -> (1, K, OH, OW)
    requested, chosen = resolve(args.strategy, GRAD_WEIGHT, v, (v.x, gy4, None),
                                lambda s: _grad_weight_runner(backend, v, s))
    unbatched = v.unbatched

    def operands(x: Any, gy: Any, _: Any) -> tuple[Any, Any, Any]:
        if unbatched:  # (C, H, W) -> (1, C, H, W), (K, OH, OW) -> (1, K, OH, OW)
            return x[None], gy[None], None
        return x, gy, None

    return ConvPlan(GRAD_WEIGHT, v, requested.name, chosen, _grad_weight_runner(backend, v, chosen), arrays,
                    (v.x, gy4), tuple(weight_shape), operands, False)


def _transpose(arrays: tuple[Any, ...], args: ConvArgs, output_padding: Any, ndim: int) -> ConvPlan:
    x, w, b = arrays
    backend = get_backend(x, "x")
    if not hasattr(x, "ndim") or x.ndim not in (ndim + 1, ndim + 2):
        raise ValueError(f"x must be {ndim + 1}-D or {ndim + 2}-D, got {getattr(x, 'shape', type(x).__name__)}")
    if not hasattr(w, "ndim") or w.ndim != ndim + 2:
        raise ValueError(f"w must be {ndim + 2}-D (C_in, C_out / groups, *kernel), got "
                         f"{getattr(w, 'shape', type(w).__name__)}")
    if isinstance(args.padding, str):
        raise ValueError(f"padding must be an int or a tuple of {ndim} ints for conv_transpose{ndim}d, got "
                         f"{args.padding!r}")
    groups = args.groups
    g = groups if isinstance(groups, int) and not isinstance(groups, bool) and groups > 0 else 1  # checked below
    x4 = x[None] if x.ndim == ndim + 1 else x
    n, c_in, *size = (int(s) for s in x4.shape)
    k_in, cg_out, *kernel = (int(s) for s in w.shape)
    strides = per_axis("stride", args.stride, 1, ndim)
    pads = per_axis("padding", args.padding, 0, ndim)
    dilations = per_axis("dilation", args.dilation, 1, ndim)
    extra = per_axis("output_padding", output_padding, 0, ndim)
    if any(e >= max(s, d) for e, s, d in zip(extra, strides, dilations, strict=True)):
        raise ValueError(f"output_padding={output_padding!r} must be smaller than either the stride {strides} or "
                         f"the dilation {dilations} in each dimension")
    if k_in != c_in:
        raise ValueError(f"w.shape[0] must be the {c_in} input channels of x, got w of shape {tuple(w.shape)}")
    out = tuple((i - 1) * s - 2 * p + d * (r - 1) + e + 1
                for i, s, p, d, r, e in zip(size, strides, pads, dilations, kernel, extra, strict=True))
    if min(out) < 1:
        raise ValueError(f"the output would be {'x'.join(map(str, out))}: padding={args.padding!r} is too large "
                         f"for x of {'x'.join(map(str, size))} and a {'x'.join(map(str, kernel))} kernel")
    shape = (n, cg_out * g, *out)
    v = validate(_stand_in(backend, "x", shape, x.dtype, (ndim + 2,)), w, None, args, ("x", "w", "b"), ndim)
    if b is not None:  # the transposed convolution's bias: one value per output channel (C_out)
        _check_array("b", b, backend, (1,))
        check_dtype("b", b.dtype, v.w.dtype, "x")
        if int(b.shape[0]) != shape[1]:
            raise ValueError(f"b must have shape ({shape[1]},) (one value per output channel), got {tuple(b.shape)}")
    spec = v.spec
    reach = spec.out_shape != tuple(x4.shape)  # output rows beyond the convolution's reach (output_padding)
    unbatched = x.ndim == ndim + 1
    within = (slice(None), slice(None), *(slice(0, i) for i in size))  # x's part of grad_y

    def grad_y(x: Any) -> Any:
        gy = x[None] if unbatched else x  # (C_in, *size) -> (1, C_in, *size)
        if reach:
            full = backend.xp.zeros(spec.out_shape, dtype=x.dtype)
            full[within] = gy
            gy = full
        return gy

    x_native = backend.native(x)
    requested, chosen = resolve(args.strategy, GRAD_INPUT, v, (grad_y(x_native), v.w, None),
                                lambda s: _grad_input_runner(backend, v, s))

    def operands(x: Any, w: Any, b: Any) -> tuple[Any, Any, Any]:
        return grad_y(x), w, b

    natives = (x_native, v.w, None if b is None else backend.native(b))
    runner = _grad_input_runner(backend, v, chosen)
    if v.w.dtype.kind == "c":
        runner = _unconjugated(runner)
    return ConvPlan(TRANSPOSE, v, requested.name, chosen, runner, arrays, natives,
                    shape[1:] if unbatched else shape, operands, unbatched)


def _unconjugated(grad_input: Prepared) -> Prepared:
    """The transposed convolution from the ``grad_input`` pass of complex weights: grad_input is the adjoint (the
    transpose with the weights conjugated, as torch autograd's), the transposed convolution the transpose alone."""
    def run(gy: Any, w: Any, b: Any, out: Any) -> Any:
        return grad_input(gy, w.conj(), b, out)

    return grad_input.then(run, before=("conj",))


def _grad_input_runner(backend: Backend, v: Validated, strat: Strategy) -> Prepared:
    """``run(gy, w, bias, None) -> dL/dx`` (N, C, *size) of ``v``'s convolution from ``gy`` (N, K, *out_size), plus
    ``bias`` (C,) where given."""
    spec, xp = v.spec, backend.xp
    if spec.n == 0 or spec.c == 0 or spec.k == 0:
        def zeros(gy: Any, w: Any, bias: Any, out: Any) -> Any:
            dx = xp.zeros(spec.in_shape, dtype=w.dtype)
            return dx if bias is None else dx + bias.reshape(1, -1, *(1,) * spec.ndim)  # (C,) -> (1, C, 1, ...)
        return Prepared(zeros, ("fill",))
    explicit = spec.pads_explicitly(strat.pads_zeros)
    inner: ConvSpec = spec.without_padding() if explicit else spec
    prepared = as_prepared(strat.backward[GRAD_INPUT].prepare(backend, inner,
                                                              limits_left(v.limits, spec, strat.pads_zeros)),
                           f"strategy {strat.name!r}: grad_input prepare")
    if not explicit:
        return prepared

    def run(gy: Any, w: Any, bias: Any, out: Any) -> Any:
        dx = backend.pad_adjoint(prepared(gy, w, None, None), spec)
        if bias is not None:
            dx += bias.reshape(1, -1, *(1,) * spec.ndim)  # (C,) -> (1, C, 1, ...)
        return dx

    return prepared.then(run, after=("pad_adjoint",), workspace_bytes=spec.padded_bytes)  # the padded gradient


def _grad_weight_runner(backend: Backend, v: Validated, strat: Strategy) -> Prepared:
    """``run(x, gy, None, None) -> dL/dw`` (K, C/G, *kernel) of ``v``'s convolution from its batched input and
    ``gy``."""
    spec, xp = v.spec, backend.xp
    if spec.n == 0 or spec.c == 0:
        return Prepared(lambda x, gy, _, out: xp.zeros(spec.weight_shape, dtype=x.dtype),
                        ("fill",))
    explicit = spec.pads_explicitly(strat.pads_zeros)  # then against the padded input
    if explicit:
        check_padded_fits(backend, v.x, spec)
    prepared = as_prepared(strat.backward[GRAD_WEIGHT].prepare(backend, spec.without_padding() if explicit else spec,
                                                               limits_left(v.limits, spec, strat.pads_zeros)),
                           f"strategy {strat.name!r}: grad_weight prepare")
    if not explicit:
        return prepared

    def run(x: Any, gy: Any, _: Any, out: Any) -> Any:
        return prepared(backend.pad(x, spec), gy, None, None)

    return prepared.then(run, before=("pad",), workspace_bytes=spec.padded_bytes)


def _stand_in(backend: Backend, name: str, shape: Any, dtype: Any, ndims: tuple[int, ...] = (3, 4)) -> Any:
    """The :func:`~gemmconv.planning.validate.stand_in` of the argument ``name``, a shape, once it is checked
    to be ``ndims`` non-negative ints."""
    if not isinstance(shape, (tuple, list)) or len(shape) not in ndims or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        want = " or ".join(str(d) for d in ndims)
        raise ValueError(f"{name} must be a tuple of {want} non-negative ints, got {shape!r}")
    return stand_in(backend, tuple(shape), dtype)


def _check_grad_y(v: Validated, grad_y: Any) -> None:
    """``grad_y`` must be of the convolution's output shape, library and dtype (errors name the expected ones)."""
    backend, spec = v.backend, v.spec
    owner = get_backend(grad_y, "grad_y")
    if owner is not backend:
        raise TypeError(f"grad_y is a {owner.name} array but the other arrays are {backend.name} arrays; "
                        f"pass all arrays from the same library")
    check_dtype("grad_y", grad_y.dtype, v.w.dtype, "the other arrays")
    want = spec.out_shape[1:] if v.unbatched else spec.out_shape
    if tuple(grad_y.shape) != want:
        raise ValueError(f"grad_y must have shape {want} (the convolution's output for these shapes and arguments), "
                         f"got {tuple(grad_y.shape)}")
