"""gemmconv.compat.sigpy against sigpy 0.1.27's own CPU code (not installed): the three functions over D, modes,
strides, channels, batch dimensions and dtypes, the same errors where sigpy fails; install() and uninstall();
sigpy's linops and MRI operators on gemmconv."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gemmconv.compat import sigpy as gsp

pytest.importorskip("sigpy")
import sigpy
import sigpy.conv
import sigpy.mri.linop

#: sigpy's own functions, held before any test installs gemmconv's
OWN = {name: getattr(sigpy.conv, name) for name in gsp.ROUTED}
DTYPES = ["float32", "float64", "complex64", "complex128"]
#: error relative to the same computation on absolute values (which bounds every sum)
TOLERANCE = {"float32": 2e-6, "complex64": 4e-6, "float64": 1e-14, "complex128": 2e-14}


def _array(rng, shape, dtype):
    a = rng.uniform(-1, 1, shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.uniform(-1, 1, shape)
    return a.astype(dtype)


@st.composite
def problems(draw):
    """A sigpy convolution: data, filter, the output's dtype's companion arrays and the keyword arguments."""
    d = draw(st.integers(1, 3))
    multi = draw(st.booleans())
    mode = draw(st.sampled_from(["full", "valid"]))
    n = tuple(draw(st.integers(1, 4)) for _ in range(d))
    smaller = mode == "valid" and draw(st.integers(0, 9)) == 0  # data smaller than the filter: sigpy fails
    m = tuple(draw(st.integers(1, max(1, k - 1))) if smaller else draw(st.integers(k if mode == "valid" else 1, 7))
              for k in n)
    strides = None if draw(st.booleans()) else tuple(draw(st.integers(1, 3)) for _ in range(d))
    batch = tuple(draw(st.lists(st.integers(1, 2), max_size=2)))
    c_i, c_o = (draw(st.integers(1, 3)), draw(st.integers(1, 3))) if multi else (1, 1)
    dtype = draw(st.sampled_from(DTYPES))
    # the filter's dtype: the data's, or one sigpy casts to it (real into complex, float64 into float32)
    fdtype = draw(st.sampled_from([dtype, dtype, "float64", "float32" if dtype.startswith("c") else dtype]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    data = _array(rng, (*batch, *((c_i,) if multi else ()), *m), dtype)
    filt = _array(rng, ((c_o, c_i) if multi else ()) + n, fdtype)
    return data, filt, dict(mode=mode, strides=strides, multi_channel=multi)


def _both(fn, *args, **kwargs):
    """(sigpy's result or exception type, gemmconv's). sigpy gets its second array already in the first one's dtype
    where that is a cast sigpy makes itself (real into complex, a precision into another): scipy's mixed-dtype
    correlation now and then warns of an invalid cast from memory it left uninitialised."""
    first, second, *rest = args
    mixed = getattr(second, "dtype", first.dtype) != first.dtype
    castable = mixed and not (second.dtype.kind == "c" and first.dtype.kind != "c")
    own_args = (first, second.astype(first.dtype), *rest) if castable else args
    results = []
    for impl, call_args in ((OWN[fn], own_args), (getattr(gsp, fn), args)):
        try:
            results.append(impl(*call_args, **kwargs))
        except (ValueError, TypeError) as e:
            results.append(type(e))
    return results


def _same(ref, got, scale, dtype):
    if isinstance(ref, type):  # sigpy fails: so does gemmconv, with the same kind of error
        assert got is ref or (isinstance(got, type) and issubclass(ref, got)), (ref, got)
        return
    assert not isinstance(got, type), f"gemmconv raised {got} where sigpy gave a result"
    assert got.shape == ref.shape and got.dtype == ref.dtype, (got.shape, ref.shape, got.dtype, ref.dtype)
    err = float(np.max(np.abs(got.astype(np.complex128) - ref), initial=0))
    assert err <= TOLERANCE[dtype] * max(scale, 1e-30) * 4, (err, scale)


def _swapped(data, filt, kw):
    """Whether ``"valid"`` mode has the data smaller than the filter in every axis."""
    d = filt.ndim - 2 * kw["multi_channel"]
    return kw["mode"] == "valid" and all(a < b for a, b in zip(data.shape[-d:], filt.shape[-d:], strict=True))


def _scipy_loop(data, filt, mode, strides, multi_channel):
    """sigpy's CPU loop (``scipy.signal.convolve`` per batch element and channel pair), its output as large as
    scipy's: sigpy's own size formula fails where the data is smaller than the filter in "valid" mode."""
    from scipy import signal

    d = filt.ndim - 2 * multi_channel
    slc = tuple(slice(None, None, s) for s in (strides or (1,) * d))
    c_o, c_i = filt.shape[:2] if multi_channel else (1, 1)
    x = data.reshape(-1, c_i, *data.shape[-d:])
    f = filt.reshape(c_o, c_i, *filt.shape[-d:])
    out = np.stack([np.stack([sum(signal.convolve(x[k, i], f[j, i], mode=mode)[slc] for i in range(c_i))
                              for j in range(c_o)]) for k in range(x.shape[0])]).astype(data.dtype)
    batch = data.shape[:data.ndim - d - multi_channel]
    return out.reshape(*batch, *((c_o,) if multi_channel else ()), *out.shape[2:])


@settings(max_examples=150, deadline=None)
@given(problems())
def test_the_three_functions_match_sigpy(problem):
    data, filt, kw = problem
    dtype = data.dtype.name
    if _swapped(data, filt, kw):
        _check_swapped(data, filt, kw)
        return
    ref, got = _both("convolve", data, filt, **kw)
    scale = 0.0 if isinstance(ref, type) else float(np.max(
        np.abs(OWN["convolve"](np.abs(data), np.abs(filt).astype(np.abs(data).dtype), **kw)), initial=0))
    _same(ref, got, scale, dtype)
    if isinstance(ref, type):
        for fn, args in (("convolve_data_adjoint", (np.ones(1, data.dtype), filt, data.shape)),
                         ("convolve_filter_adjoint", (np.ones(1, data.dtype), data, filt.shape))):
            assert isinstance(getattr(gsp, fn) and _both(fn, *args, **kw)[1], type)
        return
    output = _array(np.random.default_rng(1), ref.shape, dtype)
    before = [a.copy() for a in (data, filt, output)]
    mag = np.abs(output)
    ref_d, got_d = _both("convolve_data_adjoint", output, filt, data.shape, **kw)
    scale = float(np.max(OWN["convolve_data_adjoint"](mag, np.abs(filt).astype(mag.dtype), data.shape, **kw),
                         initial=0))
    _same(ref_d, got_d, scale, dtype)
    ref_f, got_f = _both("convolve_filter_adjoint", output, data, filt.shape, **kw)
    scale = float(np.max(OWN["convolve_filter_adjoint"](mag, np.abs(data).astype(mag.dtype), filt.shape, **kw),
                         initial=0))
    _same(ref_f, got_f, scale, dtype)
    for a, b in zip((data, filt, output), before, strict=True):
        np.testing.assert_array_equal(a, b)  # inputs untouched


def _check_swapped(data, filt, kw):
    """"valid" with the data smaller than the filter: scipy's result, and the adjoints are adjoints."""
    if filt.dtype.kind == "c" and data.dtype.kind != "c":
        return
    y = gsp.convolve(data, filt, **kw)
    ref = _scipy_loop(data, filt.astype(data.dtype), **kw)
    scale = float(np.max(np.abs(_scipy_loop(np.abs(data), np.abs(filt), **kw)), initial=0))
    _same(ref, y, scale, data.dtype.name)
    rng = np.random.default_rng(2)
    out = _array(rng, y.shape, data.dtype.name)
    filt = filt.astype(data.dtype)
    dx = gsp.convolve_data_adjoint(out, filt, data.shape, **kw)
    df = gsp.convolve_filter_adjoint(out, data, filt.shape, **kw)
    assert dx.shape == data.shape and df.shape == filt.shape and dx.dtype == df.dtype == data.dtype
    u, v = _array(rng, data.shape, data.dtype.name), _array(rng, filt.shape, data.dtype.name)
    tol = TOLERANCE[data.dtype.name] * 100 * max(1.0, float(np.abs(out).sum()) * scale)
    assert abs(np.vdot(gsp.convolve(u, filt, **kw), out) - np.vdot(u, dx)) <= tol
    assert abs(np.vdot(gsp.convolve(data, v, **kw), out) - np.vdot(v, df)) <= tol


