"""1-D and 3-D convolution against torch in float64, and complex convolution of every D against torch in
complex128: the forward pass, both gradients and the transposed convolution, every strategy that accepts the layer
(refusals asserted as errors), every padding form and mode, stride, dilation, groups, unbatched input, ``out=``,
plans and Dask."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import PADDING_MODES, fft_floor, record
from hypothesis import given, settings
from hypothesis import strategies as st

import gemmconv
from gemmconv.core.args import ConvArgs
from gemmconv.core.registry import supporting
from gemmconv.planning.validate import validate
from gemmconv.strategies import rows

MODULES = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}
TRANSPOSED = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
#: scaled error bounds as in helpers.TOLERANCE (sums of at most C/G·taps <= 3·27 products), Winograd's F(4x4) 7.5x;
#: a complex product is four real ones (twice the terms per sum)
TOLERANCE = {"float32": 2e-6, "float64": 4e-15, "complex64": 4e-6, "complex128": 8e-15}
WINOGRAD = 7.5
FFT = 5  # on its own scale (helpers.fft_floor)


def _fn(kind: str, ndim: int):
    return getattr(gemmconv, kind.format(ndim))


@st.composite
def layers(draw, ndim: int, complex_: bool = False):
    """One ``ndim``-D layer torch runs: the arrays (as float64, or complex128) and the keyword arguments."""
    groups = draw(st.integers(1, 2))
    cg, kg = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    square3 = draw(st.booleans())  # 3x3 planes: what Winograd runs on the depth planes
    kernel = tuple(3 if square3 and i else draw(st.integers(1, 3)) for i in range(ndim))
    stride = tuple(draw(st.sampled_from([1, 1, 2])) for _ in range(ndim))
    dilation = tuple(draw(st.sampled_from([1, 1, 2])) for _ in range(ndim))
    padding = draw(st.sampled_from(["same", "valid", 0, 1, tuple(draw(st.integers(0, 2)) for _ in range(ndim))]))
    if padding == "same" and any(s > 1 for s in stride):
        padding = 1
    mode = draw(st.sampled_from(PADDING_MODES))
    reach = [(r - 1) * d + 1 for r, d in zip(kernel, dilation, strict=True)]
    size = tuple(draw(st.integers(max(e, 3), e + (6 if ndim == 1 else 3))) for e in reach)
    n = draw(st.sampled_from([1, 2, 0]))
    unbatched = n == 1 and draw(st.booleans())
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = _uniform(rng, ((groups * cg,) if unbatched else (n, groups * cg)) + size, complex_)
    w = _uniform(rng, (groups * kg, cg, *kernel), complex_)
    b = _uniform(rng, (groups * kg,), complex_) if draw(st.booleans()) else None
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode)
    return x, w, b, args


def _uniform(rng, shape, complex_: bool = False):
    """Uniform in [-1, 1) (in each part, complex)."""
    a = rng.uniform(-1, 1, shape)
    return a + 1j * rng.uniform(-1, 1, shape) if complex_ else a


def _module(ndim: int, w, b, args):
    k, cg, *kernel = w.shape
    dtype = torch.complex128 if np.iscomplexobj(w) else torch.float64
    conv = MODULES[ndim](cg * args["groups"], k, tuple(kernel), bias=b is not None, dtype=dtype, **args)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(w))
        if b is not None:
            conv.bias.copy_(torch.from_numpy(b))
    return conv


def oracle(ndim: int, x, w, b, gy_seed: int, args, gy=None):
    """y, dL/dy (random unless given) and dL/dx, dL/dw from torch autograd in float64 (None where torch
    refuses)."""
    conv = _module(ndim, w, b, args)
    try:
        xt = torch.from_numpy(x).requires_grad_()
        y = conv(xt)
    except RuntimeError:
        return None
    if gy is None:
        gy = _uniform(np.random.default_rng(gy_seed), tuple(y.shape), np.iscomplexobj(x))
    if y.numel():
        y.backward(torch.from_numpy(gy))
    gx = xt.grad.numpy() if xt.grad is not None else np.zeros_like(x)
    gw = conv.weight.grad.numpy() if conv.weight.grad is not None else np.zeros_like(w)
    return y.detach().numpy(), gy, gx, gw


def _check(got, ref, scale, dtype: str, strategy: str, what: str) -> None:
    err = float(np.max(np.abs(np.asarray(got).astype(ref.dtype) - ref))) / max(scale, 1e-300) if ref.size else 0.0
    record(f"{strategy}:{what}", dtype, err)
    bound = TOLERANCE[dtype] * {"winograd": WINOGRAD, "fft": FFT}.get(strategy.split(":")[0], 1)
    assert err <= bound, f"{strategy} {what} {dtype}: scaled error {err:.3g} > {bound:.3g}"


@pytest.mark.parametrize("ndim", [1, 3])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_every_pass_and_strategy_against_torch(ndim, data):
    _every_pass_and_strategy(ndim, data, ["float64", "float32"])


@pytest.mark.parametrize("ndim", [1, 2, 3])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_complex_every_pass_and_strategy_against_torch(ndim, data):
    _every_pass_and_strategy(ndim, data, ["complex128", "complex64"])


def _every_pass_and_strategy(ndim, data, dtypes):
    complex_ = dtypes[0].startswith("complex")
    x, w, b, args = data.draw(layers(ndim, complex_))
    dtype = data.draw(st.sampled_from(dtypes))
    found = oracle(ndim, x, w, b, data.draw(st.integers(0, 2**31)), args)
    if found is None:  # torch refuses it (padding larger than the input for reflect, ...): so does gemmconv
        with pytest.raises(ValueError):
            _fn("conv{}d", ndim)(x.astype(dtype), w.astype(dtype), None if b is None else b.astype(dtype), **args)
        return
    y_ref, gy, gx_ref, gw_ref = found
    # each pass's scale: the same pass on absolute values, which bounds each of its sums (no cancellation)
    y_abs, _, gx_abs, gw_abs = oracle(ndim, np.abs(x), np.abs(w), None if b is None else np.abs(b), 0, args,
                                      np.abs(gy))
    scales = [float(np.max(a, initial=0)) for a in (y_abs, gx_abs, gw_abs)]
    xs, ws, bs, gys = (None if a is None else a.astype(dtype) for a in (x, w, b, gy))
    copies = [a.copy() for a in (xs, ws, gys)]
    batched = validate(xs, ws, None, ConvArgs(**args), ndim=ndim).spec
    taps = int(np.prod(batched.kernel))
    terms = {"forward": batched.cg * taps, "grad_input": batched.kg * taps,
             "grad_weight": batched.n * int(np.prod(batched.out_size))}
    for strategy in gemmconv.list_strategies():
        for pass_, call, ref, scale in (
                ("forward", lambda: _fn("conv{}d", ndim)(xs, ws, bs, strategy=strategy, **args), y_ref, scales[0]),
                ("grad_input", lambda: _fn("conv{}d_grad_input", ndim)(x.shape, ws, gys, strategy=strategy, **args),
                 gx_ref, scales[1]),
                ("grad_weight", lambda: _fn("conv{}d_grad_weight", ndim)(xs, w.shape, gys, strategy=strategy, **args),
                 gw_ref, scales[2])):
            accepts = strategy in supporting(batched, None, pass_=pass_)
            if not accepts:
                with pytest.raises(gemmconv.StrategyNotSupportedError):
                    call()
                continue
            got = call()
            assert got.shape == ref.shape and got.dtype == np.dtype(dtype)
            floor = 0.0
            if strategy == "fft":  # its error sits on the largest values of the whole correlation
                a, b_ = {"forward": (xs, ws), "grad_input": (gys, ws), "grad_weight": (xs, gys)}[pass_]
                floor = fft_floor(a, b_, terms[pass_])
            _check(got, ref, max(scale, floor), dtype, f"{strategy}:{ndim}d", pass_)
    for a, before in zip((xs, ws, gys), copies, strict=True):  # no input is written
        np.testing.assert_array_equal(a, before)


@contextlib.contextmanager
def _short_rows():
    """Rows of two outputs, halos of any share, and no least size: the forward pass and grad_weight of every 1-D
    layer of a few positions are folded into rows (``strategies/rows.py``), so that the seams between rows are
    exercised on small inputs."""
    saved = rows.OUTPUTS, rows.HALO_SHARE, rows.FOLD_BYTES, rows.ROW_BYTES
    rows.OUTPUTS, rows.HALO_SHARE, rows.FOLD_BYTES, rows.ROW_BYTES = 2, 1, 0, 0
    gemmconv.clear_caches()  # plans made with the usual rows must not serve these calls, nor these later ones
    try:
        yield
    finally:
        rows.OUTPUTS, rows.HALO_SHARE, rows.FOLD_BYTES, rows.ROW_BYTES = saved
        gemmconv.clear_caches()


@settings(max_examples=40, deadline=None)
@given(data=st.data(), complex_=st.booleans())
def test_1d_folded_into_rows_against_torch(data, complex_):
    with _short_rows():
        _every_pass_and_strategy(1, data, ["complex128", "complex64"] if complex_ else ["float64", "float32"])


@pytest.mark.parametrize(("length", "kernel", "stride", "dilation", "halo"),
                         [(40, 3, 1, 1, 2), (41, 3, 2, 2, 3), (40, 1, 3, 1, 0), (60, 2, 3, 1, 0), (9, 3, 1, 1, 2)])
def test_a_fold_covers_the_signal_in_rows(length, kernel, stride, dilation, halo):
    spec = validate(np.zeros((1, 2, length)), np.zeros((3, 2, kernel)), None,
                    ConvArgs(stride=stride, dilation=dilation), ndim=1).spec
    with _short_rows():
        fold = rows.fold_of(spec, "forward")
        assert rows.fold_of(spec, "grad_weight") == fold and rows.fold_of(spec, "grad_input") is None
    assert fold is not None and fold.rows >= 2 and fold.halo == halo
    assert fold.rows * fold.outputs >= spec.out_size[0] > (fold.rows - 1) * fold.outputs  # every output, once
    assert (fold.rows - 1) * fold.step + fold.width <= fold.padded  # the last row's halo is in the buffer
    assert rows.fold_of(spec, "forward") is None  # with the usual rows, a signal this short stays one row


def test_a_long_signal_is_folded_unless_the_workspace_forbids():
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((1, 64, 8000)), rng.standard_normal((6, 64, 9))  # 37 MB of columns: folded
    ref = F.conv1d(torch.from_numpy(x), torch.from_numpy(w), padding=4).numpy()
    roomy, tight = gemmconv.plan(x, w, padding=4), gemmconv.plan(x, w, padding=4, workspace_limit=4_000_000)
    assert roomy.kernels[0] == "fold_rows" and "fold_rows" not in tight.kernels  # the plan shows the fold
    assert roomy.workspace_bytes > tight.workspace_bytes  # the fold's buffers count, and a tight limit drops them
    for p in (roomy, tight):
        np.testing.assert_allclose(p(x, w), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("ndim", "complex_"), [(1, False), (3, False), (1, True), (2, True), (3, True)])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_the_transposed_convolution_against_torch(ndim, complex_, data):
    groups = data.draw(st.integers(1, 2))
    c_in, c_out = groups * data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    kernel = tuple(data.draw(st.integers(1, 3)) for _ in range(ndim))
    stride = tuple(data.draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(data.draw(st.integers(1, 2)) for _ in range(ndim))
    padding = tuple(data.draw(st.integers(0, (r - 1) * d)) for r, d in zip(kernel, dilation, strict=True))
    output_padding = tuple(data.draw(st.integers(0, max(s, d) - 1)) for s, d in zip(stride, dilation, strict=True))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    x = _uniform(rng, (2, c_in, *(data.draw(st.integers(1, 5)) for _ in range(ndim))), complex_)
    w = _uniform(rng, (c_in, c_out, *kernel), complex_)
    b = _uniform(rng, (c_out * groups,), complex_)
    kw = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    try:
        ref = TRANSPOSED[ndim](torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), **kw).numpy()
    except RuntimeError:
        with pytest.raises(ValueError):
            _fn("conv_transpose{}d", ndim)(x, w, b, **kw)
        return
    for strategy in ("direct", "im2col", "auto"):
        got = _fn("conv_transpose{}d", ndim)(x, w, b, strategy=strategy, **kw)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * max(1.0, float(np.abs(ref).max(initial=0))))


@pytest.mark.parametrize("ndim", [1, 3])
def test_plans_of_any_d_and_out(ndim):
    rng = np.random.default_rng(4)
    x = rng.standard_normal((2, 4, *(6,) * ndim)).astype(np.float32)
    w = rng.standard_normal((5, 4, *(3,) * ndim)).astype(np.float32)
    p = gemmconv.plan(x, w, padding=1)
    assert p.spec.ndim == ndim and p.out_shape == (2, 5, *(6,) * ndim)
    out = np.empty(p.out_shape, np.float32)
    assert p(x, w, out=out) is out
    np.testing.assert_allclose(out, _fn("conv{}d", ndim)(x, w, padding=1), rtol=1e-6, atol=1e-5)
    gy = rng.standard_normal(p.out_shape).astype(np.float32)
    gi = gemmconv.plan_grad_input(x.shape, w, gy, padding=1)
    gw = gemmconv.plan_grad_weight(x, w.shape, gy, padding=1)
    np.testing.assert_allclose(gi(w, gy), _fn("conv{}d_grad_input", ndim)(x.shape, w, gy, padding=1), rtol=1e-5)
    np.testing.assert_allclose(gw(x, gy), _fn("conv{}d_grad_weight", ndim)(x, w.shape, gy, padding=1), rtol=1e-5)
    assert x.flags.writeable and np.isfinite(x).all()  # inputs untouched


@pytest.mark.parametrize(("fn", "args", "error", "match"), [
    ("conv1d", ((2, 3, 8), (4, 3, 3, 3)), ValueError, r"w must be 3-D"),
    ("conv3d", ((3, 8, 8), (4, 3, 3, 3, 3)), ValueError, r"x must be 4-D or 5-D"),
    ("conv2d", ((2, 3, 8, 8, 8), (4, 3, 3, 3, 3)), ValueError, r"x must be 3-D or 4-D"),
    ("conv1d_grad_weight", ((2, 3, 8), (4, 3, 3, 3)), ValueError, r"weight_shape must be a tuple of 3"),
])
def test_the_wrong_number_of_dimensions_is_named(fn, args, error, match):
    x_shape, w_shape = args
    x = np.ones(x_shape, np.float32)
    with pytest.raises(error, match=match):
        if fn.endswith("grad_weight"):
            getattr(gemmconv, fn)(x, w_shape, np.ones((2, 4, 6), np.float32))
        else:
            getattr(gemmconv, fn)(x, np.ones(w_shape, np.float32))


def test_stride_tuples_are_checked_per_d():
    x, w = np.ones((1, 1, 8)), np.ones((1, 1, 3))
    with pytest.raises(ValueError, match=r"stride must be an int or a 1-tuple, got \(1, 2\) of length 2"):
        gemmconv.conv1d(x, w, stride=(1, 2))


@pytest.mark.parametrize("ndim", [1, 3])
def test_dask_of_every_d_matches_memory(ndim):
    da = pytest.importorskip("dask.array")
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 4, *(9,) * ndim))
    w = rng.standard_normal((6, 2, *(3,) * ndim))
    kw = dict(stride=2, padding=1, groups=2, padding_mode="reflect")
    ref = _fn("conv{}d", ndim)(x, w, None, **kw)
    for chunks in ((1, 2, *(4,) * ndim), (2, 4, *(9,) * ndim), (1, 1, *(3,) * ndim)):
        xd = da.from_array(x, chunks=chunks)
        np.testing.assert_allclose(_fn("conv{}d", ndim)(xd, w, None, **kw).compute(), ref, rtol=1e-12, atol=1e-12)
        gy = rng.standard_normal(ref.shape)
        gyd = da.from_array(gy, chunks=(1, 3, *(2,) * ndim))
        np.testing.assert_allclose(_fn("conv{}d_grad_input", ndim)(x.shape, w, gyd, **kw).compute(),
                                   _fn("conv{}d_grad_input", ndim)(x.shape, w, gy, **kw), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(_fn("conv{}d_grad_weight", ndim)(xd, w.shape, gyd, **kw).compute(),
                                   _fn("conv{}d_grad_weight", ndim)(x, w.shape, gy, **kw), rtol=1e-12, atol=1e-11)
