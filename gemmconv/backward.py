"""The backward passes of a convolution and the transposed convolution: :func:`conv2d_grad_input`,
:func:`conv2d_grad_weight` and :func:`conv_transpose2d` (torch's semantics).

Each validates its arguments as :func:`gemmconv.conv2d` does (the shapes it is given stand in for the arrays
it does not have), resolves its strategy per pass through the registry (``auto``:
:func:`gemmconv.strategies.auto.choose_pass`), and runs the strategy's pass. The one place that handles padding
modes other than zeros: ``grad_input`` of the explicitly padded input folded back onto the input
(:meth:`Backend.pad_adjoint`), ``grad_weight`` against the explicitly padded input.
"""

from __future__ import annotations

from typing import Any

from .args import ConvArgs
from .backends import Backend, get_backend
from .errors import StrategyNotSupportedError
from .registry import GRAD_INPUT, GRAD_WEIGHT, Strategy, get_strategy, missing_kernels, supporting
from .spec import ConvSpec, Limits
from .strategies import auto
from .strategies._common import deliver
from .validate import (  # the one array check and the one parser of ints and pairs
    Validated,
    _check_array,
    _pair,
    check_padded_fits,
    validate,
)

__all__ = ["conv2d_grad_input", "conv2d_grad_weight", "conv_transpose2d"]

def conv2d_grad_input(input_shape: tuple[int, ...], w: Any, grad_y: Any, *, out: Any | None = None,
                      **kwargs: Any) -> Any:
    """dL/dx for ``y = conv2d(x, w, b, ...)`` given ``grad_y`` = dL/dy (torch's ``conv2d_input``).

    Parameters
    ----------
    input_shape : tuple of int
        Shape of ``x``: (N, C, H, W), or (C, H, W) for a single image.
    w : array
        Weights (K, C / groups, KH, KW).
    grad_y : array
        dL/dy, of the shape ``conv2d`` gives for these arguments; same library and dtype as ``w``.
    **kwargs
        ``stride``, ``padding``, ``dilation``, ``groups``, ``padding_mode``, ``strategy``,
        ``workspace_limit``: as in :func:`gemmconv.conv2d`, with its defaults. Padding modes other than zeros
        fold the gradient of the padding back onto the input elements it copies, as autograd does. A strategy
        whose pass does not keep to a workspace limit refuses one.
    out : array, optional
        Receives the result (shape ``input_shape``, dtype and library of ``w``) and is returned.

    Returns
    -------
    array
        dL/dx of shape ``input_shape``, a fresh array unless ``out`` is given.
    """
    args = ConvArgs.from_kwargs("conv2d_grad_input", kwargs)
    backend = get_backend(w, "w")
    v = validate(_stand_in(backend, "input_shape", input_shape, w.dtype), w, None, args, ("input_shape", "w", "b"))
    gy = _check_grad_y(v, grad_y)
    strat = _resolve(args.strategy, v, GRAD_INPUT)
    with backend.device_context(v.w):
        dx = _grad_input(backend, v.spec, v.limits, strat, gy, v.w, None)
    return _deliver(backend, dx[0] if v.unbatched else dx, out)


def conv2d_grad_weight(x: Any, weight_shape: tuple[int, ...], grad_y: Any, *, out: Any | None = None,
                       **kwargs: Any) -> Any:
    """dL/dw for ``y = conv2d(x, w, b, ...)`` given ``grad_y`` = dL/dy (torch's ``conv2d_weight``).

    The bias's gradient is ``grad_y.sum((0, 2, 3))`` (``grad_y.sum((1, 2))`` for an unbatched one).

    Parameters
    ----------
    x : array
        The input (N, C, H, W) or (C, H, W).
    weight_shape : tuple of int
        Shape of ``w``: (K, C / groups, KH, KW).
    grad_y : array
        dL/dy, of the shape ``conv2d`` gives for these arguments; same library and dtype as ``x``.
    **kwargs
        The keyword arguments of :func:`conv2d_grad_input`.
    out : array, optional
        Receives the result (shape ``weight_shape``) and is returned.

    Returns
    -------
    array
        dL/dw of shape ``weight_shape``.
    """
    args = ConvArgs.from_kwargs("conv2d_grad_weight", kwargs)
    backend = get_backend(x, "x")
    v = validate(x, _stand_in(backend, "weight_shape", weight_shape, x.dtype, (4,)), None, args,
                 ("x", "weight_shape", "b"))
    gy = _check_grad_y(v, grad_y)
    strat = _resolve(args.strategy, v, GRAD_WEIGHT)
    spec = v.spec
    with backend.device_context(v.x):
        if spec.n == 0 or spec.c == 0:
            dw = backend.xp.zeros((spec.k, spec.cg, spec.kh, spec.kw), dtype=v.x.dtype)
        else:
            x4, inner = v.x, spec
            if spec.pads_explicitly(strat.pads_zeros):  # against the padded input
                check_padded_fits(backend, x4, spec)
                x4, inner = backend.pad(x4, spec), spec.without_padding()
            dw = strat.backward[GRAD_WEIGHT].prepare(backend, inner, v.limits)(x4, gy, None, None)
    return _deliver(backend, dw, out)


