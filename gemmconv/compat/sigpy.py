"""sigpy's convolutions on gemmconv: :func:`convolve`, :func:`convolve_data_adjoint` and
:func:`convolve_filter_adjoint` with sigpy 0.1.27's semantics, on NumPy and CuPy arrays, and :func:`install` to
route sigpy's own functions through them.

sigpy computes these on the CPU with one ``scipy.signal`` call per batch element and pair of channels, and on the
GPU through cuDNN, which CuPy 14 removed ("cudnn must be installed to perform convolution on GPU"). Here each is
one gemmconv call over the whole batch and every channel:

- ``convolve`` is a true convolution (the filter reversed in every axis): :func:`gemmconv.conv1d` (2-D, 3-D) with
  the reversed filter, padded by ``n - 1`` on both sides in ``"full"`` mode and not at all in ``"valid"``, and
  sigpy's strides as the stride;
- ``convolve_data_adjoint`` is its adjoint with respect to the data (the conjugated filter, as sigpy's
  ``scipy.signal.correlate`` gives): :func:`gemmconv.conv1d_grad_input`, which is that adjoint;
- ``convolve_filter_adjoint`` is the adjoint with respect to the filter: :func:`gemmconv.conv1d_grad_weight`,
  reversed back.

Shapes, modes, strides, leading batch dimensions and ``multi_channel`` follow sigpy, with sigpy's errors.
``"valid"`` mode with data smaller than the filter in every axis is what ``scipy.signal.convolve`` (which sigpy's
loop calls) and sigpy's two adjoints make of it: the data slides inside the filter, an output of ``n - m + 1``
per axis (strided: ``ceil((n - m + 1) / s)``), computed with the roles of data and filter exchanged. (sigpy's own
``convolve`` fails there, its size formula ``ceil((m - n + 1) / s)`` being at most zero.) The filter (the data,
for the filter adjoint) is cast to the dtype of the other array, as sigpy's sums are; a complex one beside a real
one is a ``TypeError``, as in sigpy. D is 1, 2 or 3 (sigpy's cuDNN path takes no more).

Importing this module does not import sigpy; :func:`install` does.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from ..api.backward import (
    conv1d_grad_input,
    conv1d_grad_weight,
    conv2d_grad_input,
    conv2d_grad_weight,
    conv3d_grad_input,
    conv3d_grad_weight,
)
from ..api.conv import conv1d, conv2d, conv3d
from ..backends import get_backend
from ..core._forksafe import ForkSafeLock

__all__ = ["DTYPES", "ROUTED", "convolve", "convolve_data_adjoint", "convolve_filter_adjoint", "install",
           "is_installed", "uninstall"]

#: the dtypes these functions take (sigpy's CPU loop also takes others: under :func:`install` they stay sigpy's)
DTYPES = ("float32", "float64", "complex64", "complex128")
#: the functions :func:`install` routes, by their names in ``sigpy.conv`` (and in ``sigpy``, which re-exports them)
ROUTED = ("convolve", "convolve_data_adjoint", "convolve_filter_adjoint")

_FORWARD = {1: conv1d, 2: conv2d, 3: conv3d}
_GRAD_INPUT = {1: conv1d_grad_input, 2: conv2d_grad_input, 3: conv3d_grad_input}
_GRAD_WEIGHT = {1: conv1d_grad_weight, 2: conv2d_grad_weight, 3: conv3d_grad_weight}


class Shapes(NamedTuple):
    """The sizes of one sigpy convolution (sigpy's ``_get_convolve_params``)."""

    #: spatial dimensions
    d: int
    #: the leading batch dimensions, and their product
    batch: tuple[int, ...]
    size: int
    #: the data's, the filter's and the output's spatial sizes
    m: tuple[int, ...]
    n: tuple[int, ...]
    p: tuple[int, ...]
    #: strides
    s: tuple[int, ...]
    #: input and output channels (1 and 1 without ``multi_channel``)
    c_i: int
    c_o: int
    #: gemmconv's padding per axis: ``n - 1`` in ``"full"`` mode, 0 in ``"valid"``
    pad: tuple[int, ...]
    #: ``"valid"`` mode with the data smaller than the filter: the filter is the convolution's input, the data its
    #: weights
    swapped: bool = False

    def output_shape(self, multi_channel: bool) -> tuple[int, ...]:
        """The output's shape: ``batch + [c_o] + p``."""
        return (*self.batch, *((self.c_o,) if multi_channel else ()), *self.p)


def shapes(data_shape: Sequence[int], filt_shape: Sequence[int], mode: str, strides: Sequence[int] | None,
           multi_channel: bool) -> Shapes:
    """The sizes of a sigpy convolution of data of ``data_shape`` by a filter of ``filt_shape``, checked as sigpy
    checks them (ValueError)."""
    data_shape, filt_shape = tuple(int(v) for v in data_shape), tuple(int(v) for v in filt_shape)
    channels = 1 if multi_channel else 0
    d = len(filt_shape) - 2 * channels
    if d not in (1, 2, 3):
        raise ValueError(f"gemmconv.compat.sigpy convolves 1, 2 or 3 dimensions (as sigpy's cuDNN path), got a "
                         f"filter of shape {filt_shape}, {d} dimensions with multi_channel={multi_channel}")
    if len(data_shape) < d + channels:
        raise ValueError(f"data of shape {data_shape} has fewer than the {d + channels} dimensions "
                         f"({'channels and ' if channels else ''}{d} spatial) the filter {filt_shape} convolves")
    m, n = data_shape[len(data_shape) - d:], filt_shape[len(filt_shape) - d:]
    batch = data_shape[:len(data_shape) - d - channels]
    if multi_channel:
        if filt_shape[-d - 1] != data_shape[-d - 1]:
            raise ValueError(f"Data channel mismatch, got {data_shape[-d - 1]} from data and {filt_shape[-d - 1]} "
                             "from filt.")
        c_i, c_o = filt_shape[-d - 1], filt_shape[-d - 2]
    else:
        c_i = c_o = 1
    s = (1,) * d if strides is None else tuple(int(v) for v in strides)
    if len(s) != d:
        raise ValueError(f"Strides must have length {d}.")
    if any(v < 1 for v in s):
        raise ValueError(f"strides must be positive, got {tuple(s)}")
    if mode == "full":
        p = tuple((a + b - 1 + c - 1) // c for a, b, c in zip(m, n, s, strict=True))
        pad = tuple(b - 1 for b in n)
    elif mode == "valid":
        larger = [a >= b for a, b in zip(m, n, strict=True)]
        if any(larger) and not all(larger):
            raise ValueError("In valid mode, either data or filter must be at least as large as the other in every "
                             "axis.")
        swapped = not all(larger)  # the data inside the filter: n - m + 1 positions per axis
        p = tuple((abs(a - b) + 1 + c - 1) // c for a, b, c in zip(m, n, s, strict=True))
        return Shapes(d, batch, math.prod(batch), m, n, p, s, c_i, c_o, (0,) * d, swapped)
    else:
        raise ValueError(f"Invalid mode, got {mode}")
    return Shapes(d, batch, math.prod(batch), m, n, p, s, c_i, c_o, pad)


def _check(name: str, a: Any) -> None:
    dtype = getattr(a, "dtype", None)
    if dtype is None or not hasattr(a, "reshape"):
        raise TypeError(f"{name} must be a NumPy or CuPy array, got {type(a).__name__}")
    if dtype.name not in DTYPES:
        raise TypeError(f"{name} has dtype {dtype}; gemmconv.compat.sigpy convolves {', '.join(DTYPES)} arrays: "
                        f"cast it, e.g. {name}.astype('float32')")


def _cast(name: str, a: Any, like: Any, other: str) -> Any:
    """``a`` in the dtype of ``like``, as sigpy's sums give (a complex ``a`` beside a real ``like``: TypeError)."""
    if a.dtype == like.dtype:
        return a
    if a.dtype.kind == "c" and like.dtype.kind != "c":
        raise TypeError(f"{name} is complex ({a.dtype}) but {other} is real ({like.dtype}): sigpy's result takes "
                        f"{other}'s dtype, which cannot hold it; make {other} complex, e.g. "
                        f"{other}.astype({a.dtype.name!r})")
    return a.astype(like.dtype)


def _reversed(a: Any, d: int) -> Any:
    """``a`` with its last ``d`` axes reversed (a view): a convolution's filter as a correlation's weights."""
    index = (Ellipsis,) + (slice(None, None, -1),) * d
    return a[index]


def convolve(data: Any, filt: Any, mode: str = "full", strides: Sequence[int] | None = None,
             multi_channel: bool = False) -> Any:
    """Convolution of ``data`` by ``filt`` (sigpy's ``sigpy.conv.convolve``).

    Parameters
    ----------
    data : array
        ``[..., m_1, ..., m_D]``, or ``[..., c_i, m_1, ..., m_D]`` with ``multi_channel``; NumPy or CuPy.
    filt : array
        ``[n_1, ..., n_D]``, or ``[c_o, c_i, n_1, ..., n_D]`` with ``multi_channel``; cast to ``data``'s dtype.
    mode : {"full", "valid"}
        ``"full"``: every overlap (output ``m + n - 1``); ``"valid"``: only where the filter lies inside the data
        (``m - n + 1``).
    strides : sequence of int, optional
        The output's stride per axis (it keeps every ``s``-th position).
    multi_channel : bool
        Whether the data and the output have a channel axis (the output's is ``c_o``).

    Returns
    -------
    array
        ``[..., p_1, ..., p_D]`` (``[..., c_o, p_1, ..., p_D]``), ``p = ceil(size / s)``; ``data``'s dtype and
        library, a fresh array.

    Examples
    --------
    >>> import numpy as np
    >>> from gemmconv.compat import sigpy as gsp
    >>> gsp.convolve(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0]))
    array([1., 3., 5., 3.])
    """
    _check("data", data)
    _check("filt", filt)
    sh = shapes(data.shape, filt.shape, mode, strides, multi_channel)
    filt = _cast("filt", filt, data, "data")
    x = data.reshape((sh.size, sh.c_i, *sh.m))  # (..., [c_i,] *m) -> (B, c_i, *m)
    f = filt.reshape((sh.c_o, sh.c_i, *sh.n))  # ([c_o, c_i,] *n) -> (c_o, c_i, *n)
    if sh.swapped:  # the filters are the input, the data (reversed) the weights: (c_o, B, *p)
        xp = get_backend(data, "data").xp
        if sh.size == 0:
            return xp.zeros(sh.output_shape(multi_channel), dtype=data.dtype)
        y = xp.ascontiguousarray(_FORWARD[sh.d](f, _reversed(x, sh.d), stride=sh.s).swapaxes(0, 1))
    else:
        y = _FORWARD[sh.d](x, _reversed(f, sh.d), stride=sh.s, padding=sh.pad)
    return y.reshape(sh.output_shape(multi_channel))  # (B, c_o, *p) -> (..., [c_o,] *p)


def convolve_data_adjoint(output: Any, filt: Any, data_shape: Sequence[int], mode: str = "full",
                          strides: Sequence[int] | None = None, multi_channel: bool = False) -> Any:
    """The adjoint of :func:`convolve` with respect to the data (sigpy's ``sigpy.conv.convolve_data_adjoint``):
    ``output`` correlated with the conjugated filter, into an array of ``data_shape``.

    Parameters
    ----------
    output : array
        Of :func:`convolve`'s output shape for ``data_shape`` and ``filt``.
    filt : array
        As for :func:`convolve`; cast to ``output``'s dtype.
    data_shape : sequence of int
        The data's shape.
    mode, strides, multi_channel
        As for :func:`convolve`.

    Returns
    -------
    array
        Of ``data_shape``, ``output``'s dtype and library.
    """
    _check("output", output)
    _check("filt", filt)
    data_shape = tuple(int(v) for v in data_shape)
    sh = shapes(data_shape, filt.shape, mode, strides, multi_channel)
    filt = _cast("filt", filt, output, "output")
    gy = output.reshape((sh.size, sh.c_o, *sh.p))  # (..., [c_o,] *p) -> (B, c_o, *p)
    f = filt.reshape((sh.c_o, sh.c_i, *sh.n))  # ([c_o, c_i,] *n) -> (c_o, c_i, *n)
    xp = get_backend(output, "output").xp
    if sh.swapped:  # dL/d(weights) of the exchanged roles, the data's reversal undone
        if sh.size == 0:
            return xp.zeros(data_shape, dtype=output.dtype)
        gw = _GRAD_WEIGHT[sh.d](f, (sh.size, sh.c_i, *sh.m), gy.swapaxes(0, 1), stride=sh.s)
        return xp.ascontiguousarray(_reversed(gw, sh.d)).reshape(data_shape)  # (B, c_i, *m) -> data_shape
    dx = _GRAD_INPUT[sh.d]((sh.size, sh.c_i, *sh.m), _reversed(f, sh.d), gy, stride=sh.s, padding=sh.pad)
    return dx.reshape(data_shape)  # (B, c_i, *m) -> data_shape


def convolve_filter_adjoint(output: Any, data: Any, filt_shape: Sequence[int], mode: str = "full",
                            strides: Sequence[int] | None = None, multi_channel: bool = False) -> Any:
    """The adjoint of :func:`convolve` with respect to the filter (sigpy's ``sigpy.conv.convolve_filter_adjoint``):
    ``output`` correlated with the conjugated data, into a filter of ``filt_shape``.

    Parameters
    ----------
    output : array
        Of :func:`convolve`'s output shape for ``data`` and ``filt_shape``.
    data : array
        As for :func:`convolve`; cast to ``output``'s dtype.
    filt_shape : sequence of int
        The filter's shape.
    mode, strides, multi_channel
        As for :func:`convolve`.

    Returns
    -------
    array
        Of ``filt_shape``, ``output``'s dtype and library.
    """
    _check("output", output)
    _check("data", data)
    filt_shape = tuple(int(v) for v in filt_shape)
    sh = shapes(data.shape, filt_shape, mode, strides, multi_channel)
    data = _cast("data", data, output, "output")
    x = data.reshape((sh.size, sh.c_i, *sh.m))  # (..., [c_i,] *m) -> (B, c_i, *m)
    gy = output.reshape((sh.size, sh.c_o, *sh.p))  # (..., [c_o,] *p) -> (B, c_o, *p)
    xp = get_backend(output, "output").xp
    if sh.swapped:  # dL/d(input) of the exchanged roles
        if sh.size == 0:
            return xp.zeros(filt_shape, dtype=output.dtype)
        df = _GRAD_INPUT[sh.d]((sh.c_o, sh.c_i, *sh.n), _reversed(x, sh.d), gy.swapaxes(0, 1), stride=sh.s)
        return df.reshape(filt_shape)  # (c_o, c_i, *n) -> filt_shape
    gw = _GRAD_WEIGHT[sh.d](x, (sh.c_o, sh.c_i, *sh.n), gy, stride=sh.s, padding=sh.pad)
    return xp.ascontiguousarray(_reversed(gw, sh.d)).reshape(filt_shape)  # (c_o, c_i, *n) -> filt_shape


# --- routing sigpy's own functions ---------------------------------------------------------------------------

_OURS: dict[str, Callable[..., Any]] = {"convolve": convolve, "convolve_data_adjoint": convolve_data_adjoint,
                                       "convolve_filter_adjoint": convolve_filter_adjoint}
#: sigpy's own functions while :func:`install` is in force, by name
_ORIGINALS: dict[str, Callable[..., Any]] = {}
_lock = ForkSafeLock()


class Routed:
    """What :func:`install` puts in sigpy's place of function ``name``: gemmconv's for what it takes (D of 1 to 3,
    the :data:`DTYPES`, NumPy or CuPy arrays), sigpy's own ``original`` for the rest (D > 3 or other dtypes on the
    CPU, which sigpy's loop computes)."""

    def __init__(self, name: str, original: Callable[..., Any]) -> None:
        self.name, self.original, self.ours = name, original, _OURS[name]
        self.signature = inspect.signature(self.ours)
        self.__doc__ = self.ours.__doc__
        self.__name__ = self.__qualname__ = name
        self.__module__ = __name__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        fn = self.ours if self.takes(args, kwargs) else self.original
        return fn(*args, **kwargs)

    def takes(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether gemmconv's function takes this call (else sigpy's does)."""
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError:
            return False  # sigpy's own raises its TypeError
        bound.apply_defaults()
        a = bound.arguments
        first = a["data"] if self.name == "convolve" else a["output"]
        filt_ndim = len(a["filt_shape"]) if self.name == "convolve_filter_adjoint" else getattr(a["filt"], "ndim", 0)
        d = filt_ndim - 2 * bool(a["multi_channel"])
        module = type(first).__module__.split(".")[0]
        return module in ("numpy", "cupy") and getattr(getattr(first, "dtype", None), "name", "") in DTYPES and (
            1 <= d <= 3)


def install() -> None:
    """Route sigpy's ``sigpy.conv.convolve``, ``convolve_data_adjoint`` and ``convolve_filter_adjoint`` (and the
    same names in ``sigpy``) through gemmconv, so ``sigpy.linop.ConvolveData``, ``ConvolveFilter`` and the MRI
    operators built on them run on gemmconv, on the CPU and on CuPy. What gemmconv does not take (D > 3, dtypes
    other than :data:`DTYPES`) stays with sigpy's own code. Imports sigpy; calling it again changes nothing;
    :func:`uninstall` restores sigpy's functions."""
    # only on request: importing gemmconv (or this module) never imports sigpy
    import sigpy
    import sigpy.conv

    with _lock:
        if _ORIGINALS:
            return
        for name in ROUTED:
            original = getattr(sigpy.conv, name)
            _ORIGINALS[name] = original
            routed = Routed(name, original)
            setattr(sigpy.conv, name, routed)
            if getattr(sigpy, name, None) is original:
                setattr(sigpy, name, routed)


def uninstall() -> None:
    """Put sigpy's own functions back (nothing happens if :func:`install` is not in force)."""
    with _lock:
        if not _ORIGINALS:
            return
        sigpy = sys.modules["sigpy"]
        for name, original in _ORIGINALS.items():
            if isinstance(getattr(sigpy, name, None), Routed):
                setattr(sigpy, name, original)
            setattr(sys.modules["sigpy.conv"], name, original)
        _ORIGINALS.clear()


def is_installed() -> bool:
    """Whether :func:`install` is in force."""
    return bool(_ORIGINALS)
