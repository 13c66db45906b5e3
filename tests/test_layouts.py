"""Arrays as NumPy users have them: every byte order and memory layout, in every pass, directly and in plans.

Each layout below holds the values of a C-ordered native array (the broadcast one: of its own C-ordered copy)
in another form: byte-swapped (big-endian on the usual little-endian machines, as astropy's FITS readers and
some HDF5/NetCDF files give), read-only, Fortran-ordered, sliced with steps, with negative strides, memory-mapped
(``np.memmap`` and ``np.load(mmap_mode="r")``) or broadcast with zero strides. Each pass of each strategy must
give, on such arrays, exactly (bitwise) the result it gives on C-ordered native copies of them: the library
converts what its kernels cannot read to that layout and runs the same arithmetic in the same order, so any
difference at all is a defect (no tolerance). The inputs must be unchanged and every result a fresh, writeable,
C-contiguous native ``numpy.ndarray``.
"""

from __future__ import annotations

import itertools
import sys
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import gemmconv

_FILES = itertools.count()


def _swapped(a: np.ndarray, tmp: Path) -> np.ndarray:
    return a.astype(a.dtype.newbyteorder("S"))  # the other byte order: big-endian on little-endian machines


def _read_only(a: np.ndarray, tmp: Path) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


def _fortran(a: np.ndarray, tmp: Path) -> np.ndarray:
    return np.asfortranarray(a)


def _sliced(a: np.ndarray, tmp: Path) -> np.ndarray:
    every_other = (slice(None, None, 2),) * a.ndim
    big = np.full(tuple(2 * s for s in a.shape), np.nan, a.dtype)  # NaN between the elements: read one, see it
    big[every_other] = a
    return big[every_other]


def _reversed(a: np.ndarray, tmp: Path) -> np.ndarray:
    return np.flip(np.flip(a).copy())  # every stride negative


def _memmap(a: np.ndarray, tmp: Path) -> np.memmap:
    path = tmp / f"a{next(_FILES)}.dat"
    m = np.memmap(path, dtype=a.dtype, mode="w+", shape=a.shape)
    m[...] = a
    m.flush()
    del m
    return np.memmap(path, dtype=a.dtype, mode="r", shape=a.shape)


def _npy_mmap(a: np.ndarray, tmp: Path) -> np.ndarray:
    path = tmp / f"a{next(_FILES)}.npy"
    np.save(path, a)
    return np.load(path, mmap_mode="r")


def _broadcast(a: np.ndarray, tmp: Path) -> np.ndarray:
    return np.broadcast_to(a[..., :1], a.shape)  # stride 0 along the last axis (read-only, as NumPy makes it)


def _swapped_fortran_read_only(a: np.ndarray, tmp: Path) -> np.ndarray:
    return _read_only(np.asfortranarray(_swapped(a, tmp)), tmp)


def _swapped_npy_mmap(a: np.ndarray, tmp: Path) -> np.ndarray:
    return _npy_mmap(_swapped(a, tmp), tmp)  # what astropy.io.fits gives: a big-endian memory map


def _swapped_broadcast(a: np.ndarray, tmp: Path) -> np.ndarray:
    return _broadcast(_swapped(a, tmp), tmp)


LAYOUTS: dict[str, Callable[[np.ndarray, Path], np.ndarray]] = {
    "byteswapped": _swapped, "read_only": _read_only, "fortran": _fortran, "sliced": _sliced,
    "negative_strides": _reversed, "memmap": _memmap, "npy_mmap": _npy_mmap, "broadcast": _broadcast,
    "byteswapped_fortran_read_only": _swapped_fortran_read_only, "byteswapped_npy_mmap": _swapped_npy_mmap,
    "byteswapped_broadcast": _swapped_broadcast,
}
PASSES = ["forward", "grad_input", "grad_weight", "transpose"]
STRATEGIES = gemmconv.list_strategies()


