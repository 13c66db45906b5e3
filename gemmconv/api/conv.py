"""The public entry points: :func:`conv2d`, :func:`plan` and :func:`choose_strategy`.

``conv2d`` looks its plan up in :data:`~gemmconv.planning.plan.PLAN_CACHE` (by everything a plan
depends on), makes it on a miss, and calls it: the same path as ``plan(...)(x, w, b)``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from ..backends import get_backend
from ..core.args import DEFAULTS, ConvArgs
from ..planning.plan import PLAN_CACHE, ConvPlan, make_plan
from ..strategies.tuning import get_autotune, tuning_cache
from ._dask_hook import any_dask, dask_functions

__all__ = ["choose_strategy", "conv1d", "conv2d", "conv3d", "convolve", "plan"]

_D = DEFAULTS


def conv2d(
    x: Any,
    w: Any,
    b: Any | None = None,
    *,
    stride: int | tuple[int, ...] = _D.stride,
    padding: int | tuple[int, ...] | str = _D.padding,
    dilation: int | tuple[int, ...] = _D.dilation,
    groups: int = _D.groups,
    padding_mode: str = _D.padding_mode,
    strategy: str = _D.strategy,
    workspace_limit: int | None = _D.workspace_limit,
    out: Any | None = None,
) -> Any:
    """2-D convolution (cross-correlation) with the semantics of ``torch.nn.functional.conv2d``.

    Parameters
    ----------
    x : array
        Input of shape (N, C, H, W), or (C, H, W) for a single image. A NumPy
        array (or an array of another registered backend), float32 or float64,
        in either byte order and any memory layout (read-only, Fortran-ordered,
        strided, memory-mapped, broadcast: see Notes);
        or a ``dask.array.Array`` of such chunks, whose result is a lazy Dask
        array computed block by block (its channels in one chunk; README: Dask).
        C may be 0: the result is then the bias broadcast to (N, K, OH, OW)
        (zeros without a bias), the value of an empty sum; torch returns an
        array of shape (N, 0, OH, OW) instead.
    w : array
        Weights of shape (K, C / groups, KH, KW), same library and dtype as ``x``
        (either byte order: ``>f4`` and ``float32`` are one dtype here).
    b : array or None, optional
        Bias of shape (K,), same library and dtype as ``x`` (either byte order).
    stride : int, (int,) or (int, int), optional
        Step of the kernel over the input, ``>= 1``.
    padding : int, (int,), (int, int), "valid" or "same", optional
        Zeros (or ``padding_mode`` values) added on both sides of H and W.
        ``"same"`` keeps the size (stride 1 only); for an even effective kernel
        the extra row/column goes to the bottom/right, as in torch.
    dilation : int, (int,) or (int, int), optional
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
    out : array, optional
        Where to write the result: a writeable array of the result's shape, dtype
        (in native byte order) and library (and device) that shares no memory
        with the inputs; any strides (a memory map too).

    Returns
    -------
    array
        (N, K, OH, OW), or (K, OH, OW) for unbatched input; same library,
        device and dtype as ``x``, in native byte order; ``out`` if given, else
        a fresh C-contiguous array. The inputs are not modified.

    Raises
    ------
    TypeError
        For arrays of the wrong type or dtype, or of mixed libraries.
    ValueError
        For inconsistent shapes or hyper-parameters, an unknown strategy or
        an unsuitable ``out``.
    StrategyNotSupportedError
        If ``strategy`` cannot run this configuration (a ``ValueError``).

    Notes
    -----
    Arrays are read as NumPy users have them. A byte-swapped array (big-endian on
    little-endian machines, as astropy's FITS readers and some HDF5 or NetCDF files
    give) is converted to a native copy (of only its distinct elements where it is
    broadcast), a memory map (``np.memmap``, ``np.load(mmap_mode="r")``) is read as a
    plain view of its memory; the kernels then copy whatever is not C-contiguous
    (Fortran order, steps, negative or zero strides) as they need it, and the result
    is the one the C-ordered native array gives, bit for bit.

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
    return convolve(2, x, w, b, (stride, padding, dilation, groups, padding_mode, strategy, workspace_limit), out)


def convolve(ndim: int, x: Any, w: Any, b: Any, args: tuple[Any, ...], out: Any) -> Any:
    """The forward pass of an ``ndim``-D convolution: ``conv1d``, ``conv2d`` and ``conv3d`` are this, with the
    keyword arguments ``args`` in :class:`~gemmconv.core.args.ConvArgs`'s order."""
    if any_dask(x):  # lazily, block by block, each block by the public function
        return dask_functions().conv_nd(x, w, b, ConvArgs(*args), out, ndim=ndim)
    key = plan_key(x, w, b, (ndim, *args))
    p = PLAN_CACHE.get(key) if key is not None else None
    if p is None:
        p = make_plan(x, w, b, ConvArgs(*args), ndim)
        if key is not None:
            PLAN_CACHE.put(key, p)
    return p(x, w, b, out=out)


