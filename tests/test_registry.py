"""The strategy registry: listing, registering, the auto rule."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from helpers import torch_conv

import gemmconv
from gemmconv.core.args import ConvArgs
from gemmconv.core.registry import missing_kernels, supporting
from gemmconv.planning.validate import validate
from gemmconv.strategies.auto import choose


def test_list_strategies():
    assert gemmconv.list_strategies() == ["direct", "im2col", "winograd", "winograd_f2", "1x1", "fft", "auto"]


def test_third_party_strategy_round_trip():
    calls = []

    def run(backend, x, w, b, spec):
        calls.append(spec)
        return gemmconv.get_strategy("direct").run(backend, x, w, b, spec)

    def supports(spec):
        return None if spec.groups == 1 else "only groups=1"

    s = gemmconv.register_strategy(gemmconv.Strategy("mine", run, supports, "a test strategy"))
    try:
        assert "mine" in gemmconv.list_strategies()
        x, w = np.ones((1, 2, 5, 5)), np.ones((2, 2, 3, 3))
        np.testing.assert_array_equal(gemmconv.conv2d(x, w, strategy="mine"), torch_conv(x, w, None))
        assert len(calls) == 1 and calls[0].kh == 3
        with pytest.raises(gemmconv.StrategyNotSupportedError, match="only groups=1"):
            gemmconv.conv2d(x, np.ones((2, 1, 3, 3)), groups=2, strategy="mine")
        with pytest.raises(ValueError, match="already registered"):
            gemmconv.register_strategy(s)
        # a strategy declaring no backward pass is refused for one, naming those that have it
        gy = np.ones((1, 2, 3, 3))
        with pytest.raises(gemmconv.StrategyNotSupportedError, match="has no grad_weight pass") as info:
            gemmconv.conv2d_grad_weight(x, w.shape, gy, strategy="mine")
        assert "mine" not in info.value.alternatives and "im2col" in info.value.alternatives
    finally:
        gemmconv.unregister_strategy("mine")
    assert "mine" not in gemmconv.list_strategies()


def test_strategy_without_zero_padding_support_gets_padded_input():
    seen = []

    def run(backend, x, w, b, spec):
        seen.append((x.shape, spec.padded))
        return backend.direct(x, w, b, spec)

    gemmconv.register_strategy(gemmconv.Strategy("nopad", run, pads_zeros=False))
    try:
        x, w = np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3))
        y = gemmconv.conv2d(x, w, padding=(1, 2), strategy="nopad")
        np.testing.assert_array_equal(y, torch_conv(x, w, None, padding=(1, 2)))
        assert seen == [((1, 1, 6, 8), False)]
    finally:
        gemmconv.unregister_strategy("nopad")


@pytest.mark.parametrize("bad", [object(), "direct", None])
def test_register_rejects_non_strategies(bad):
    with pytest.raises(TypeError, match=r"must be a gemmconv\.Strategy"):
        gemmconv.register_strategy(bad)


def test_register_rejects_empty_name():
    with pytest.raises(ValueError, match="non-empty string name"):
        gemmconv.register_strategy(gemmconv.Strategy("", lambda *a: None))


def test_unregister_unknown():
    with pytest.raises(ValueError, match="no strategy named 'nope'"):
        gemmconv.unregister_strategy("nope")


def _spec(x_shape, w_shape, **kw):
    x, w = np.empty(x_shape, np.float32), np.empty(w_shape, np.float32)
    args = dict(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros")
    args.update(kw)
    return validate(x, w, None, ConvArgs(**args)).spec


@pytest.mark.parametrize(
    "x_shape, w_shape, kw, expected",
    [
        ((1, 256, 56, 56), (64, 256, 1, 1), {}, "1x1"),
        ((1, 64, 56, 56), (128, 64, 1, 1), dict(stride=2), "1x1"),
        ((1, 128, 56, 56), (128, 1, 3, 3), dict(groups=128, padding=1), "direct"),
        ((1, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), "winograd"),
        ((1, 256, 14, 14), (256, 256, 3, 3), dict(padding=1), "winograd"),  # 16 tiles: enough
        ((1, 256, 12, 12), (256, 256, 3, 3), dict(padding=1), "im2col"),  # 9 tiles: too few
        ((8, 256, 14, 14), (256, 256, 3, 3), dict(padding=1), "winograd"),
        ((2, 12, 9, 9), (8, 3, 3, 3), dict(groups=4), "direct"),
        ((2, 20, 9, 9), (8, 5, 3, 3), dict(groups=4), "direct"),  # 117 kFLOP: small
        ((8, 20, 16, 16), (8, 5, 3, 3), dict(groups=4), "im2col"),
        ((1, 8, 8, 8), (8, 8, 3, 3), dict(padding=1), "direct"),  # 74 kFLOP: the per-call cost decides
        ((1, 512, 7, 7), (512, 512, 3, 3), dict(padding=1), "im2col"),
        ((1, 64, 56, 56), (128, 64, 3, 3), dict(stride=2, padding=1), "im2col"),
        ((1, 3, 224, 224), (64, 3, 7, 7), dict(stride=2, padding=3), "im2col"),
        ((1, 8, 32, 32), (8, 8, 3, 3), dict(padding=1), "im2col"),  # 1.2 MFLOP
    ],
)
def test_auto_rule(x_shape, w_shape, kw, expected):
    spec = _spec(x_shape, w_shape, **kw)
    assert choose(spec) == expected
    assert gemmconv.get_strategy(expected).supports(spec) is None


def test_choose_strategy_public_and_validated():
    x, w = np.ones((1, 64, 32, 32), np.float32), np.ones((64, 64, 3, 3), np.float32)
    assert gemmconv.choose_strategy(x, w, padding=1) == "winograd"  # 8·8 = 64 output tiles
    assert gemmconv.choose_strategy(x, w[:, :, :1, :1]) == "1x1"
    assert gemmconv.choose_strategy(x[:, :, :8, :8], w, padding=1) == "im2col"  # 4 tiles
    with pytest.raises(TypeError, match=r"unexpected keyword argument.*strategy"):
        gemmconv.choose_strategy(x, w, strategy="direct")
    with pytest.raises(ValueError, match="stride must be >= 1"):
        gemmconv.choose_strategy(x, w, stride=0)


def test_every_strategy_has_a_description():
    for name in gemmconv.list_strategies():
        assert gemmconv.get_strategy(name).description


def test_predicates_get_the_limits_beside_the_spec():
    seen = []

    def two(spec, limits):
        seen.append(limits.workspace)
        return None if limits.workspace is None else "runs only without a workspace limit"

    run = gemmconv.get_strategy("im2col").run
    gemmconv.register_strategy(gemmconv.Strategy("limited_aware", run, supports=two))
    gemmconv.register_strategy(gemmconv.Strategy("spec_only", run, supports=lambda spec: None))
    try:
        x, w = np.ones((1, 2, 6, 6)), np.ones((3, 2, 3, 3))
        assert gemmconv.conv2d(x, w, strategy="limited_aware").shape == (1, 3, 4, 4)
        with pytest.raises(gemmconv.StrategyNotSupportedError, match="runs only without a workspace limit"):
            gemmconv.conv2d(x, w, strategy="limited_aware", workspace_limit=1 << 20)
        assert seen[:2] == [None, 1 << 20]  # (the alternatives in the message ask it again)
        assert gemmconv.conv2d(x, w, strategy="spec_only", workspace_limit=1 << 20).shape == (1, 3, 4, 4)
        assert "workspace_limit" not in {f.name for f in dataclasses.fields(gemmconv.ConvSpec)}
    finally:
        gemmconv.unregister_strategy("limited_aware")
        gemmconv.unregister_strategy("spec_only")


def test_a_backend_without_a_kernel_family_refuses_the_strategies_that_need_it():
    from gemmconv.backends.kernels import DirectKernels, Im2colKernels

    class NoWinograd(Im2colKernels, DirectKernels):  # provides im2col and direct kernels, not Winograd's
        name = "fake"
        xp = np
        owns = im2col = direct = None

    fake = NoWinograd()
    numpy_backend = gemmconv.get_backend(np.zeros(1))
    assert numpy_backend.provides("winograd") and numpy_backend.provides("im2col")
    assert fake.provides("im2col") and fake.provides("direct") and not fake.provides("winograd")
    assert missing_kernels(gemmconv.get_strategy("winograd"), numpy_backend) is None
    assert missing_kernels(gemmconv.get_strategy("winograd"), fake) == "the fake backend provides no winograd kernels"
    assert missing_kernels(gemmconv.get_strategy("im2col"), fake) is None
    spec = _spec((1, 16, 8, 8), (16, 16, 3, 3), padding=1)
    assert "winograd" not in supporting(spec, fake) and "winograd" in supporting(spec)
