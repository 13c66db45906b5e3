"""Plans (gemmconv.plan), out=, the plan cache and the one call path."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import accepted_configs, scaled_error, tolerance
from hypothesis import given, settings

import gemmconv
from gemmconv.planning.plan import PLAN_CACHE

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 8, 9, 9)).astype(np.float32)
W = RNG.standard_normal((16, 8, 3, 3)).astype(np.float32)
B = RNG.standard_normal(16).astype(np.float32)


@settings(max_examples=150)
@given(accepted_configs())
def test_plan_equals_conv2d_on_the_property_grid(cfg):
    x, w, b, args = cfg
    for name in gemmconv.list_strategies():
        try:
            p = gemmconv.plan(x, w, b, strategy=name, **args)
        except gemmconv.StrategyNotSupportedError:
            with pytest.raises(gemmconv.StrategyNotSupportedError):
                gemmconv.conv2d(x, w, b, strategy=name, **args)
            continue
        y = p(x, w, b)
        assert y.shape == p.out_shape and y.dtype == x.dtype
        np.testing.assert_array_equal(y, gemmconv.conv2d(x, w, b, strategy=name, **args))
        x4, y4 = (x, y) if x.ndim == 4 else (x[None], y[None])
        assert scaled_error(y4, x4, w, b, p.strategy, **args) <= tolerance(name, p.strategy, x.dtype.name)
        if name == "auto":
            assert p.strategy == gemmconv.choose_strategy(x, w, b, **args)
        out = np.full(p.out_shape, np.nan, dtype=x.dtype)
        assert p(x, w, b, out=out) is out
        np.testing.assert_array_equal(out, y)


def test_plan_attributes_and_repr():
    p = gemmconv.plan(X, W, B, padding=1)
    assert p.strategy == "direct" and p.requested == "auto"  # 373 kFLOP: below the rule's 500
    assert p.out_shape == (2, 16, 9, 9)
    text = repr(p)
    assert "direct (from auto)" in text and "(2, 8, 9, 9) -> (2, 16, 9, 9)" in text and "workspace" in text
    p = gemmconv.plan(X, W, B, padding=1, strategy="im2col")
    assert p.workspace_bytes >= 8 * 9 * 9 * 9 * 4  # at least one image's column matrix
    assert gemmconv.plan(X, W, strategy="direct").workspace_bytes >= 0
    assert isinstance(p, gemmconv.ConvPlan)


def test_plan_runs_on_other_values_of_the_same_shapes():
    p = gemmconv.plan(X, W, B, padding=1, strategy="winograd")
    x2, w2, b2 = X * 2, W[::-1].copy(), B + 1
    np.testing.assert_allclose(p(x2, w2, b2), gemmconv.conv2d(x2, w2, b2, padding=1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("call", "pattern"),
    [
        (lambda p: p(X[:1], W, B), r"x: this plan was made for a numpy array of shape \(2, 8, 9, 9\).*another shape"),
        (lambda p: p(X.astype(np.float64), W.astype(np.float64), B.astype(np.float64)), r"x: .*another dtype"),
        (lambda p: p(X, W[:8], B), r"w: .*shape \(16, 8, 3, 3\).*another shape"),
        (lambda p: p(X, W, None), r"b: this plan was made with a bias of shape \(16,\), got None"),
        (lambda p: p(X, W, B[:8]), r"b: .*another shape"),
        (lambda p: p(X.tolist(), W, B), r"x: .*list"),
        (lambda p: p(np.ma.masked_array(X), W, B), r"x: .*another library or array type"),
    ],
)
def test_plan_refuses_other_arrays(call, pattern):
    p = gemmconv.plan(X, W, B, padding=1)
    with pytest.raises((ValueError, AttributeError), match=pattern):
        call(p)


def test_plan_without_bias_refuses_one():
    p = gemmconv.plan(X, W, padding=1)
    with pytest.raises(ValueError, match="made without a bias"):
        p(X, W, B)


def test_plan_validates_when_made():
    with pytest.raises(gemmconv.StrategyNotSupportedError, match="needs a 1x1 kernel"):
        gemmconv.plan(X, W, strategy="1x1")
    with pytest.raises(TypeError, match=r"plan\(\) got unexpected keyword argument\(s\) 'strid'"):
        gemmconv.plan(X, W, strid=2)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        gemmconv.plan(X, W, stride=0)


@pytest.mark.parametrize("strategy", ["direct", "im2col", "winograd", "winograd_f2", "auto"])
@pytest.mark.parametrize("unbatched", [False, True])
def test_out_receives_the_result(strategy, unbatched):
    x = X[0] if unbatched else X
    expected = gemmconv.conv2d(x, W, B, padding=1, strategy=strategy)
    out = np.full(expected.shape, np.nan, np.float32)
    assert gemmconv.conv2d(x, W, B, padding=1, strategy=strategy, out=out) is out
    np.testing.assert_array_equal(out, expected)
    strided = np.full((*expected.shape, 2), np.nan, np.float32)[..., 0]  # not contiguous: computed, then copied
    gemmconv.conv2d(x, W, B, padding=1, strategy=strategy, out=strided)
    np.testing.assert_array_equal(strided, expected)


@pytest.mark.parametrize(
    ("out", "pattern"),
    [
        (np.empty((2, 16, 9, 8), np.float32), r"out must have shape \(2, 16, 9, 9\) and dtype float32"),
        (np.empty((2, 16, 9, 9), np.float64), r"out must have shape .* got shape \(2, 16, 9, 9\) and dtype float64"),
        ([[0.0]], r"out must be a ndarray like x, got list"),
    ],
)
def test_out_refusals(out, pattern):
    with pytest.raises(ValueError, match=pattern):
        gemmconv.conv2d(X, W, B, padding=1, out=out)


def test_out_may_not_overlap_the_inputs_or_be_read_only():
    x = np.zeros((1, 16, 9, 9), np.float32)
    w = RNG.standard_normal((16, 16, 3, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="out overlaps x"):
        gemmconv.conv2d(x, w, padding=1, out=x)
    frozen = np.empty((1, 16, 9, 9), np.float32)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        gemmconv.conv2d(x, w, padding=1, out=frozen)


def test_conv2d_reuses_plans_from_a_bounded_cache():
    gemmconv.clear_caches()
    assert len(PLAN_CACHE) == 0
    gemmconv.conv2d(X, W, B, padding=1)
    gemmconv.conv2d(X * 2, W, B, padding=1)  # other values, same plan
    assert len(PLAN_CACHE) == 1
    gemmconv.conv2d(X, W, B, padding=(1, 1))  # another key (the arguments as given)
    gemmconv.conv2d(X, W, B, padding=[1, 1])  # a list is not hashable: planned, not cached
    assert len(PLAN_CACHE) == 2
    old = PLAN_CACHE.max_entries
    try:
        PLAN_CACHE.max_entries = 3
        for pad in range(5):
            gemmconv.conv2d(X, W, padding=pad)
        assert len(PLAN_CACHE) == 3
    finally:
        PLAN_CACHE.max_entries = old
    gemmconv.clear_caches()
    assert len(PLAN_CACHE) == 0


def test_a_bool_never_hits_the_plan_of_an_int():
    gemmconv.conv2d(X, W, stride=1)
    with pytest.raises(TypeError, match="bool"):
        gemmconv.conv2d(X, W, stride=True)


def test_auto_is_resolved_once_and_never_run_itself():
    with pytest.raises(TypeError, match="resolved to another strategy when a plan is made"):
        gemmconv.get_strategy("auto").run(None, X, W, None, None)


def test_compare_and_choose_strategy_share_the_defaults():
    records = gemmconv.compare(X, W, B, padding=1, repeat=1, strategies=["im2col", "auto"])
    assert records[1].chosen == gemmconv.choose_strategy(X, W, B, padding=1)
    assert records[0].conv_args == {"stride": 1, "padding": 1, "dilation": 1, "groups": 1, "padding_mode": "zeros",
                                    "workspace_limit": None}
    with pytest.raises(TypeError, match=r"compare\(\) got unexpected keyword argument\(s\) 'pading'"):
        gemmconv.compare(X, W, pading=1)


def test_the_plan_cache_is_bounded_in_bytes():
    gemmconv.clear_caches()
    old = PLAN_CACHE.max_bytes
    try:
        one = gemmconv.plan(X, W, padding=1)
        assert 4096 <= one.nbytes < 8192  # its own objects (2-3 KiB measured) and a zero bias
        PLAN_CACHE.max_bytes = 3 * one.nbytes
        for pad in range(6):
            gemmconv.conv2d(X, W, padding=pad)
        assert len(PLAN_CACHE) == 3 and PLAN_CACHE.nbytes <= PLAN_CACHE.max_bytes
    finally:
        PLAN_CACHE.max_bytes = old
        gemmconv.clear_caches()
    assert PLAN_CACHE.nbytes == 0


# ---- one plan type for every pass ----

GY = RNG.standard_normal((2, 16, 9, 9)).astype(np.float32)  # dL/dy of conv2d(X, W, padding=1)


def _every_pass_plan(strategy: str) -> dict:
    return {"forward": gemmconv.plan(X, W, B, padding=1, strategy=strategy),
            "grad_input": gemmconv.plan_grad_input(X.shape, W, GY, padding=1, strategy=strategy),
            "grad_weight": gemmconv.plan_grad_weight(X, W.shape, GY, padding=1, strategy=strategy),
            "transpose": gemmconv.plan_conv_transpose2d(GY, W, None, padding=1, strategy=strategy)}


def test_every_pass_is_a_conv_plan_with_one_repr():
    for pass_, p in _every_pass_plan("im2col").items():
        assert type(p) is gemmconv.ConvPlan and p.pass_ == pass_ and p.strategy == "im2col"
        text = repr(p)
        assert text.startswith("ConvPlan(") and "kernels " in text and "workspace " in text
        assert (pass_ in text) == (pass_ != "forward")
    assert gemmconv.PassPlan is gemmconv.ConvPlan  # the old name


def test_a_custom_chooser_picks_for_every_pass():
    asked = []

    def select(backend, a, b, c, spec, limits, runner_for):  # no pass_ keyword: called the same way for every pass
        asked.append((a.shape, b.shape))
        assert callable(runner_for("direct"))
        return "direct"

    def select_told(backend, a, b, c, spec, limits, runner_for, pass_):
        asked.append(pass_)
        return "im2col"

    gemmconv.register_strategy(gemmconv.Strategy("pick_direct", lambda *a: None, select=select))
    gemmconv.register_strategy(gemmconv.Strategy("pick_told", lambda *a: None, select=select_told))
    try:
        for pass_, p in _every_pass_plan("pick_direct").items():
            assert (p.strategy, p.requested) == ("direct", "pick_direct"), pass_
        assert asked == [(X.shape, W.shape), (GY.shape, W.shape), (X.shape, GY.shape), (GY.shape, W.shape)]
        asked.clear()
        assert [p.strategy for p in _every_pass_plan("pick_told").values()] == ["im2col"] * 4
        assert asked == ["forward", "grad_input", "grad_weight", "grad_input"]
        np.testing.assert_allclose(gemmconv.conv2d_grad_weight(X, W.shape, GY, padding=1, strategy="pick_told"),
                                   gemmconv.conv2d_grad_weight(X, W.shape, GY, padding=1, strategy="im2col"))
    finally:
        gemmconv.unregister_strategy("pick_direct")
        gemmconv.unregister_strategy("pick_told")


def test_a_chooser_that_picks_a_strategy_without_the_pass_is_refused():
    gemmconv.register_strategy(gemmconv.Strategy("forward_only", gemmconv.get_strategy("direct").run))
    gemmconv.register_strategy(gemmconv.Strategy("pick_forward_only", lambda *a: None,
                                                 select=lambda *a: "forward_only"))
    try:
        assert gemmconv.plan(X, W, B, padding=1, strategy="pick_forward_only").strategy == "forward_only"
        with pytest.raises(gemmconv.StrategyNotSupportedError, match=r"has no grad_weight pass.*pick_forward_only"):
            gemmconv.plan_grad_weight(X, W.shape, GY, padding=1, strategy="pick_forward_only")
    finally:
        gemmconv.unregister_strategy("pick_forward_only")
        gemmconv.unregister_strategy("forward_only")


def test_one_cache_and_one_set_of_out_rules_for_every_pass():
    gemmconv.clear_caches()
    gemmconv.conv2d(X, W, B, padding=1)
    gemmconv.conv2d_grad_input(X.shape, W, GY, padding=1)
    gemmconv.conv2d_grad_weight(X, W.shape, GY, padding=1)
    gemmconv.conv_transpose2d(GY, W, None, padding=1)
    assert len(PLAN_CACHE) == 4
    gemmconv.clear_caches()
    assert len(PLAN_CACHE) == 0
    for pass_, p in _every_pass_plan("auto").items():
        arrays = {"forward": (X, W, B), "grad_input": (W, GY), "grad_weight": (X, GY), "transpose": (GY, W)}[pass_]
        frozen = np.empty(p.out_shape, np.float32)
        frozen.flags.writeable = False
        with pytest.raises(ValueError, match="out is read-only"):
            p(*arrays, out=frozen)
        with pytest.raises(ValueError, match=r"out must have shape"):
            p(*arrays, out=np.empty((1, *p.out_shape), np.float32))
        first, size = arrays[0], int(np.prod(p.out_shape))
        shared = np.empty(first.size + size, np.float32)  # the first array, then out starting on its last element
        inside = shared[: first.size].reshape(first.shape)
        inside[...] = first
        with pytest.raises(ValueError, match=f"out overlaps {('x', 'w')[pass_ == 'grad_input']}"):
            p(inside, *arrays[1:], out=shared[first.size - 1: first.size - 1 + size].reshape(p.out_shape))
        if pass_ in ("grad_input", "grad_weight"):
            with pytest.raises(TypeError, match=f"this {pass_} plan takes .*got a third array"):
                p(*arrays, arrays[0])
        with pytest.raises(TypeError):
            p(X)


@pytest.mark.parametrize("strategy", ["im2col", "fft"])
@pytest.mark.parametrize("pass_", ["forward", "grad_input", "grad_weight"])
def test_a_padding_modes_copy_counts_against_the_workspace_limit(strategy, pass_):
    """Reflect padding copies the input (or, for grad_input, makes the padded gradient): that copy comes off the
    workspace limit, the plan reports it within the limit, and a limit below the copy is refused naming it."""
    rng = np.random.default_rng(3)
    x, w = rng.standard_normal((2, 4, 24, 24)), rng.standard_normal((4, 4, 5, 5))
    args = dict(padding=2, padding_mode="reflect", strategy=strategy)
    gy = rng.standard_normal((2, 4, 24, 24))
    copy = 2 * 4 * 28 * 28 * 8  # the padded input's bytes

    def plan(limit):
        if pass_ == "forward":
            return gemmconv.plan(x, w, workspace_limit=limit, **args)
        if pass_ == "grad_input":
            return gemmconv.plan_grad_input(x.shape, w, gy, workspace_limit=limit, **args)
        return gemmconv.plan_grad_weight(x, w.shape, gy, workspace_limit=limit, **args)

    whole = plan(None).workspace_bytes
    assert whole > copy
    limit = copy + (whole - copy) // 2
    assert plan(limit).workspace_bytes <= limit
    with pytest.raises(gemmconv.StrategyNotSupportedError, match=rf"'reflect'\) alone needs {copy} bytes"):
        plan(copy - 1)


def test_autotuning_refuses_a_limit_below_a_padding_modes_copy_like_the_rule():
    x, w = np.ones((2, 3, 6, 6), np.float32), np.ones((4, 3, 3, 3), np.float32)
    copy = 2 * 3 * 8 * 8 * 4
    for tuned in (False, True):
        with gemmconv.autotune(tuned), pytest.raises(gemmconv.StrategyNotSupportedError, match=f"alone needs {copy}"):
            gemmconv.conv2d(x, w, padding=1, padding_mode="reflect", workspace_limit=copy - 1)
