"""The backward passes of a convolution and the transposed convolution: :func:`conv2d_grad_input`,
:func:`conv2d_grad_weight` and :func:`conv_transpose2d` (torch's semantics), and their plans.

Each looks its :class:`~gemmconv.planning.plan.ConvPlan` up in :data:`~gemmconv.planning.plan.PLAN_CACHE` (by
everything a plan depends on), makes it on a miss, and calls it: the same path as
``plan_grad_input(...)(w, grad_y)``, as :func:`gemmconv.conv2d` is for the forward pass. Their arrays may have
either byte order and any memory layout, as :func:`gemmconv.conv2d`'s (its Notes); results are native, C-contiguous
and fresh unless ``out`` is given, which must be native.
"""

from __future__ import annotations

from typing import Any

from ..core.args import DEFAULTS, ConvArgs
from ..core.registry import GRAD_INPUT, GRAD_WEIGHT
from ..planning.passes import make_pass_plan
from ..planning.plan import TRANSPOSE, ConvPlan, cached
from ._dask_hook import any_dask, dask_functions
from .conv import plan_key

__all__ = ["conv1d_grad_input", "conv1d_grad_weight", "conv2d_grad_input", "conv2d_grad_weight", "conv3d_grad_input",
           "conv3d_grad_weight", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "grad_input",
           "grad_weight", "plan_conv_transpose2d", "plan_grad_input", "plan_grad_weight", "transpose"]