def conv_transpose2d(
    x: Any,
    w: Any,
    b: Any | None = None,
    *,
    stride: int | tuple[int, ...] = 1,
    padding: int | tuple[int, ...] = 0,
    output_padding: int | tuple[int, ...] = 0,
    groups: int = 1,
    dilation: int | tuple[int, ...] = 1,
    strategy: str = "auto",
    out: Any | None = None,
) -> Any:
    """The transposed convolution, as ``torch.nn.functional.conv_transpose2d``: the ``grad_input`` pass of the
    convolution whose output ``x`` would be, plus the bias.

    Parameters
    ----------
    x : array
        (N, C_in, H, W) or (C_in, H, W).
    w : array
        (C_in, C_out / groups, KH, KW).
    b : array or None
        (C_out,).
    stride, padding, dilation : int or tuple
        Of the convolution it transposes (ints, pairs or one-element tuples).
    output_padding : int or tuple
        Extra rows and columns on the bottom and right of the output, each smaller than the stride or the
        dilation.
    groups, strategy
        As in :func:`gemmconv.conv2d`.
    out : array, optional
        Receives the result and is returned.

    Returns
    -------
    array
        (N, C_out, H_out, W_out) with ``H_out = (H - 1)·stride - 2·padding + dilation·(KH - 1) +
        output_padding + 1``.
    """
    backend = get_backend(x, "x")
    if not hasattr(x, "ndim") or x.ndim not in (3, 4):
        raise ValueError(f"x must be 3-D or 4-D, got {getattr(x, 'shape', type(x).__name__)}")
    if not hasattr(w, "ndim") or w.ndim != 4:
        raise ValueError(f"w must be 4-D (C_in, C_out / groups, KH, KW), got {getattr(w, 'shape', type(w).__name__)}")
    if isinstance(padding, str):
        raise ValueError(f"padding must be an int or a pair of ints for conv_transpose2d, got {padding!r}")
    g = groups if isinstance(groups, int) and not isinstance(groups, bool) and groups > 0 else 1  # checked below
    x4 = x[None] if x.ndim == 3 else x
    n, c_in, h, wd = (int(s) for s in x4.shape)
    k_in, cg_out, kh, kw = (int(s) for s in w.shape)
    args = ConvArgs(stride, padding, dilation, groups, "zeros", strategy)
    sh, sw = _pair("stride", stride, 1)
    ph, pw = _pair("padding", padding, 0)
    dh, dw = _pair("dilation", dilation, 1)
    oph, opw = _pair("output_padding", output_padding, 0)
    if oph >= max(sh, dh) or opw >= max(sw, dw):
        raise ValueError(f"output_padding={output_padding!r} must be smaller than either the stride {(sh, sw)} or "
                         f"the dilation {(dh, dw)} in each dimension")
    if k_in != c_in:
        raise ValueError(f"w.shape[0] must be the {c_in} input channels of x, got w of shape {tuple(w.shape)}")
    height = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    width = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    if height < 1 or width < 1:
        raise ValueError(f"the output would be {height}x{width}: padding={padding!r} is too large for x of "
                         f"{h}x{wd} and a {kh}x{kw} kernel")
    shape = (n, cg_out * g, height, width)
    v = validate(_stand_in(backend, "x", shape, x.dtype), w, None, args, ("x", "w", "b"))
    if b is not None:  # the transposed convolution's bias: one value per output channel (C_out)
        _check_array("b", b, backend, (1,))
        if b.dtype != x.dtype:
            raise TypeError(f"b must have the dtype of x ({x.dtype}), got {b.dtype}; cast it")
        if int(b.shape[0]) != shape[1]:
            raise ValueError(f"b must have shape ({shape[1]},) (one value per output channel), got {tuple(b.shape)}")
        b = backend.native(b)
    spec = v.spec
    gy = x4
    if spec.out_shape != tuple(x4.shape):  # output rows beyond the convolution's reach (output_padding >= stride)
        gy = backend.xp.zeros(spec.out_shape, dtype=x.dtype)
        gy[:, :, :h, :wd] = x4
    strat = _resolve(args.strategy, v, GRAD_INPUT)
    with backend.device_context(x):
        y = _grad_input(backend, spec, v.limits, strat, gy, v.w, b)
    return _deliver(backend, y[0] if x.ndim == 3 else y, out)


