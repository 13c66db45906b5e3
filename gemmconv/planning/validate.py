"""Central validation of ``conv2d`` arguments.

Every user-facing check lives here and runs once, before a strategy is chosen,
so strategies and kernels can trust their inputs. Errors name the argument, the
value received and the fix.
"""

from __future__ import annotations

import functools
import math
import operator
import sys
from typing import Any, NamedTuple

from ..backends import Backend, get_backend
from ..core.args import ConvArgs
from ..core.spec import NO_LIMITS, PADDING_MODES, ConvSpec, Limits

__all__ = ["Validated", "check_dtype", "check_padded_fits", "per_axis", "stand_in", "validate"]


class Validated(NamedTuple):
    """What :func:`validate` returns."""

    #: the backend owning the arrays
    backend: Backend
    #: the input as a 4-D array (a view for unbatched input)
    x: Any
    #: the weights
    w: Any
    #: the bias, or None
    b: Any
    #: the normalised sizes and hyper-parameters
    spec: ConvSpec
    #: whether the input was unbatched (C, H, W)
    unbatched: bool
    #: the resources the call may use (its workspace_limit)
    limits: Limits = NO_LIMITS


@functools.lru_cache(maxsize=64)
def _dtype_name(dtype: Any) -> str:
    """``dtype.name``, remembered: NumPy computes it afresh on every access."""
    return str(dtype.name)


def _describe(value: Any) -> str:
    shape = getattr(value, "shape", None)
    if shape is not None:
        return f"{type(value).__name__} of shape {tuple(shape)} and dtype {getattr(value, 'dtype', '?')}"
    return repr(value)


_SEQUENCE = {1: "an int or a 1-tuple", 2: "an int or a pair of ints", 3: "an int or a triple of ints"}