@pytest.mark.parametrize(("call", "match"), [
    (lambda: gsp.convolve(np.ones((3, 5)), np.ones((3, 2, 3)), multi_channel=True), "Data channel mismatch"),
    (lambda: gsp.convolve(np.ones(5), np.ones(3), strides=(1, 1)), "Strides must have length 1"),
    (lambda: gsp.convolve(np.ones((5, 2)), np.ones((3, 3)), mode="valid"), "either data or filter must be"),
    (lambda: gsp.convolve(np.ones(5), np.ones(3), mode="same"), "Invalid mode, got same"),
    (lambda: gsp.convolve(np.ones((2,) * 4), np.ones((2,) * 4)), "1, 2 or 3 dimensions"),
])
def test_sigpy_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_dtypes_are_cast_as_sigpy_casts_them():
    data = np.arange(5.0, dtype=np.float32)
    got = gsp.convolve(data, np.ones(3))  # float64 filter, float32 data: float32, as sigpy gives
    assert got.dtype == np.float32 and got.dtype == OWN["convolve"](data, np.ones(3)).dtype
    with pytest.raises(TypeError, match=r"filt is complex \(complex128\) but data is real"):
        gsp.convolve(data, np.ones(3, np.complex128))
    with pytest.raises(TypeError, match="data has dtype int64"):
        gsp.convolve(np.arange(5), np.ones(3))


