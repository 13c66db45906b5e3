"""The backward passes and the transposed convolution against torch autograd in float64."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import accepted_configs, fft_floor, record, tolerance
from hypothesis import given, settings
from hypothesis import strategies as st

import gemmconv
from gemmconv.core.args import ConvArgs
from gemmconv.core.registry import supporting
from gemmconv.planning.passes import PASS_PLANS
from gemmconv.planning.validate import validate
from gemmconv.strategies import adjoint, auto
from gemmconv.tools.layers import LAYERS

RNG = np.random.default_rng(0)


def autograd(x, w, gy, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """dL/dx and dL/dw of torch.nn.Conv2d in float64 for the upstream gradient ``gy``."""
    stride, padding, dilation = (v * 2 if isinstance(v, tuple) and len(v) == 1 else v
                                 for v in (stride, padding, dilation))
    k, cg, kh, kw = w.shape
    conv = torch.nn.Conv2d(cg * groups, k, (kh, kw), stride=stride, padding=padding, dilation=dilation, groups=groups,
                           bias=False, padding_mode=padding_mode, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.asarray(w, np.float64)))
    xt = torch.from_numpy(np.asarray(x, np.float64)).requires_grad_()
    conv(xt).backward(torch.from_numpy(np.asarray(gy, np.float64)))
    return xt.grad.numpy(), conv.weight.grad.numpy()


def _scaled(got, ref, scale):
    """max|got - ref| / max(scale): ``scale`` is the same pass on absolute values (no cancellation)."""
    if ref.size == 0:
        return 0.0
    return float(np.max(np.abs(got.astype(np.float64) - ref))) / max(float(np.max(scale)), 1e-300)


def _spec(x, w, b, args):
    return validate(x, w, b, ConvArgs(**args)).spec


@settings(max_examples=300)
@given(accepted_configs())
def test_gradients_match_torch_autograd(cfg):
    """Every strategy with a pass, on every configuration its predicate accepts, against torch autograd in
    float64; the error is scaled by the same pass on absolute values, as the forward tests' error is, and
    the tolerance grows with the length of the sum (grad_weight sums over the batch and the output)."""
    x, w, b, args = cfg
    y = gemmconv.conv2d(x, w, b, **args)
    gy = np.random.default_rng(int(x.size)).uniform(-1, 1, y.shape).astype(x.dtype)
    x4, gy4 = (x, gy) if x.ndim == 4 else (x[None], gy[None])
    spec = _spec(x, w, b, args)
    if spec.n == 0 or spec.c == 0:
        return
    gx_ref, gw_ref = autograd(x4, w, gy4, **args)
    gx_scale, gw_scale = autograd(np.abs(x4), np.abs(w), np.abs(gy4), **args)
    terms = {"grad_input": spec.kg * spec.kh * spec.kw, "grad_weight": spec.n * spec.oh * spec.ow}
    backend = gemmconv.get_backend(x)
    for pass_, call, ref, scale in (
            ("grad_input", lambda s: gemmconv.conv2d_grad_input(x.shape, w, gy, strategy=s, **args), gx_ref,
             gx_scale),
            ("grad_weight", lambda s: gemmconv.conv2d_grad_weight(x, w.shape, gy, strategy=s, **args), gw_ref,
             gw_scale)):
        able = supporting(spec, backend, pass_=pass_)
        assert "direct" in able and "im2col" in able and "auto" in able, (pass_, able)
        for strategy in able:
            got = call(strategy)
            want_shape = x.shape if pass_ == "grad_input" else w.shape
            assert got.shape == want_shape and got.dtype == x.dtype
            got4 = got if pass_ == "grad_weight" or x.ndim == 4 else got[None]
            floor = 0.0
            if strategy == "fft":  # its error sits on the largest values of the whole correlation
                floor = fft_floor(*((gy4, w) if pass_ == "grad_input" else (x4, gy4)), terms[pass_])
            err = _scaled(got4, ref, np.maximum(scale, floor))
            record(f"{strategy}:{pass_}", x.dtype.name, err)
            tol = tolerance(strategy, strategy, x.dtype.name) * max(1.0, terms[pass_] / 100)
            assert err <= tol, (strategy, pass_, args, err)


@pytest.mark.parametrize(("stride", "dilation", "padding"),
                         [(1, 1, 1), (2, 1, 1), (2, 2, 2), (3, 2, 0), ((2, 3), (3, 1), (3, 0)), (4, 1, 5)])
def test_grad_input_phases_cover_each_input_once(stride, dilation, padding):
    """The polyphase grad_input: each input position is in at most one phase, and the ones in none get
    no gradient from torch either."""
    x, w = RNG.standard_normal((1, 2, 11, 10)), RNG.standard_normal((3, 2, 3, 3))
    spec = _spec(x, w, None, dict(stride=stride, dilation=dilation, padding=padding))
    seen = np.zeros((spec.height, spec.width), int)
    for p in adjoint.phases(spec):
        seen[p.rows.positions(spec.sh), p.cols.positions(spec.sw)] += 1
        assert (p.spec.sh, p.spec.sw) == (1, 1)
    assert seen.max() <= 1
    gy = RNG.standard_normal(spec.out_shape)
    gx_ref, _ = autograd(x, w, gy, stride=stride, dilation=dilation, padding=padding)
    assert not gx_ref[..., seen == 0].any()
    gx = gemmconv.conv2d_grad_input(x.shape, w, gy, stride=stride, dilation=dilation, padding=padding,
                                    strategy="direct")
    np.testing.assert_allclose(gx, gx_ref, rtol=1e-12, atol=1e-12)


@settings(max_examples=200)
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 2), st.integers(1, 2), st.integers(0, 2), st.sampled_from([(3, 2), (3, 3), (1, 1), (4, 4)]),
       st.sampled_from(["float64", "float32"]), st.integers(0, 2**31))
def test_conv_transpose2d_matches_torch(n, cg_in, cg_out, groups, stride, padding, dilation, op, kernel, dtype, seed):
    """Every strategy that accepts the transposed convolution, against F.conv_transpose2d in float64."""
    rng = np.random.default_rng(seed)
    output_padding = op % max(stride, dilation)
    x = rng.standard_normal((n, cg_in * groups, 5, 4)).astype(dtype)
    w = rng.standard_normal((cg_in * groups, cg_out, *kernel)).astype(dtype)
    b = rng.standard_normal(cg_out * groups).astype(dtype)
    args = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    t = [torch.from_numpy(a.astype(np.float64)) for a in (x, w, b)]
    try:
        ref = F.conv_transpose2d(*t, **args).numpy()
    except RuntimeError:
        with pytest.raises(ValueError):
            gemmconv.conv_transpose2d(x, w, b, **args)
        return
    scale = F.conv_transpose2d(*(a.abs() for a in t), **args).numpy().max()
    ran = []
    for strategy in gemmconv.list_strategies():
        try:
            y = gemmconv.conv_transpose2d(x, w, b, strategy=strategy, **args)
        except gemmconv.StrategyNotSupportedError:
            continue
        ran.append(strategy)
        assert y.shape == ref.shape and y.dtype == dtype
        err = float(np.max(np.abs(y.astype(np.float64) - ref))) / scale
        record(f"{strategy}:transpose", dtype, err)
        assert err <= tolerance(strategy, strategy, dtype), (strategy, args, err)
        # unbatched: the same values, up to the order of the sums (another problem size, other blocks)
        y1 = gemmconv.conv_transpose2d(x[0], w, b, strategy=strategy, **args)
        np.testing.assert_allclose(y1, y[0], rtol=0, atol=2 * tolerance(strategy, strategy, dtype) * scale)
    assert {"direct", "im2col", "auto"} <= set(ran)
    if kernel == (3, 3) and stride == dilation:  # one phase of a 3x3 kernel: Winograd's
        assert {"winograd", "winograd_f2"} <= set(ran)


@pytest.mark.parametrize(("strategy", "pass_", "stride", "kernel", "reason", "able"), [
    ("winograd", "grad_weight", 2, 3, "needs stride 1", {"direct", "im2col", "fft", "auto"}),
    ("winograd_f2", "grad_weight", 1, 5, "needs a 3x3 kernel", {"direct", "im2col", "fft", "auto"}),
    ("1x1", "grad_input", 1, 3, "needs a 1x1 kernel", {"direct", "im2col", "winograd", "winograd_f2", "fft", "auto"}),
    ("1x1", "grad_weight", 1, 3, "needs a 1x1 kernel", {"direct", "im2col", "winograd", "winograd_f2", "fft", "auto"}),
    # stride 2: the phases of a 3x3 kernel are 2x2, 2x1, 1x2 and 1x1 convolutions
    ("winograd", "grad_input", 2, 3, "for the 2x2 one of dilation .*: needs a 3x3 kernel",
     {"direct", "im2col", "fft", "auto"}),
])
def test_a_strategy_without_the_pass_is_refused_naming_those_with_it(strategy, pass_, stride, kernel, reason, able):
    x, w = RNG.standard_normal((1, 4, 6, 6)), RNG.standard_normal((4, 4, kernel, kernel))
    gy = RNG.standard_normal(_spec(x, w, None, dict(stride=stride)).out_shape)
    call = {"grad_input": lambda: gemmconv.conv2d_grad_input(x.shape, w, gy, stride=stride, strategy=strategy),
            "grad_weight": lambda: gemmconv.conv2d_grad_weight(x, w.shape, gy, stride=stride, strategy=strategy)}
    with pytest.raises(gemmconv.StrategyNotSupportedError, match=reason) as info:
        call[pass_]()
    assert set(info.value.alternatives) == able


def test_bad_arguments_are_named():
    x, w = RNG.standard_normal((2, 4, 6, 6)), RNG.standard_normal((5, 4, 3, 3))
    gy = RNG.standard_normal((2, 5, 4, 4))
    with pytest.raises(ValueError, match=r"grad_y must have shape \(2, 5, 4, 4\).*got \(2, 5, 4, 3\)"):
        gemmconv.conv2d_grad_input(x.shape, w, gy[..., :3])
    with pytest.raises(ValueError, match=r"input_shape must be a tuple of 3 or 4 non-negative ints"):
        gemmconv.conv2d_grad_input((2, 4), w, gy)
    with pytest.raises(ValueError, match=r"grad_y must have shape \(5, 4, 4\)"):
        gemmconv.conv2d_grad_input((4, 6, 6), w, gy)
    with pytest.raises(ValueError, match=r"weight_shape must be a tuple of 4 non-negative ints"):
        gemmconv.conv2d_grad_weight(x, (5, 4, 3), gy)
    with pytest.raises(ValueError, match=r"weight_shape\[1\] must be in_channels / groups = 4 / 1 = 4, got weight"):
        gemmconv.conv2d_grad_weight(x, (5, 3, 3, 3), gy)
    with pytest.raises(TypeError, match=r"grad_y must have the dtype of the other arrays \(float64\)"):
        gemmconv.conv2d_grad_weight(x, w.shape, gy.astype(np.float32))
    # below im2col's smallest block, auto's grad_weight is the direct loop (no workspace)
    np.testing.assert_array_equal(gemmconv.conv2d_grad_weight(x, w.shape, gy, workspace_limit=100),
                                  gemmconv.conv2d_grad_weight(x, w.shape, gy, strategy="direct"))
    with pytest.raises(gemmconv.StrategyNotSupportedError, match=r"below the .* bytes of its smallest block"):
        gemmconv.conv2d_grad_weight(x, w.shape, gy, strategy="im2col", workspace_limit=100)
    with pytest.raises(ValueError, match="output_padding=2 must be smaller than either the stride"):
        gemmconv.conv_transpose2d(gy, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"b must have shape \(4,\)"):
        gemmconv.conv_transpose2d(gy, w, np.ones(5))


def test_inputs_are_not_modified_and_results_are_fresh():
    x, w = RNG.standard_normal((2, 4, 6, 6)), RNG.standard_normal((5, 4, 3, 3))
    gy = RNG.standard_normal((2, 5, 6, 6))
    copies = [a.copy() for a in (x, w, gy)]
    results = []
    for strategy in ("direct", "im2col", "winograd", "winograd_f2", "auto"):
        results.append(gemmconv.conv2d_grad_input(x.shape, w, gy, padding=1, padding_mode="reflect",
                                                   strategy=strategy))
        results.append(gemmconv.conv_transpose2d(gy, w, np.ones(4), padding=1, strategy=strategy))
        if not strategy.startswith("winograd"):
            results.append(gemmconv.conv2d_grad_weight(x, w.shape, gy, padding=1, padding_mode="circular",
                                                       strategy=strategy))
    for a, c in zip((x, w, gy), copies, strict=True):
        np.testing.assert_array_equal(a, c)
    assert not any(np.shares_memory(r, a) for r in results for a in (x, w, gy))
    assert not any(np.shares_memory(r, q) for i, r in enumerate(results) for q in results[i + 1:])
    out = np.empty_like(w)
    assert gemmconv.conv2d_grad_weight(x, w.shape, gy, padding=1, out=out) is out


def test_the_bias_gradient_is_a_sum_and_zero_sizes_work():
    gy = RNG.standard_normal((2, 5, 4, 4))
    assert gemmconv.conv2d_grad_weight(np.zeros((0, 4, 6, 6)), (5, 4, 3, 3), np.zeros((0, 5, 4, 4))).shape == \
        (5, 4, 3, 3)
    assert not gemmconv.conv2d_grad_input((2, 0, 6, 6), np.zeros((5, 0, 3, 3)), gy).any()
    assert "im2col" in supporting(gemmconv.plan(np.zeros((1, 4, 6, 6)), np.zeros((5, 4, 3, 3))).spec,
                                  pass_="grad_input")


@pytest.mark.parametrize("args", [dict(padding=0), dict(padding=1, dilation=2), dict(padding=(0, 2), groups=4)])
@pytest.mark.parametrize("value", [np.inf, np.nan])
def test_grad_weight_of_non_finite_inputs_reaches_the_taps_that_read_them(args, value):
    """Inf or NaN in the input reaches exactly the weights' gradients of the taps that read it, as in torch:
    at unit stride the direct loop's dot products over padded planes also meet the input past a row's end,
    and redo a non-finite result over the valid pixels only. (Winograd mixes whole tiles, and the FFT every
    position of a channel's transform: a superset, as their forward passes, README.)"""
    x = RNG.standard_normal((2, 4, 9, 11))
    x[1, 2, 4, -1] = value  # the last column: taps further left never read it at padding 0
    w_shape = (8, 4 // args.get("groups", 1), 3, 3)
    y = torch.nn.functional.conv2d(torch.from_numpy(x), torch.zeros(w_shape, dtype=torch.float64), **args)
    gy = RNG.standard_normal(tuple(y.shape))
    _, ref = autograd(x, np.zeros(w_shape), gy, **args)
    assert np.isfinite(ref).any() and not np.isfinite(ref).all()
    for strategy in supporting(_spec(x, np.zeros(w_shape), None, args), pass_="grad_weight"):
        got = gemmconv.conv2d_grad_weight(x, w_shape, gy, strategy=strategy, **args)
        if strategy.startswith("winograd") or strategy == "fft":  # a superset
            assert not np.isfinite(got[~np.isfinite(ref)]).any(), strategy
            continue
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(ref), err_msg=strategy)
        np.testing.assert_allclose(got[np.isfinite(ref)], ref[np.isfinite(ref)], rtol=1e-9, atol=1e-9,
                                   err_msg=strategy)


@pytest.mark.parametrize("strategy", ["winograd", "winograd_f2"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("shape", "k", "args"), [((4, 48, 40, 38), 40, dict(padding=1)),  # bands of tile rows
                                                   ((3, 32, 23, 30), 32, dict(padding=(0, 2), groups=2)),
                                                   ((2, 16, 13, 9), 24, dict(padding="same", padding_mode="reflect"))])
def test_winograd_grad_weight_in_bands_matches_torch(strategy, dtype, shape, k, args):
    """Winograd's grad_weight on layers large enough to be cut into bands of tile rows (and outputs that are
    not whole tiles), against torch autograd in float64."""
    x = RNG.standard_normal(shape).astype(dtype)
    w_shape = (k, shape[1] // args.get("groups", 1), 3, 3)
    spec = _spec(x, np.zeros(w_shape, dtype), None, args)
    gy = RNG.uniform(-1, 1, spec.out_shape).astype(dtype)
    got = gemmconv.conv2d_grad_weight(x, w_shape, gy, strategy=strategy, **args)
    _, ref = autograd(x, np.zeros(w_shape), gy, **args)
    _, scale = autograd(np.abs(x), np.zeros(w_shape), np.abs(gy), **args)
    err = _scaled(got, ref, scale)
    record(f"{strategy}:grad_weight", dtype, err)
    assert got.dtype == x.dtype
    assert err <= tolerance(strategy, strategy, dtype) * spec.n * spec.oh * spec.ow / 100, err


@pytest.mark.parametrize("pass_", ["grad_input", "grad_weight"])
@pytest.mark.parametrize(("shape", "args"), [((2, 16, 40, 40), dict(padding=1)),
                                             ((1, 16, 40, 40), dict(padding=1)),
                                             ((3, 8, 41, 37), dict(stride=2, padding=(1, 2), dilation=(1, 2)))])
def test_im2col_passes_keep_to_a_workspace_limit(pass_, shape, args):
    """Under a limit the blocks are smaller (bands of rows of one image where one image does not fit): the
    peak of the temporary memory stays under the limit, and the result is the unlimited one's."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal(shape)
    w = rng.standard_normal((16, shape[1], 3, 3))
    spec = _spec(x, w, None, args)
    gy = rng.standard_normal(spec.out_shape)
    backend = gemmconv.get_backend(x)
    if pass_ == "grad_input":
        def run(limit):
            return gemmconv.conv2d_grad_input(x.shape, w, gy, strategy="im2col", workspace_limit=limit, **args)
        result = x.nbytes
    else:
        def run(limit):
            return gemmconv.conv2d_grad_weight(x, w.shape, gy, strategy="im2col", workspace_limit=limit, **args)
        result = w.nbytes
    full = run(None)
    limit = 160 * 1024
    got, peak = backend.profiler.peak_memory(lambda: run(limit))
    assert spec.n * spec.c * 9 * spec.oh * spec.ow * 8 > 2 * limit  # the batch's column matrices would not fit
    assert peak - result <= limit
    np.testing.assert_allclose(got, full, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("n", "size", "images"), [(8, 7, 4), (5, 8, 3), (3, 11, 3), (2, 12, 1)])
def test_grad_input_of_small_images_shares_one_gemm(n, size, images, monkeypatch):
    """Images of fewer than NARROW_COLUMNS output pixels share one GEMM (their dL/dy side by side), in even groups
    with a short last one, on two workers (one group of three images: two slices of its channels, the second from
    channel 3): col2im gets each block's images, and dL/dx and the transposed convolution are torch's."""
    from gemmconv.strategies import im2col_grad

    rng = np.random.default_rng(n)
    x = rng.standard_normal((n, 6, size, size))
    w = rng.standard_normal((7, 6, 3, 3))
    spec = _spec(x, w, None, dict(padding=1))
    assert im2col_grad._images_per_gemm(spec) == images
    backend = gemmconv.get_backend(x)
    slices = im2col_grad._slices(spec, backend.scheduler.block_budget(spec), 2)
    assert {n1 - n0 for n0, n1, _, _ in slices} <= {images, n % images or images}
    want_blocks = sorted((n0, n1 - n0 if images > 1 else 0, (c0, c1)) for n0, n1, c0, c1 in slices)
    seen = []
    original = type(backend).col2im_part

    def spy(self, cols, dx, spec_, n0, o0, channels=None, images=0):
        seen.append((n0, images, channels))
        return original(self, cols, dx, spec_, n0, o0, channels=channels, images=images)

    monkeypatch.setattr(type(backend), "col2im_part", spy)
    gy = rng.standard_normal(spec.out_shape)
    wt = rng.standard_normal((7, 6, 3, 3))  # (C_in, C_out, KH, KW) of a transposed convolution
    old = gemmconv.set_threads(2)
    try:
        gemmconv.clear_caches()
        got = gemmconv.conv2d_grad_input(x.shape, w, gy, padding=1, strategy="im2col")
        assert sorted(seen) == want_blocks
        got_t = gemmconv.conv_transpose2d(gy, wt, padding=1, strategy="im2col")
    finally:
        gemmconv.set_threads(old.threads, pin=old.pin, keep_blas=old.keep_blas, spin_us=old.spin_us)
        gemmconv.clear_caches()
    if n == 3:
        assert [c for _, _, c in want_blocks] == [(0, 3), (3, 6)]
    want = torch.nn.grad.conv2d_input(x.shape, torch.from_numpy(w), torch.from_numpy(gy), padding=1).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    want = F.conv_transpose2d(torch.from_numpy(gy), torch.from_numpy(wt), padding=1).numpy()
    np.testing.assert_allclose(got_t, want, rtol=1e-12, atol=1e-12)


@settings(max_examples=60)
@given(accepted_configs())
def test_pass_plans_equal_the_functions(cfg):
    x, w, b, args = cfg
    spec = _spec(x, w, b, args)
    if spec.n == 0 or spec.c == 0:
        return
    gy = np.random.default_rng(2).uniform(-1, 1, spec.out_shape[1:] if x.ndim == 3 else spec.out_shape).astype(
        x.dtype)
    p = gemmconv.plan_grad_input(x.shape, w, gy, **args)
    np.testing.assert_array_equal(p(w, gy), gemmconv.conv2d_grad_input(x.shape, w, gy, **args))
    q = gemmconv.plan_grad_weight(x, w.shape, gy, **args)
    np.testing.assert_array_equal(q(x, gy), gemmconv.conv2d_grad_weight(x, w.shape, gy, **args))
    assert p.out_shape == x.shape and q.out_shape == w.shape and "ConvPlan(grad_input" in repr(p)


def test_pass_plans_refuse_other_arrays_and_are_cached():
    x, w = RNG.standard_normal((2, 4, 6, 6)), RNG.standard_normal((5, 4, 3, 3))
    gy = RNG.standard_normal((2, 5, 6, 6))
    p = gemmconv.plan_grad_input(x.shape, w, gy, padding=1)
    with pytest.raises(ValueError, match=r"grad_y: this plan was made for a numpy array of shape \(2, 5, 6, 6\)"):
        p(w, gy[:1])
    with pytest.raises(ValueError, match=r"w: this plan was made for .* dtype float64, got .* dtype float32"):
        p(w.astype(np.float32), gy)
    t = gemmconv.plan_conv_transpose2d(gy, w, np.ones(4), padding=1, strategy="im2col")
    assert t.strategy == "im2col" and t.out_shape == (2, 4, 6, 6)
    with pytest.raises(ValueError, match=r"b: this plan was made with a bias of shape \(4,\), got None"):
        t(gy, w)
    np.testing.assert_allclose(t(gy, w, np.ones(4)), gemmconv.conv_transpose2d(gy, w, np.ones(4), padding=1))
    gemmconv.clear_caches()
    gemmconv.conv2d_grad_weight(x, w.shape, gy, padding=1)
    assert len(PASS_PLANS) == 1
    gemmconv.conv2d_grad_weight(x, w.shape, gy, padding=1)
    assert len(PASS_PLANS) == 1
    gemmconv.clear_caches()
    assert len(PASS_PLANS) == 0


def test_passes_from_many_threads_match_one_thread():
    """The pass plans' cache and the phases' cache shared by threads running different layers at once."""
    rng = np.random.default_rng(5)
    cases = []
    for i in range(12):
        stride = 1 + i % 3
        x, w = rng.standard_normal((2, 3, 9 + i, 8)), rng.standard_normal((4, 3, 3, 2))
        gy = rng.standard_normal(_spec(x, w, None, dict(stride=stride, padding=1)).out_shape)
        cases.append((x, w, gy, stride))

    def both(case):
        x, w, gy, stride = case
        return (gemmconv.conv2d_grad_input(x.shape, w, gy, stride=stride, padding=1, strategy="direct"),
                gemmconv.conv2d_grad_weight(x, w.shape, gy, stride=stride, padding=1))

    serial = [both(c) for c in cases]
    gemmconv.clear_caches()
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(both, cases * 3))
    for got, want in zip(threaded, serial * 3, strict=True):
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize(("layer", "n", "dtype", "expected"), [
    ("conv3x3_56", 1, "float32", "winograd"), ("conv3x3_28", 1, "float32", "winograd"),
    ("conv3x3_14", 1, "float32", "winograd_f2"), ("conv3x3_14", 8, "float32", "winograd"),
    ("conv3x3_7", 1, "float32", "im2col"), ("conv3x3_7", 8, "float32", "winograd_f2"),
    ("conv3x3_56", 1, "float16", "winograd_f2"), ("conv3x3s2_56", 8, "float32", "im2col"),
    ("conv3x3_56/32", 8, "float32", "im2col"),
])
def test_auto_grad_weight_rule(layer, n, dtype, expected):
    """auto's grad_weight: Winograd F(4x4) from 0.35 tiles of 4x4 per channel, F(2x2) from 0.15 tiles of 2x2
    per channel (never F(4x4) for float16), im2col below, and below 64 channels ("/32": the layer with 32)."""
    name, _, channels = layer.partition("/")
    layer_ = LAYERS[name]
    if channels:
        layer_ = dataclasses.replace(layer_, c=int(channels), k=int(channels))
    x = np.zeros((n, layer_.c, layer_.h, layer_.w), np.float32)
    w = np.zeros((layer_.k, layer_.c // layer_.groups, layer_.kh, layer_.kw), np.float32)
    spec = dataclasses.replace(_spec(x, w, None, layer_.conv_args), dtype=dtype)  # float16: CuPy's
    assert auto.choose_pass(spec, "grad_weight", gemmconv.get_backend(np.zeros(1))) == expected


def _col2im_reference(cols, dx, kh, kw, sh, sw, pt, pl, dh, dw, ow, n0, o0, cbase, c0, c1):
    """col2im one entry at a time: each column entry added where im2col read it, if inside the plane."""
    _, _, h_, w_ = dx.shape
    for n in range(cols.shape[0]):
        for c in range(c0, c1):
            for r in range(kh):
                for s in range(kw):
                    row = cols[n, ((c - cbase) * kh + r) * kw + s]
                    for i in range(cols.shape[2]):
                        o, q = o0 + i // ow, i % ow
                        y, x_ = o * sh + r * dh - pt, q * sw + s * dw - pl
                        if 0 <= y < h_ and 0 <= x_ < w_:
                            dx[n0 + n, c, y, x_] += row[i]


@settings(max_examples=150)
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.integers(0, 3),
       st.integers(0, 3), st.integers(1, 2), st.integers(1, 2), st.integers(1, 9), st.integers(1, 9),
       st.data())
def test_col2im_kernel_matches_one_entry_at_a_time(kh, kw, sh, sw, pt, pl, dh, dw, h_, w_, data):
    """The compiled col2im (its pairs of taps at stride 2 included) on bands of rows and parts of the channels,
    against the entry-by-entry definition; every entry of ``cols`` distinct, so a misplaced one shows."""
    from gemmconv.backends._numba_backward import col2im

    oh, ow = (h_ + 2 * pt - dh * (kh - 1) - 1) // sh + 1, (w_ + 2 * pl - dw * (kw - 1) - 1) // sw + 1
    if oh < 1 or ow < 1:
        return
    wide = data.draw(st.booleans())  # the images' columns side by side (whole images)
    o0 = 0 if wide else data.draw(st.integers(0, oh - 1))
    o1 = oh if wide else data.draw(st.integers(o0 + 1, oh))
    c, nb = 3, 2
    c0 = data.draw(st.integers(0, c - 1))
    c1 = data.draw(st.integers(c0 + 1, c))
    own = data.draw(st.booleans())  # cols of channels c0..c1 only (cbase c0), as a part's GEMM makes them
    cbase, rows = (c0, c1 - c0) if own else (0, c)
    cols = np.arange(nb * rows * kh * kw * (o1 - o0) * ow, dtype=np.float64).reshape(nb, rows * kh * kw, -1) + 1
    got, want = np.zeros((nb + 1, c, h_, w_)), np.zeros((nb + 1, c, h_, w_))
    if wide:  # (NB, CB·KH·KW, OH·OW) -> (1, CB·KH·KW, NB·OH·OW)
        side_by_side = np.ascontiguousarray(cols.transpose(1, 0, 2)).reshape(1, rows * kh * kw, -1)
        col2im(side_by_side, got, kh, kw, sh, sw, pt, pl, dh, dw, ow, oh, 1, 0, cbase, nb, c0, c1)
    else:
        col2im(cols, got, kh, kw, sh, sw, pt, pl, dh, dw, ow, oh, 1, o0, cbase, 0, c0, c1)
    _col2im_reference(cols, want, kh, kw, sh, sw, pt, pl, dh, dw, ow, 1, o0, cbase, c0, c1)
    np.testing.assert_array_equal(got, want)