def _arrays(strategy: str, pass_: str) -> tuple[np.ndarray, ...]:
    """The arrays ``pass_`` takes, C-ordered and native: a 3x3 layer (1x1 for the 1x1 strategy), padding 1."""
    rng = np.random.default_rng(0)
    k = 1 if strategy == "1x1" else 3
    out = 9 + 2 - k + 1
    x = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((6, 4, k, k)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    gy = rng.standard_normal((2, 6, out, out)).astype(np.float32)
    return {"forward": (x, w, b), "grad_input": (w, gy), "grad_weight": (x, gy),
            "transpose": (gy, w, rng.standard_normal(4).astype(np.float32))}[pass_]


def _shape(strategy: str, pass_: str) -> tuple[int, ...]:
    """The shape ``pass_`` takes for the array it is not given (x's for grad_input, w's for grad_weight)."""
    k = 1 if strategy == "1x1" else 3
    return {"grad_input": (2, 4, 9, 9), "grad_weight": (6, 4, k, k)}.get(pass_, ())


def _call(pass_: str, strategy: str, arrays: tuple[Any, ...], shape: tuple[int, ...], **kw: Any) -> Any:
    kw = {"padding": 1, "strategy": strategy, **kw}
    if pass_ == "forward":
        return gemmconv.conv2d(*arrays, **kw)
    if pass_ == "grad_input":
        return gemmconv.conv2d_grad_input(shape, *arrays, **kw)
    if pass_ == "grad_weight":
        return gemmconv.conv2d_grad_weight(arrays[0], shape, arrays[1], **kw)
    return gemmconv.conv_transpose2d(*arrays, **kw)


def _plan(pass_: str, strategy: str, arrays: tuple[Any, ...], shape: tuple[int, ...]) -> Any:
    kw = {"padding": 1, "strategy": strategy}
    if pass_ == "forward":
        return gemmconv.plan(*arrays, **kw)
    if pass_ == "grad_input":
        return gemmconv.plan_grad_input(shape, *arrays, **kw)
    if pass_ == "grad_weight":
        return gemmconv.plan_grad_weight(arrays[0], shape, arrays[1], **kw)
    return gemmconv.plan_conv_transpose2d(*arrays, **kw)


def _c_native(a: np.ndarray) -> np.ndarray:
    """A C-ordered native ndarray of ``a``'s values (a fresh one)."""
    return np.array(a, dtype=a.dtype.newbyteorder("="), order="C", subok=False)


def _check_fresh(y: Any, like: np.ndarray, inputs: tuple[np.ndarray, ...]) -> None:
    assert type(y) is np.ndarray, type(y)
    assert y.dtype == like.dtype and y.dtype.isnative, y.dtype
    assert y.flags.c_contiguous and y.flags.writeable
    for a in inputs:
        assert not np.may_share_memory(y, a)
    np.testing.assert_array_equal(y, like, strict=True)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("pass_", PASSES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_layout_gives_the_result_of_c_ordered_native_arrays(strategy, pass_, layout, tmp_path):
    base = _arrays(strategy, pass_)
    shape = _shape(strategy, pass_)
    make = LAYOUTS[layout]
    for which in [*([i] for i in range(len(base))), list(range(len(base)))]:  # each array alone, then all
        laid = tuple(make(a, tmp_path) if i in which else a for i, a in enumerate(base))
        copies = tuple(_c_native(a) for a in laid)
        before = [(a.copy(), a.dtype, a.strides, a.flags.writeable, type(a)) for a in laid]
        try:
            expected = _call(pass_, strategy, copies, shape)
        except gemmconv.StrategyNotSupportedError:
            pytest.skip(f"{strategy} does not run this layer")
        _check_fresh(_call(pass_, strategy, laid, shape), expected, laid)
        # plans: made for this layout, run on it and on C-ordered native arrays; made for those, run on it
        p = _plan(pass_, strategy, laid, shape)
        _check_fresh(p(*laid), expected, laid)
        _check_fresh(p(*copies), expected, copies)
        _check_fresh(_plan(pass_, strategy, copies, shape)(*laid), expected, laid)
        for a, (values, dtype, strides, writeable, kind) in zip(laid, before, strict=True):
            assert a.dtype == dtype and a.strides == strides and a.flags.writeable == writeable and type(a) is kind
            np.testing.assert_array_equal(a, values, strict=True)  # not modified


def test_a_plan_names_what_differs():
    x, w, b = _arrays("direct", "forward")
    p = gemmconv.plan(x, w, b, padding=1)
    order = "big" if sys.byteorder == "little" else "little"  # of a byte-swapped array
    want = (r"^x: this plan was made for a numpy array of shape \(2, 4, 9, 9\) and dtype float32, got a numpy array "
            rf"of shape \(2, 4, 9, 9\) and dtype {order}-endian float64 \(another dtype: float64, not float32\); make")
    with pytest.raises(ValueError, match=want):
        p(x.astype(np.dtype(np.float64).newbyteorder("S")), w, b)
    with pytest.raises(ValueError, match=rf"^w: .* got a numpy array of shape \(3, 4, 3, 3\) and dtype {order}-endian "
                                         rf"float32 \(another shape\)"):
        p(x, _swapped(w[:3], Path()), b)
    with pytest.raises(ValueError, match=r"^x: .* got a numpy MaskedArray .*\(another library or array type\)"):
        p(np.ma.masked_array(x), w, b)
    w_, gy = _arrays("direct", "grad_input")
    q = gemmconv.plan_grad_input((2, 4, 9, 9), w_, gy, padding=1)
    with pytest.raises(ValueError, match=rf"^grad_y: .* dtype {order}-endian float64 \(another dtype: float64, not "
                                         rf"float32\)"):
        q(w_, gy.astype(np.dtype(np.float64).newbyteorder("S")))


def _swapped_fortran_read_only_all(arrays: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    return tuple(_swapped_fortran_read_only(a, Path()) for a in arrays)


@pytest.mark.parametrize("pass_", PASSES)
def test_out_must_be_native_and_may_be_any_writeable_layout(pass_, tmp_path):
    arrays, shape = _arrays("im2col", pass_), _shape("im2col", pass_)
    expected = _call(pass_, "im2col", arrays, shape)
    swapped = np.empty(expected.shape, expected.dtype.newbyteorder("S"))
    with pytest.raises(ValueError, match=r"out has dtype (big|little)-endian float32; results are written in the "
                                         r"machine's byte order.*pass an array of dtype float32"):
        _call(pass_, "im2col", arrays, shape, out=swapped)
    mapped = np.memmap(tmp_path / "out.dat", dtype=expected.dtype, mode="w+", shape=expected.shape)
    for out in (mapped, np.asfortranarray(np.empty_like(expected)), np.empty((*expected.shape, 2), np.float32)[..., 1]):
        assert _call(pass_, "im2col", _swapped_fortran_read_only_all(arrays), shape, out=out) is out
        np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("pass_", PASSES)
def test_unbatched_arrays_of_any_layout(pass_):
    arrays, shape = _arrays("direct", pass_), _shape("direct", pass_)
    images = {"forward": (0,), "grad_input": (1,), "grad_weight": (0, 1), "transpose": (0,)}[pass_]  # x, grad_y
    one = tuple(a[0] if i in images else a for i, a in enumerate(arrays))  # of one image: (C, H, W)
    shape = shape[1:] if pass_ == "grad_input" else shape
    expected = _call(pass_, "direct", one, shape)
    laid = _swapped_fortran_read_only_all(one)
    np.testing.assert_array_equal(_call(pass_, "direct", laid, shape), expected, strict=True)
    np.testing.assert_array_equal(_plan(pass_, "direct", one, shape)(*laid), expected, strict=True)


def test_byteswapped_and_broadcast_arrays_are_not_made_whole_to_plan():
    """A plan validates a byte-swapped array's native counterpart: of a broadcast one (or the stand-ins for the
    arrays a pass is not given), only the elements it holds are converted, not its whole shape (here 128 MiB)."""
    big = (8, 64, 256, 256)
    w = _swapped(np.ones((64, 64, 3, 3), np.float32), Path())
    gy = np.broadcast_to(np.ones((), np.float32), (8, 64, 254, 254))
    x = np.broadcast_to(_swapped(np.ones((*big[:3], 1), np.float32), Path()), big)  # holds 512 KiB
    tracemalloc.start()
    try:
        gemmconv.plan(x, w, strategy="im2col")
        gemmconv.plan_grad_input(big, w, gy, strategy="im2col")
        gemmconv.plan_grad_weight(x, w.shape, gy, strategy="im2col")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 << 20


def test_dask_arrays_of_byteswapped_chunks():
    da = pytest.importorskip("dask.array")
    x, w, b = _arrays("im2col", "forward")
    native = gemmconv.conv2d(da.from_array(x, chunks=(1, 4, 5, 9)), w, b, padding=1, strategy="im2col").compute()
    swapped = gemmconv.conv2d(da.from_array(_swapped(x, Path()), chunks=(1, 4, 5, 9)), w, _swapped(b, Path()),
                              padding=1, strategy="im2col").compute()  # byte orders mixed, as files mix them
    np.testing.assert_array_equal(swapped, native, strict=True)
