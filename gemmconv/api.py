"""The public entry point, :func:`conv2d`."""

from __future__ import annotations

from typing import Any

from .errors import StrategyNotSupportedError
from .measure import run_strategy
from .registry import get_strategy, supporting
from .strategies import auto
from .validate import pad_explicitly, validate

__all__ = ["choose_strategy", "conv2d"]


def conv2d(
    x: Any,
    w: Any,
    b: Any | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    strategy: str = "auto",
    workspace_limit: int | None = None,
) -> Any:
    """2-D convolution (cross-correlation) with the semantics of ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    x : array
        Input of shape (N, C, H, W), or (C, H, W) for a single image. A NumPy
        array (or an array of another registered backend), float32 or float64.
    w : array
        Weights of shape (K, C / groups, KH, KW), same library and dtype as ``x``.
    b : array or None, optional
        Bias of shape (K,), same library and dtype as ``x``.
    stride : int or (int, int), optional
        Step of the kernel over the input, ``>= 1``.
    padding : int, (int, int), "valid" or "same", optional
        Zeros (or ``padding_mode`` values) added on both sides of H and W.
        ``"same"`` keeps the size (stride 1 only); for an even effective kernel
        the extra row/column goes to the bottom/right, as in torch.
    dilation : int or (int, int), optional
        Spacing between kernel taps, ``>= 1``.
    groups : int, optional
        Number of blocked connections; divides C and K. ``groups == C`` is a
        depthwise convolution.
    padding_mode : {"zeros", "reflect", "replicate", "circular"}, optional
        How the padding is filled, as in ``torch.nn.Conv2d``.
    strategy : str, optional
        A name from :func:`gemmconv.list_strategies`, or ``"auto"`` (default).
        An explicit strategy never falls back to another one.
    workspace_limit : int or None, optional
        Bytes of temporary memory ``im2col`` may use: it then builds and
        multiplies its column matrix in chunks of images and output rows that
        fit. With a limit, ``auto`` does not pick Winograd (whose workspace is
        not bounded yet). None (default) means no bound.

    Returns
    -------
    array
        (N, K, OH, OW), or (K, OH, OW) for unbatched input; same library,
        device and dtype as ``x``. The inputs are not modified.

    Raises
    ------
    TypeError
        For arrays of the wrong type or dtype, or of mixed libraries.
    ValueError
        For inconsistent shapes or hyper-parameters, or an unknown strategy.
    StrategyNotSupportedError
        If ``strategy`` cannot run this configuration (a ``ValueError``).

    Examples
    --------
    >>> import numpy as np, gemmconv
    >>> x = np.array([[[0, 1, 2], [3, 4, 5], [6, 7, 8]],
    ...               [[1, 2, 3], [4, 5, 6], [7, 8, 9]]], dtype=np.float64)
    >>> w = np.array([[[[0, 1], [2, 3]], [[1, 2], [3, 4]]]], dtype=np.float64)
    >>> gemmconv.conv2d(x, w)
    array([[[ 56.,  72.],
            [104., 120.]]])
    """
    strat = get_strategy(strategy)
    backend, x, w, b, spec, unbatched = validate(
        x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode,
        workspace_limit=workspace_limit,
    )
    reason = strat.supports(spec)
    if reason is not None:
        raise StrategyNotSupportedError(strategy, f"{reason} (received {_summary(spec)})", supporting(spec))

    with backend.device_context(x):
        if spec.n == 0:
            y = backend.xp.empty(spec.out_shape, dtype=x.dtype)
        else:
            y = run_strategy(strategy, backend, x, w, b, spec)  # pads first where the strategy needs it
    return y[0] if unbatched else y


def choose_strategy(x: Any, w: Any, b: Any | None = None, **kwargs: Any) -> str:
    """Name of the strategy ``strategy="auto"`` would run for these arguments.

    Takes the same arguments as :func:`conv2d` (without ``strategy``) and
    validates them the same way. With autotuning on (:func:`gemmconv.set_autotune`)
    this measures the candidates on first sight of the configuration, as ``conv2d`` would.
    """
    backend, x, w, b, spec, _ = validate(
        x,
        w,
        b,
        stride=kwargs.pop("stride", 1),
        padding=kwargs.pop("padding", 0),
        dilation=kwargs.pop("dilation", 1),
        groups=kwargs.pop("groups", 1),
        padding_mode=kwargs.pop("padding_mode", "zeros"),
        workspace_limit=kwargs.pop("workspace_limit", None),
    )
    if kwargs:
        raise TypeError(f"choose_strategy() got unexpected keyword arguments: {', '.join(kwargs)}")
    with backend.device_context(x):
        if spec.padded and spec.padding_mode != "zeros":
            x, spec = pad_explicitly(backend, x, spec)
        return auto.select(backend, x, w, b, spec)


def _summary(spec: Any) -> str:
    return (
        f"kernel {spec.kh}x{spec.kw}, stride {(spec.sh, spec.sw)}, dilation {(spec.dh, spec.dw)}, "
        f"groups {spec.groups}, x {(spec.n, spec.c, spec.h, spec.w)}"
    )
