"""Central validation of ``conv2d`` arguments.

Every user-facing check lives here and runs once, before a strategy is chosen,
so strategies and kernels can trust their inputs. Errors name the argument, the
value received and the fix.
"""

from __future__ import annotations

import functools
import operator
import sys
from typing import Any, NamedTuple

from ..backends import Backend, get_backend
from ..core.args import ConvArgs
from ..core.spec import NO_LIMITS, PADDING_MODES, ConvSpec, Limits

__all__ = ["Validated", "check_padded_fits", "validate"]


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


def _int(name: str, value: Any, minimum: int) -> int:
    kind = "an int" if name in ("groups", "workspace_limit") else "an int or a pair of ints"
    if isinstance(value, bool):
        raise TypeError(f"{name} must be {kind}, got the bool {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be {kind}, got {value!r} ({type(value).__name__})") from None
    if v < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}")
    return v


def _pair(name: str, value: Any, minimum: int) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) not in (1, 2):
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r} of length {len(value)}")
        if len(value) == 1:  # (v,) means (v, v), as in torch
            v = _int(name, value[0], minimum)
            return v, v
        return _int(name, value[0], minimum), _int(name, value[1], minimum)
    v = _int(name, value, minimum)
    return v, v


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
    if kind != "f":
        what = {"b": "bool", "i": "integer", "u": "unsigned integer", "c": "complex"}.get(kind, str(a.dtype))
        raise TypeError(
            f"{name} has {what} dtype {a.dtype}; conv2d needs floating point "
            f"({', '.join(backend.dtypes)}): cast it, e.g. {name}.astype('float32')"
        )
    if _dtype_name(a.dtype) not in backend.dtypes:
        raise TypeError(
            f"{name} has dtype {a.dtype.name}, which the {backend.name} backend does not support; "
            f"use one of {', '.join(backend.dtypes)}"
        )