def _int(name: str, value: Any, minimum: int, kind: str = "an int") -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be {kind}, got the bool {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be {kind}, got {value!r} ({type(value).__name__})") from None
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return v


def per_axis(name: str, value: Any, minimum: int, ndim: int) -> tuple[int, ...]:
    """An int, or a sequence of one int or of ``ndim`` ints, as ``ndim`` ints (``(v,)`` means ``(v,) * ndim``,
    as in torch)."""
    kind = _SEQUENCE.get(ndim, f"an int or {ndim} ints")
    if isinstance(value, (tuple, list)):
        if len(value) not in (1, ndim):
            raise ValueError(f"{name} must be {kind}, got {value!r} of length {len(value)}")
        found = tuple(_int(name, v, minimum, kind) for v in value)
        return found * ndim if len(found) == 1 else found
    return (_int(name, value, minimum, kind),) * ndim


def stand_in(backend: Backend, shape: tuple[int, ...], dtype: Any) -> Any:
    """A read-only array of ``shape`` and ``dtype`` of ``backend``'s library that holds no memory (one zero,
    broadcast): what validation sees for an array known only by its shape (a backward pass's ``input_shape``,
    a Dask array)."""
    xp = backend.xp
    # one native element (dtype may be byte-swapped: converting the broadcast view would fill all of shape)
    return xp.broadcast_to(backend.native(xp.zeros((), dtype=dtype)), tuple(shape))


def _dim(name: str, i: int) -> str:
    """How a message names dimension ``i`` of argument ``name``: ``w.shape[1]``, or ``weight_shape[1]`` for a shape."""
    return f"{name}[{i}]" if name.endswith("_shape") else f"{name}.shape[{i}]"


def _check_array(name: str, a: Any, backend: Backend, ndims: tuple[int, ...]) -> None:
    owner = get_backend(a, name)
    if owner is not backend:
        raise TypeError(
            f"{name} is a {owner.name} array but x is a {backend.name} array; "
            f"pass all arrays from the same library (convert {name} with {backend.name}.asarray)"
        )
    masked = sys.modules.get("numpy.ma")  # a masked array's mask would be ignored: refused instead
    if masked is not None and isinstance(a, masked.MaskedArray):
        raise TypeError(f"{name} is a masked array, whose mask a convolution cannot honour; pass its data with the "
                        f"masked entries filled, e.g. {name}.filled(0)")
    if a.ndim not in ndims:
        want = " or ".join(f"{d}-D" for d in ndims)
        raise ValueError(f"{name} must be {want}, got {_describe(a)}")
    kind = a.dtype.kind
    if kind not in "fc":
        what = {"b": "bool", "i": "integer", "u": "unsigned integer"}.get(kind, str(a.dtype))
        raise TypeError(
            f"{name} has {what} dtype {a.dtype}; a convolution needs floating point or complex numbers "
            f"({', '.join(backend.dtypes)}): cast it, e.g. {name}.astype('float32')"
        )
    if _dtype_name(a.dtype) not in backend.dtypes:
        raise TypeError(
            f"{name} has dtype {a.dtype.name}, which the {backend.name} backend does not support; "
            f"use one of {', '.join(backend.dtypes)}"
        )


def check_dtype(name: str, dtype: Any, want: Any, other: str) -> None:
    """Argument ``name``'s ``dtype`` must be ``want``, the dtype of argument ``other``: a ValueError naming both
    where one is real and the other complex (as torch refuses them), else a TypeError."""
    if _dtype_name(dtype) == _dtype_name(want):  # the names: any byte order
        return
    if (dtype.kind == "c") != (want.kind == "c"):
        raise ValueError(f"{name} has dtype {dtype} and {other} {want}: real and complex arguments do not mix; "
                         f"make both complex (e.g. {name}.astype({str(want)!r})) or both real")
    raise TypeError(f"{name} must have the dtype of {other} ({want}), got {dtype}; cast it")


def _padding(padding: Any, kernel: tuple[int, ...], dilation: tuple[int, ...],
             stride: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    """Padding (before, after) per spatial axis."""
    ndim = len(kernel)
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0),) * ndim
        if padding == "same":
            if any(s != 1 for s in stride):
                raise ValueError(
                    f"padding='same' is not supported for strided convolutions (stride={stride}); "
                    "pass explicit padding instead"
                )
            totals = (d * (k - 1) for k, d in zip(kernel, dilation, strict=True))
            return tuple((t // 2, t - t // 2) for t in totals)  # the extra pad goes after, as in torch
        raise ValueError(f"padding must be {_SEQUENCE.get(ndim, 'ints')}, 'valid' or 'same', got {padding!r}")
    return tuple((p, p) for p in per_axis("padding", padding, 0, ndim))


def _sides(spec: ConvSpec) -> str:
    """The padding as a message gives it: ``padding=(...)`` (top, bottom, left, right) in 2-D, (before, after)
    pairs otherwise."""
    if spec.ndim == 2:
        return f"padding={sum(spec.padding, ())} (top, bottom, left, right)"
    return f"padding={spec.padding} ((before, after) per axis)"


def _by(sizes: tuple[int, ...]) -> str:
    """``8x8`` for (8, 8)."""
    return "x".join(map(str, sizes))


def _check_padding_mode(spec: ConvSpec) -> None:
    mode = spec.padding_mode
    if mode == "reflect":
        if any(max(p) >= s for p, s in zip(spec.padding, spec.size, strict=True)):
            raise ValueError(
                f"padding_mode='reflect' needs padding smaller than the input: {_sides(spec)} for an "
                f"input of {_by(spec.size)}; pad less or use padding_mode='replicate'"
            )
    elif mode == "circular" and any(max(p) > s for p, s in zip(spec.padding, spec.size, strict=True)):
        raise ValueError(
            f"padding_mode='circular' cannot wrap around more than once: {_sides(spec)} for an input of "
            f"{_by(spec.size)}; pad at most the input size"
        )


def validate(x: Any, w: Any, b: Any, args: ConvArgs, names: tuple[str, str, str] = ("x", "w", "b"),
             ndim: int = 2) -> Validated:
    """Check the arrays and the arguments of an ``ndim``-D convolution (all but ``strategy``, which the
    registry checks) and normalise them into a :class:`Validated`. ``names`` are the arguments the arrays
    came from, for the messages (the backward passes pass shapes as stand-in arrays)."""
    stride, padding, dilation, groups = args.stride, args.padding, args.dilation, args.groups
    padding_mode, workspace_limit = args.padding_mode, args.workspace_limit
    backend = get_backend(x, names[0])
    _check_array(names[0], x, backend, (ndim + 1, ndim + 2))
    _check_array(names[1], w, backend, (ndim + 2,))
    if b is not None:
        _check_array(names[2], b, backend, (1,))
    x, w = backend.native(x), backend.native(w)
    b = None if b is None else backend.native(b)
    if w.dtype != x.dtype:
        if (w.dtype.kind == "c") != (x.dtype.kind == "c"):
            check_dtype(names[1], w.dtype, x.dtype, names[0])
        raise TypeError(f"x and w must have the same dtype, got x {x.dtype} and w {w.dtype}; cast one of them")
    if b is not None:
        check_dtype(names[2], b.dtype, x.dtype, names[0])

    unbatched = x.ndim == ndim + 1
    if unbatched:
        x = x[None]  # (C, *size) -> (1, C, *size)
    n, c, *size = (int(s) for s in x.shape)
    k, cg, *kernel = (int(s) for s in w.shape)

    g = _int("groups", groups, 1)  # x may have no channels: the result is then the bias (conv2d's docstring)
    if k == 0 or 0 in kernel:
        raise ValueError(f"{names[1]} must have at least one output channel and a non-empty kernel, got "
                         f"{tuple(w.shape)}")
    if c % g:
        raise ValueError(f"groups={g} must divide the {c} input channels of x")
    if k % g:
        raise ValueError(f"groups={g} must divide the {k} output channels of {names[1]} ({_dim(names[1], 0)})")
    if cg * g != c:
        raise ValueError(
            f"{_dim(names[1], 1)} must be in_channels / groups = {c} / {g} = {c // g}, got {names[1]} of shape "
            f"{tuple(w.shape)}"
        )
    if b is not None and int(b.shape[0]) != k:
        raise ValueError(f"b must have shape ({k},) (one value per output channel), got shape {tuple(b.shape)}")

    strides = per_axis("stride", stride, 1, ndim)
    dilations = per_axis("dilation", dilation, 1, ndim)
    pads = _padding(padding, tuple(kernel), dilations, strides)
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}, got {padding_mode!r}")

    if workspace_limit is not None:
        workspace_limit = _int("workspace_limit", workspace_limit, 1)
    spec = ConvSpec(n=n, c=c, k=k, size=tuple(size), kernel=tuple(kernel), stride=strides, padding=pads,
                    dilation=dilations, groups=g, padding_mode=padding_mode, dtype=_dtype_name(x.dtype))
    if any(e > p for e, p in zip(spec.effective_kernel, spec.padded_size, strict=True)):
        raise ValueError(
            f"the kernel ({_by(spec.kernel)}, dilation {dilations}: {_by(spec.effective_kernel)} effective) is "
            f"larger than the padded input ({_by(spec.padded_size)}, from x of {_by(spec.size)} and "
            f"{_sides(spec)}); pad more or use a smaller kernel"
        )
    if spec.padded:
        _check_padding_mode(spec)
    _check_sizes(backend, spec, x)
    limits = NO_LIMITS if workspace_limit is None else Limits(workspace=workspace_limit)
    return Validated(backend, x, w, b, spec, unbatched, limits)


def _bytes(count: int) -> str:
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= size:
            return f"{count:,} bytes ({count / size:.1f} {unit})"
    return f"{count:,} bytes"


def _check_sizes(backend: Backend, spec: ConvSpec, x: Any) -> None:
    """No index the backend's kernels compute overflows, and the output fits in memory.

    Every extent (padded input, dilated kernel, stride) must be at most a quarter of the backend's
    :attr:`~Backend.index_limit` (sums of a few of them stay in range), every plane the kernels index
    (input, output, and the padded input where it is padded explicitly) at most the limit, and the
    output at most the memory of the device holding ``x``. Messages are formatted only on failure.
    """
    limit = backend.index_limit
    padded = spec.padded_size
    checks = (
        ("stride", max(spec.stride), limit // 4),
        ("dilation", max(spec.effective_kernel), limit // 4),
        ("padding", max(padded), limit // 4),
        ("padding", math.prod(padded) if spec.padding_mode != "zeros" else 0, limit),
        ("x", max(math.prod(spec.size), math.prod(spec.out_size)), limit),
    )
    for name, extent, most in checks:
        if extent > most:
            bits = limit.bit_length()
            what = {"stride": f"stride={spec.stride}", "dilation": f"dilation={spec.dilation}",
                    "padding": f"padding={sum(spec.padding, ())}", "x": f"x of shape {spec.in_shape}"}[name]
            raise ValueError(
                f"{what} is too large for the {backend.name} backend, whose kernels compute indices below "
                f"2**{bits}: strides, dilated kernels and padded inputs must be at most 2**{bits - 2} in each "
                f"dimension, and planes at most 2**{bits} elements (got {extent}); pass a smaller {name}"
            )
    memory = backend.memory_bytes(x)
    need = math.prod(spec.out_shape) * x.dtype.itemsize
    if memory is not None and need > memory:
        raise ValueError(
            f"the output, of shape {spec.out_shape} and dtype {x.dtype}, needs {_bytes(need)}, more than the "
            f"{_bytes(memory)} of memory that holds x; it follows from x's shape and {_sides(spec)}, "
            f"stride={spec.stride}, dilation={spec.dilation}: pass less padding, a larger stride or a smaller input"
        )


def check_padded_fits(backend: Backend, x: Any, spec: ConvSpec) -> None:
    """A copy of ``x`` padded by ``spec``'s padding must fit in the memory that holds ``x`` (ValueError)."""
    memory = backend.memory_bytes(x)
    need = spec.n * spec.c * math.prod(spec.padded_size) * x.dtype.itemsize
    if memory is not None and need > memory:
        raise ValueError(
            f"{_sides(spec)} with padding_mode={spec.padding_mode!r} pads a copy of x that needs "
            f"{_bytes(need)}, more than the {_bytes(memory)} of memory that holds x; pass less padding"
        )