def test_install_routes_sigpy_and_uninstall_restores_it():
    assert not gsp.is_installed() and sigpy.conv.convolve is OWN["convolve"]
    gsp.install()
    try:
        gsp.install()  # again: nothing changes
        for name in gsp.ROUTED:
            assert isinstance(getattr(sigpy.conv, name), gsp.Routed)
            assert getattr(sigpy, name) is getattr(sigpy.conv, name)  # the re-exported names too
        x = np.random.default_rng(0).standard_normal((3, 9, 9)) + 0j
        f = np.ones((2, 3, 3, 3), np.complex128)
        np.testing.assert_array_equal(sigpy.convolve(x, f, multi_channel=True), gsp.convolve(x, f, multi_channel=True))
        assert sigpy.conv.convolve.takes((x, f), {"multi_channel": True})
        # what gemmconv does not take stays sigpy's: 4-D, and integer data
        assert not sigpy.conv.convolve.takes((np.ones((3,) * 4), np.ones((2,) * 4)), {})
        np.testing.assert_array_equal(sigpy.conv.convolve(np.ones((3,) * 4), np.ones((2,) * 4)),
                                      OWN["convolve"](np.ones((3,) * 4), np.ones((2,) * 4)))
        assert sigpy.conv.convolve(np.arange(4), np.ones(2, np.int64)).dtype.kind == "i"
    finally:
        gsp.uninstall()
    assert not gsp.is_installed()
    for name in gsp.ROUTED:
        assert getattr(sigpy.conv, name) is OWN[name] and getattr(sigpy, name) is OWN[name]
    gsp.uninstall()  # again: nothing happens


@pytest.mark.parametrize("dtype", ["float32", "complex64", "complex128"])
def test_linops_and_mri_operators_run_on_gemmconv(dtype):
    rng = np.random.default_rng(3)
    data = _array(rng, (2, 3, 10, 12), dtype)
    filt = _array(rng, (4, 3, 3, 5), dtype)
    mps_ker = _array(rng, (4, 5, 5), dtype)  # sensitivity-map kernels of 4 coils
    img_ker = _array(rng, (12, 12), dtype)
    ops = [sigpy.linop.ConvolveData(data.shape, filt, mode="full", strides=(2, 1), multi_channel=True),
           sigpy.linop.ConvolveFilter(filt.shape, data, mode="valid", multi_channel=True),
           sigpy.mri.linop.ConvSense(img_ker.shape, mps_ker),
           sigpy.mri.linop.ConvImage(mps_ker.shape, img_ker)]
    inputs = [_array(rng, op.ishape, dtype) for op in ops]
    outputs = [_array(rng, op.oshape, dtype) for op in ops]
    own = [(op * x, op.H * y) for op, x, y in zip(ops, inputs, outputs, strict=True)]
    gsp.install()
    try:
        ours = [(op * x, op.H * y) for op, x, y in zip(ops, inputs, outputs, strict=True)]
    finally:
        gsp.uninstall()
    tol = 1e-4 if dtype in ("float32", "complex64") else 1e-11
    for (a, b), (c, e) in zip(own, ours, strict=True):
        np.testing.assert_allclose(c, a, rtol=tol, atol=tol * float(np.abs(a).max()))
        np.testing.assert_allclose(e, b, rtol=tol, atol=tol * float(np.abs(b).max()))