def conv1d(
    x: Any,
    w: Any,
    b: Any | None = None,
    *,
    stride: int | tuple[int, ...] = _D.stride,
    padding: int | tuple[int, ...] | str = _D.padding,
    dilation: int | tuple[int, ...] = _D.dilation,
    groups: int = _D.groups,
    padding_mode: str = _D.padding_mode,
    strategy: str = _D.strategy,
    workspace_limit: int | None = _D.workspace_limit,
    out: Any | None = None,
) -> Any:
    """1-D convolution (cross-correlation) with the semantics of ``torch.nn.functional.conv1d``.

    ``x`` is (N, C, L) or (C, L), ``w`` (K, C / groups, k), ``b`` (K,); the keywords are :func:`conv2d`'s, with
    an int or a 1-tuple where it takes pairs. The strategies run it as 2-D convolutions of images of one row
    (no copy). Returns (N, K, OL), or (K, OL) for unbatched input.

    Examples
    --------
    >>> import numpy as np, gemmconv
    >>> gemmconv.conv1d(np.arange(5.0)[None], np.array([[[1.0, 0.0, -1.0]]]))
    array([[-2., -2., -2.]])
    """
    return convolve(1, x, w, b, (stride, padding, dilation, groups, padding_mode, strategy, workspace_limit), out)


def conv3d(
    x: Any,
    w: Any,
    b: Any | None = None,
    *,
    stride: int | tuple[int, ...] = _D.stride,
    padding: int | tuple[int, ...] | str = _D.padding,
    dilation: int | tuple[int, ...] = _D.dilation,
    groups: int = _D.groups,
    padding_mode: str = _D.padding_mode,
    strategy: str = _D.strategy,
    workspace_limit: int | None = _D.workspace_limit,
    out: Any | None = None,
) -> Any:
    """3-D convolution (cross-correlation) with the semantics of ``torch.nn.functional.conv3d``.

    ``x`` is (N, C, D, H, W) or (C, D, H, W), ``w`` (K, C / groups, KD, KH, KW), ``b`` (K,); the keywords are
    :func:`conv2d`'s, with an int or a triple where it takes pairs. The strategies run it as 2-D convolutions
    of its depth planes, one per depth tap of the kernel, added (``README``: 1-D and 3-D). Returns
    (N, K, OD, OH, OW), or (K, OD, OH, OW) for unbatched input.

    Examples
    --------
    >>> import numpy as np, gemmconv
    >>> gemmconv.conv3d(np.ones((1, 1, 3, 3, 3)), np.ones((1, 1, 2, 2, 2))).shape
    (1, 1, 2, 2, 2)
    """
    return convolve(3, x, w, b, (stride, padding, dilation, groups, padding_mode, strategy, workspace_limit), out)


def plan(x: Any, w: Any, b: Any | None = None, **kwargs: Any) -> ConvPlan:
    """A reusable convolution for arrays like ``x``, ``w`` and ``b``, of as many spatial dimensions (1, 2 or 3)
    as ``w`` has.

    Takes the arguments of :func:`conv2d` (without ``out``). Validation, the
    backend, the strategy (``auto`` and autotuning resolved here, once) and
    the strategy's blocks and workspace are decided when the plan is made;
    calling it runs the convolution.

    Returns
    -------
    ConvPlan
        ``p(x, w, b=None, out=None)`` runs it on arrays of the same shapes,
        dtype, library and device, in any byte order and memory layout (a
        ``ValueError`` names what differs);
        ``p.strategy`` is the strategy it runs and ``p.workspace_bytes`` the
        temporary memory one call holds.

    Examples
    --------
    >>> import numpy as np, gemmconv
    >>> x = np.ones((1, 2, 5, 5), np.float32); w = np.ones((4, 2, 3, 3), np.float32)
    >>> p = gemmconv.plan(x, w, padding=1, strategy="im2col")
    >>> p.strategy, p.out_shape
    ('im2col', (1, 4, 5, 5))
    >>> float(p(x, w)[0, 0, 2, 2])
    18.0
    """
    return make_plan(x, w, b, ConvArgs.from_kwargs("plan", kwargs))


def choose_strategy(x: Any, w: Any, b: Any | None = None, **kwargs: Any) -> str:
    """Name of the strategy ``strategy="auto"`` would run for these arguments.

    Takes the same arguments as :func:`conv2d` (without ``strategy`` and ``out``) and
    validates them the same way. With autotuning on (:func:`gemmconv.set_autotune`)
    this measures the candidates on first sight of the configuration, as ``conv2d`` would.
    """
    if "strategy" in kwargs:
        raise TypeError("choose_strategy() got unexpected keyword argument(s) 'strategy': it names what "
                        "strategy='auto' resolves to")
    return make_plan(x, w, b, ConvArgs.from_kwargs("choose_strategy", kwargs)).strategy


_SCALARS = (int, str, type(None))


def _plain(v: Any) -> bool:
    """Whether ``v`` keys the plan cache as it is: an int, str or None (not a bool, which equals an int
    but is refused), or a tuple of ints."""
    t = type(v)
    return t in _SCALARS or (t is tuple and all(type(e) is int for e in v))


def plan_key(x: Any, w: Any, b: Any, args: tuple[Any, ...]) -> Hashable | None:
    """Everything a plan depends on (None where an argument is not plainly hashable: no caching).

    The arrays' types and dtypes are taken as given, with no conversion on this path of every call: a
    byte-swapped dtype (``>f4``, which NumPy neither equals nor hashes as ``float32``) or a memory map is
    another key, whose plan is made for, and runs, their native counterparts as well."""
    for a in args:
        if not _plain(a):
            return None
    try:
        arrays = (type(x), x.shape, x.dtype, type(w), w.shape, w.dtype,
                  None if b is None else (type(b), b.shape, b.dtype))
    except AttributeError:  # not arrays: validation says so
        return None
    tuning = get_autotune()
    device = None if type(x).__module__ == "numpy" else _device(x)
    return (arrays, args, device, tuning if tuning.enabled else None,
            tuning_cache.generation if tuning.enabled else 0)


def _device(x: Any) -> Hashable:
    return get_backend(x).device_key(x)  # a TypeError for an array of no backend, as validation gives