def _padding(
    padding: Any, kernel: tuple[int, int], dilation: tuple[int, int], stride: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Return (pt, pb, pl, pr)."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(
                    f"padding='same' is not supported for strided convolutions (stride={stride}); "
                    "pass explicit padding instead"
                )
            pads = []
            for k, d in zip(kernel, dilation, strict=False):
                total = d * (k - 1)
                pads += [total // 2, total - total // 2]  # extra pad goes bottom/right, as in torch
            return pads[0], pads[1], pads[2], pads[3]
        raise ValueError(f"padding must be an int, a pair of ints, 'valid' or 'same', got {padding!r}")
    ph, pw = _pair("padding", padding, 0)
    return ph, ph, pw, pw


def _check_padding_mode(spec: ConvSpec) -> None:
    mode = spec.padding_mode
    if mode == "reflect":
        if max(spec.pt, spec.pb) >= spec.height or max(spec.pl, spec.pr) >= spec.width:
            raise ValueError(
                f"padding_mode='reflect' needs padding smaller than the input: padding "
                f"(top, bottom, left, right)={(spec.pt, spec.pb, spec.pl, spec.pr)} for an input of "
                f"{spec.height}x{spec.width}; pad less or use padding_mode='replicate'"
            )
    elif mode == "circular" and (max(spec.pt, spec.pb) > spec.height or max(spec.pl, spec.pr) > spec.width):
        raise ValueError(
            f"padding_mode='circular' cannot wrap around more than once: padding "
            f"(top, bottom, left, right)={(spec.pt, spec.pb, spec.pl, spec.pr)} for an input of "
            f"{spec.height}x{spec.width}; pad at most the input size"
        )


def validate(x: Any, w: Any, b: Any, args: ConvArgs, names: tuple[str, str, str] = ("x", "w", "b")) -> Validated:
    """Check the arrays and the arguments of :func:`gemmconv.conv2d` (all but ``strategy``, which
    the registry checks) and normalise them into a :class:`Validated`. ``names`` are the arguments the
    arrays came from, for the messages (the backward passes pass shapes as stand-in arrays)."""
    stride, padding, dilation, groups = args.stride, args.padding, args.dilation, args.groups
    padding_mode, workspace_limit = args.padding_mode, args.workspace_limit
    backend = get_backend(x, names[0])
    _check_array(names[0], x, backend, (3, 4))
    _check_array(names[1], w, backend, (4,))
    if b is not None:
        _check_array(names[2], b, backend, (1,))
    x, w = backend.native(x), backend.native(w)
    b = None if b is None else backend.native(b)
    if w.dtype != x.dtype:
        raise TypeError(f"x and w must have the same dtype, got x {x.dtype} and w {w.dtype}; cast one of them")
    if b is not None and b.dtype != x.dtype:
        raise TypeError(f"b must have the dtype of x ({x.dtype}), got {b.dtype}; cast it")

    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]  # (C, H, W) -> (1, C, H, W)
    n, c, h, wd = (int(s) for s in x.shape)
    k, cg, kh, kw = (int(s) for s in w.shape)

    g = _int("groups", groups, 1)  # x may have no channels: the result is then the bias (conv2d's docstring)
    if k == 0 or kh == 0 or kw == 0:
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

    sh, sw = _pair("stride", stride, 1)
    dh, dw = _pair("dilation", dilation, 1)
    pt, pb, pl, pr = _padding(padding, (kh, kw), (dh, dw), (sh, sw))
    if not isinstance(padding_mode, str) or padding_mode not in PADDING_MODES:
        raise ValueError(f"padding_mode must be one of {', '.join(map(repr, PADDING_MODES))}, got {padding_mode!r}")

    if workspace_limit is not None:
        workspace_limit = _int("workspace_limit", workspace_limit, 1)
    spec = ConvSpec(
        n=n, c=c, height=h, width=wd, k=k, kh=kh, kw=kw, sh=sh, sw=sw, pt=pt, pb=pb, pl=pl, pr=pr,
        dh=dh, dw=dw, groups=g, padding_mode=padding_mode, dtype=_dtype_name(x.dtype),
    )
    if spec.ekh > h + pt + pb or spec.ekw > wd + pl + pr:
        raise ValueError(
            f"the kernel ({kh}x{kw}, dilation {(dh, dw)}: {spec.ekh}x{spec.ekw} effective) is larger than "
            f"the padded input ({h + pt + pb}x{wd + pl + pr}, from x of {h}x{wd} and padding "
            f"{(pt, pb, pl, pr)}); pad more or use a smaller kernel"
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
    oh, ow = spec.oh, spec.ow  # (properties: computed once here)
    hp, wp = spec.height + spec.pt + spec.pb, spec.width + spec.pl + spec.pr
    checks = (
        ("stride", max(spec.sh, spec.sw), limit // 4),
        ("dilation", max(spec.ekh, spec.ekw), limit // 4),
        ("padding", max(hp, wp), limit // 4),
        ("padding", hp * wp if spec.padding_mode != "zeros" else 0, limit),
        ("x", max(spec.height * spec.width, oh * ow), limit),
    )
    for name, extent, most in checks:
        if extent > most:
            bits = limit.bit_length()
            what = {"stride": f"stride={(spec.sh, spec.sw)}", "dilation": f"dilation={(spec.dh, spec.dw)}",
                    "padding": f"padding={(spec.pt, spec.pb, spec.pl, spec.pr)}",
                    "x": f"x of shape {(spec.n, spec.c, spec.height, spec.width)}"}[name]
            raise ValueError(
                f"{what} is too large for the {backend.name} backend, whose kernels compute indices below "
                f"2**{bits}: strides, dilated kernels and padded inputs must be at most 2**{bits - 2} in each "
                f"dimension, and planes at most 2**{bits} elements (got {extent}); pass a smaller {name}"
            )
    memory = backend.memory_bytes(x)
    need = spec.n * spec.k * oh * ow * x.dtype.itemsize
    if memory is not None and need > memory:
        raise ValueError(
            f"the output, of shape {(spec.n, spec.k, oh, ow)} and dtype {x.dtype}, needs {_bytes(need)}, more than "
            f"the {_bytes(memory)} of memory that holds x; it follows from x's shape and padding="
            f"{(spec.pt, spec.pb, spec.pl, spec.pr)} (top, bottom, left, right), stride={(spec.sh, spec.sw)}, "
            f"dilation={(spec.dh, spec.dw)}: pass less padding, a larger stride or a smaller input"
        )


def check_padded_fits(backend: Backend, x: Any, spec: ConvSpec) -> None:
    """A copy of ``x`` padded by ``spec``'s padding must fit in the memory that holds ``x`` (ValueError)."""
    memory = backend.memory_bytes(x)
    need = spec.n * spec.c * (spec.height + spec.pt + spec.pb) * (spec.width + spec.pl + spec.pr) * x.dtype.itemsize
    if memory is not None and need > memory:
        raise ValueError(
            f"padding={(spec.pt, spec.pb, spec.pl, spec.pr)} (top, bottom, left, right) with "
            f"padding_mode={spec.padding_mode!r} pads a copy of x that needs {_bytes(need)}, more than the "
            f"{_bytes(memory)} of memory that holds x; pass less padding"
        )