def _args_key(args: ConvArgs) -> tuple[Any, ...]:
    return tuple(args.as_dict(strategy=True).values())


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
        dL/dy, of the shape ``conv2d`` gives for these arguments; same library and dtype as ``w``; or a
        ``dask.array.Array`` of such chunks, whose result is a lazy Dask array (README: Dask).
    **kwargs
        ``stride``, ``padding``, ``dilation``, ``groups``, ``padding_mode``, ``strategy``,
        ``workspace_limit``: as in :func:`gemmconv.conv2d`, with its defaults. Padding modes other than zeros
        fold the gradient of the padding back onto the input elements it copies, as autograd does.
    out : array, optional
        Receives the result (shape ``input_shape``, dtype and library of ``w``) and is returned.

    Returns
    -------
    array
        dL/dx of shape ``input_shape``, a fresh array unless ``out`` is given.

    Examples
    --------
    >>> import numpy as np, gemmconv
    >>> w = np.ones((1, 1, 2, 2)); gy = np.ones((1, 1, 2, 2))
    >>> gemmconv.conv2d_grad_input((1, 1, 3, 3), w, gy)[0, 0]
    array([[1., 2., 1.],
           [2., 4., 2.],
           [1., 2., 1.]])
    """
    return grad_input(2, input_shape, w, grad_y, ConvArgs.from_kwargs("conv2d_grad_input", kwargs), out)


def grad_input(ndim: int, input_shape: tuple[int, ...], w: Any, grad_y: Any, args: ConvArgs, out: Any) -> Any:
    """dL/dx of an ``ndim``-D convolution: ``conv1d_grad_input``, ``conv2d_grad_input`` and ``conv3d_grad_input``
    are this."""
    if any_dask(grad_y, w):  # lazily: each block by the public function
        return dask_functions().grad_input_nd(input_shape, w, grad_y, args, out, ndim=ndim)
    key = plan_key(w, grad_y, None, (GRAD_INPUT, ndim, input_shape, *_args_key(args)))
    plan = cached(key, lambda: make_pass_plan(GRAD_INPUT, (w, grad_y), input_shape, args, ndim=ndim))
    return plan(w, grad_y, out=out)


def conv1d_grad_input(input_shape: tuple[int, ...], w: Any, grad_y: Any, *, out: Any | None = None,
                      **kwargs: Any) -> Any:
    """dL/dx for ``y = conv1d(x, w, b, ...)`` given ``grad_y`` = dL/dy: :func:`conv2d_grad_input` for an input
    (N, C, L) or (C, L) and weights (K, C / groups, k)."""
    return grad_input(1, input_shape, w, grad_y, ConvArgs.from_kwargs("conv1d_grad_input", kwargs), out)


def conv3d_grad_input(input_shape: tuple[int, ...], w: Any, grad_y: Any, *, out: Any | None = None,
                      **kwargs: Any) -> Any:
    """dL/dx for ``y = conv3d(x, w, b, ...)`` given ``grad_y`` = dL/dy: :func:`conv2d_grad_input` for an input
    (N, C, D, H, W) or (C, D, H, W) and weights (K, C / groups, KD, KH, KW)."""
    return grad_input(3, input_shape, w, grad_y, ConvArgs.from_kwargs("conv3d_grad_input", kwargs), out)


def conv2d_grad_weight(x: Any, weight_shape: tuple[int, ...], grad_y: Any, *, out: Any | None = None,
                       **kwargs: Any) -> Any:
    """dL/dw for ``y = conv2d(x, w, b, ...)`` given ``grad_y`` = dL/dy (torch's ``conv2d_weight``).

    The bias's gradient is ``grad_y.sum((0, 2, 3))`` (``grad_y.sum((1, 2))`` for an unbatched one).

    Parameters
    ----------
    x : array
        The input (N, C, H, W) or (C, H, W); or a ``dask.array.Array`` of such chunks (``grad_y`` then a Dask
        array or an array of x's library), whose result is a lazy Dask array (README: Dask).
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
    return grad_weight(2, x, weight_shape, grad_y, ConvArgs.from_kwargs("conv2d_grad_weight", kwargs), out)


def grad_weight(ndim: int, x: Any, weight_shape: tuple[int, ...], grad_y: Any, args: ConvArgs, out: Any) -> Any:
    """dL/dw of an ``ndim``-D convolution: ``conv1d_grad_weight``, ``conv2d_grad_weight`` and
    ``conv3d_grad_weight`` are this."""
    if any_dask(x):  # lazily: the blocks' shares, each by the public function, added by a tree
        return dask_functions().grad_weight_nd(x, weight_shape, grad_y, args, out, ndim=ndim)
    key = plan_key(x, grad_y, None, (GRAD_WEIGHT, ndim, weight_shape, *_args_key(args)))
    plan = cached(key, lambda: make_pass_plan(GRAD_WEIGHT, (x, grad_y), weight_shape, args, ndim=ndim))
    return plan(x, grad_y, out=out)


def conv1d_grad_weight(x: Any, weight_shape: tuple[int, ...], grad_y: Any, *, out: Any | None = None,
                       **kwargs: Any) -> Any:
    """dL/dw for ``y = conv1d(x, w, b, ...)`` given ``grad_y`` = dL/dy: :func:`conv2d_grad_weight` for an input
    (N, C, L) or (C, L) and ``weight_shape`` (K, C / groups, k)."""
    return grad_weight(1, x, weight_shape, grad_y, ConvArgs.from_kwargs("conv1d_grad_weight", kwargs), out)


def conv3d_grad_weight(x: Any, weight_shape: tuple[int, ...], grad_y: Any, *, out: Any | None = None,
                       **kwargs: Any) -> Any:
    """dL/dw for ``y = conv3d(x, w, b, ...)`` given ``grad_y`` = dL/dy: :func:`conv2d_grad_weight` for an input
    (N, C, D, H, W) or (C, D, H, W) and ``weight_shape`` (K, C / groups, KD, KH, KW)."""
    return grad_weight(3, x, weight_shape, grad_y, ConvArgs.from_kwargs("conv3d_grad_weight", kwargs), out)


def conv_transpose2d(
    x: Any,
    w: Any,
    b: Any | None = None,
    *,
    stride: int | tuple[int, ...] = DEFAULTS.stride,
    padding: int | tuple[int, ...] = DEFAULTS.padding,
    output_padding: int | tuple[int, ...] = 0,
    groups: int = DEFAULTS.groups,
    dilation: int | tuple[int, ...] = DEFAULTS.dilation,
    strategy: str = DEFAULTS.strategy,
    out: Any | None = None,
) -> Any:
    """The transposed convolution, as ``torch.nn.functional.conv_transpose2d``: the ``grad_input`` pass of the
    convolution whose output ``x`` would be, plus the bias.

    Parameters
    ----------
    x : array
        (N, C_in, H, W) or (C_in, H, W); or a ``dask.array.Array`` of such chunks, whose result is a lazy Dask
        array (README: Dask).
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
    return transpose(2, x, w, b, ConvArgs(stride, padding, dilation, groups, "zeros", strategy), output_padding, out)


def transpose(ndim: int, x: Any, w: Any, b: Any, args: ConvArgs, output_padding: Any, out: Any) -> Any:
    """The transposed ``ndim``-D convolution: ``conv_transpose1d``, ``conv_transpose2d`` and ``conv_transpose3d``
    are this."""
    if any_dask(x):  # lazily: each block by the public grad_input
        return dask_functions().transpose_nd(x, w, b, args, output_padding, out, ndim=ndim)
    key = plan_key(x, w, b, (TRANSPOSE, ndim, output_padding, *_args_key(args)))
    plan = cached(key, lambda: make_pass_plan(TRANSPOSE, (x, w, b), (), args, output_padding, ndim=ndim))
    return plan(x, w, b, out=out)


def conv_transpose1d(
    x: Any,
    w: Any,
    b: Any | None = None,
    *,
    stride: int | tuple[int, ...] = DEFAULTS.stride,
    padding: int | tuple[int, ...] = DEFAULTS.padding,
    output_padding: int | tuple[int, ...] = 0,
    groups: int = DEFAULTS.groups,
    dilation: int | tuple[int, ...] = DEFAULTS.dilation,
    strategy: str = DEFAULTS.strategy,
    out: Any | None = None,
) -> Any:
    """The transposed 1-D convolution, as ``torch.nn.functional.conv_transpose1d``: :func:`conv_transpose2d` for
    ``x`` (N, C_in, L) or (C_in, L) and ``w`` (C_in, C_out / groups, k)."""
    return transpose(1, x, w, b, ConvArgs(stride, padding, dilation, groups, "zeros", strategy), output_padding, out)


def conv_transpose3d(
    x: Any,
    w: Any,
    b: Any | None = None,
    *,
    stride: int | tuple[int, ...] = DEFAULTS.stride,
    padding: int | tuple[int, ...] = DEFAULTS.padding,
    output_padding: int | tuple[int, ...] = 0,
    groups: int = DEFAULTS.groups,
    dilation: int | tuple[int, ...] = DEFAULTS.dilation,
    strategy: str = DEFAULTS.strategy,
    out: Any | None = None,
) -> Any:
    """The transposed 3-D convolution, as ``torch.nn.functional.conv_transpose3d``: :func:`conv_transpose2d` for
    ``x`` (N, C_in, D, H, W) or (C_in, D, H, W) and ``w`` (C_in, C_out / groups, KD, KH, KW)."""
    return transpose(3, x, w, b, ConvArgs(stride, padding, dilation, groups, "zeros", strategy), output_padding, out)


def plan_grad_input(input_shape: tuple[int, ...], w: Any, grad_y: Any, **kwargs: Any) -> ConvPlan:
    """A reusable :func:`conv2d_grad_input` for arrays like ``w`` and ``grad_y``: ``p(w, grad_y, out=None)``,
    of as many spatial dimensions (1, 2 or 3) as ``w`` has.

    Validation, the strategy (``auto`` resolved) and the pass's blocks and workspace are decided here, once.

    Examples
    --------
    >>> import numpy as np, gemmconv
    >>> w, gy = np.ones((4, 2, 3, 3)), np.ones((1, 4, 5, 5))
    >>> p = gemmconv.plan_grad_input((1, 2, 5, 5), w, gy, padding=1, strategy="direct")
    >>> p.strategy, p.out_shape, float(p(w, gy)[0, 0, 2, 2])
    ('direct', (1, 2, 5, 5), 36.0)
    """
    return make_pass_plan(GRAD_INPUT, (w, grad_y), input_shape, ConvArgs.from_kwargs("plan_grad_input", kwargs))


def plan_grad_weight(x: Any, weight_shape: tuple[int, ...], grad_y: Any, **kwargs: Any) -> ConvPlan:
    """A reusable :func:`conv2d_grad_weight` for arrays like ``x`` and ``grad_y``: ``p(x, grad_y, out=None)``,
    of as many spatial dimensions (1, 2 or 3) as ``weight_shape`` gives."""
    return make_pass_plan(GRAD_WEIGHT, (x, grad_y), weight_shape, ConvArgs.from_kwargs("plan_grad_weight", kwargs))


def plan_conv_transpose2d(x: Any, w: Any, b: Any | None = None, *, output_padding: int | tuple[int, ...] = 0,
                          **kwargs: Any) -> ConvPlan:
    """A reusable :func:`conv_transpose2d` for arrays like ``x``, ``w`` and ``b``: ``p(x, w, b=None, out=None)``,
    of as many spatial dimensions (1, 2 or 3) as ``w`` has (keywords ``stride``, ``padding``, ``dilation``,
    ``groups``, ``strategy``)."""
    unknown = set(kwargs) - {"stride", "padding", "dilation", "groups", "strategy"}
    if unknown:
        raise TypeError(f"plan_conv_transpose2d() got unexpected keyword argument(s) {', '.join(sorted(unknown))}")
    return make_pass_plan(TRANSPOSE, (x, w, b), (), ConvArgs(**kwargs), output_padding)