def _stand_in(backend: Backend, name: str, shape: Any, dtype: Any, ndims: tuple[int, ...] = (3, 4)) -> Any:
    """A read-only zero-strided array of ``shape`` (no memory): validation reads only its shape and dtype."""
    if not isinstance(shape, (tuple, list)) or len(shape) not in ndims or not all(
            isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape):
        want = " or ".join(str(d) for d in ndims)
        raise ValueError(f"{name} must be a tuple of {want} non-negative ints, got {shape!r}")
    xp = backend.xp
    return xp.broadcast_to(xp.zeros((), dtype=dtype), tuple(shape))


def _check_grad_y(v: Validated, grad_y: Any) -> Any:
    """``grad_y`` as a 4-D array of the convolution's output shape (ValueError naming the expected shape)."""
    backend, spec = v.backend, v.spec
    owner = get_backend(grad_y, "grad_y")
    if owner is not backend:
        raise TypeError(f"grad_y is a {owner.name} array but the other arrays are {backend.name} arrays; "
                        f"pass all arrays from the same library")
    if grad_y.dtype != spec.dtype:
        raise TypeError(f"grad_y must have dtype {spec.dtype} like the other arrays, got {grad_y.dtype}; cast it")
    want = spec.out_shape[1:] if v.unbatched else spec.out_shape
    if tuple(grad_y.shape) != want:
        raise ValueError(f"grad_y must have shape {want} (the convolution's output for these shapes and arguments), "
                         f"got {tuple(grad_y.shape)}")
    return backend.native(grad_y)[None] if v.unbatched else backend.native(grad_y)


def _resolve(name: str, v: Validated, pass_: str) -> Strategy:
    requested = get_strategy(name)
    if requested.select is not None:
        return get_strategy(auto.choose_pass(v.spec, pass_, v.backend, v.limits))
    reason = requested.refusal(v.spec, v.limits, pass_) or missing_kernels(requested, v.backend, pass_)
    if reason is not None:
        raise StrategyNotSupportedError(requested.name, f"{reason} ({pass_})",
                                        supporting(v.spec, v.backend, v.limits, pass_))
    return requested


def _grad_input(backend: Backend, spec: ConvSpec, limits: Limits, strat: Strategy, gy: Any, w: Any,
                bias: Any | None) -> Any:
    """dL/dx (N, C, H, W) of ``spec`` from ``gy`` (N, K, OH, OW), plus ``bias`` (C,) where given."""
    if spec.n == 0 or spec.c == 0 or spec.k == 0:
        dx = backend.xp.zeros((spec.n, spec.c, spec.height, spec.width), dtype=w.dtype)
    else:
        explicit = spec.pads_explicitly(strat.pads_zeros)
        inner = spec.without_padding() if explicit else spec
        dx = strat.backward[GRAD_INPUT].prepare(backend, inner, limits)(gy, w, None, None)
        if explicit:
            dx = backend.pad_adjoint(dx, spec)
    if bias is not None:
        dx += bias.reshape(1, -1, 1, 1)  # (C,) -> (1, C, 1, 1)
    return dx


def _deliver(backend: Backend, y: Any, out: Any | None) -> Any:
    if out is None:
        return y
    if type(out) is not type(y) or tuple(out.shape) != tuple(y.shape) or out.dtype != y.dtype:
        raise ValueError(f"out must be a {type(y).__name__} of shape {tuple(y.shape)} and dtype {y.dtype}, got "
                         f"{type(out).__name__} of shape {tuple(getattr(out, 'shape', ()))}")
    return deliver(y, out)
