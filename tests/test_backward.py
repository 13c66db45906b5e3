"""The backward passes and the transposed convolution against torch autograd in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import accepted_configs
from hypothesis import given, settings
from hypothesis import strategies as st

import gemmconv
from gemmconv.registry import supporting

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


def _scale(a):
    return max(float(np.max(np.abs(a))), 1e-300) if a.size else 1.0


@settings(max_examples=300)
@given(accepted_configs())
def test_gradients_match_torch_autograd(cfg):
    x, w, b, args = cfg
    y = gemmconv.conv2d(x, w, b, **args)
    gy = np.random.default_rng(int(x.size)).uniform(-1, 1, y.shape).astype(x.dtype)
    x4, gy4 = (x, gy) if x.ndim == 4 else (x[None], gy[None])
    if x4.shape[0] == 0 or x4.shape[1] == 0:
        return
    gx_ref, gw_ref = autograd(x4, w, gy4, **args)
    tol = 1e-12 if x.dtype == np.float64 else 2e-5
    for strategy in ("im2col", "auto"):
        gx = gemmconv.conv2d_grad_input(x.shape, w, gy, strategy=strategy, **args)
        gw = gemmconv.conv2d_grad_weight(x, w.shape, gy, strategy=strategy, **args)
        assert gx.shape == x.shape and gx.dtype == x.dtype and gw.shape == w.shape and gw.dtype == w.dtype
        gx4 = gx if x.ndim == 4 else gx[None]
        assert np.max(np.abs(gx4 - gx_ref), initial=0) <= tol * _scale(gx_ref) * (1 + w[0].size), (strategy, args)
        assert np.max(np.abs(gw - gw_ref), initial=0) <= tol * _scale(gw_ref) * (1 + gy4[0, 0].size * x4.shape[0])


@settings(max_examples=200)
@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3), st.integers(1, 3),
       st.integers(0, 2), st.integers(1, 2), st.integers(0, 2), st.integers(0, 2**31))
def test_conv_transpose2d_matches_torch(n, cg_in, cg_out, groups, stride, padding, dilation, op, seed):
    rng = np.random.default_rng(seed)
    output_padding = op % max(stride, dilation)
    x = rng.standard_normal((n, cg_in * groups, 5, 4))
    w = rng.standard_normal((cg_in * groups, cg_out, 3, 2))
    b = rng.standard_normal(cg_out * groups)
    args = dict(stride=stride, padding=padding, output_padding=output_padding, groups=groups, dilation=dilation)
    try:
        ref = F.conv_transpose2d(torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b), **args).numpy()
    except RuntimeError:
        with pytest.raises(ValueError):
            gemmconv.conv_transpose2d(x, w, b, **args)
        return
    y = gemmconv.conv_transpose2d(x, w, b, **args)
    np.testing.assert_allclose(y, ref, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(gemmconv.conv_transpose2d(x[0], w, b, **args), ref[0], rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("strategy", ["direct", "winograd", "winograd_f2", "1x1"])
def test_strategies_without_the_pass_are_refused_naming_those_with_it(strategy):
    x, w = RNG.standard_normal((1, 4, 6, 6)), RNG.standard_normal((4, 4, 3, 3))
    gy = RNG.standard_normal((1, 4, 4, 4))
    for call, name in ((lambda: gemmconv.conv2d_grad_input(x.shape, w, gy, strategy=strategy), "grad_input"),
                       (lambda: gemmconv.conv2d_grad_weight(x, w.shape, gy, strategy=strategy), "grad_weight")):
        with pytest.raises(gemmconv.StrategyNotSupportedError, match=f"has no {name} pass") as info:
            call()
        assert set(info.value.alternatives) == {"im2col", "auto"}


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
    with pytest.raises(TypeError, match="grad_y must have dtype float64"):
        gemmconv.conv2d_grad_weight(x, w.shape, gy.astype(np.float32))
    with pytest.raises(gemmconv.StrategyNotSupportedError, match="do not keep to a workspace_limit"):
        gemmconv.conv2d_grad_input(x.shape, w, gy, strategy="im2col", workspace_limit=1 << 20)
    with pytest.raises(gemmconv.StrategyNotSupportedError, match="no built-in strategy runs the grad_weight pass"):
        gemmconv.conv2d_grad_weight(x, w.shape, gy, workspace_limit=1 << 20)
    with pytest.raises(ValueError, match="output_padding=2 must be smaller than either the stride"):
        gemmconv.conv_transpose2d(gy, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"b must have shape \(4,\)"):
        gemmconv.conv_transpose2d(gy, w, np.ones(5))


def test_inputs_are_not_modified_and_results_are_fresh():
    x, w = RNG.standard_normal((2, 4, 6, 6)), RNG.standard_normal((5, 4, 3, 3))
    gy = RNG.standard_normal((2, 5, 6, 6))
    copies = [a.copy() for a in (x, w, gy)]
    gx = gemmconv.conv2d_grad_input(x.shape, w, gy, padding=1, padding_mode="reflect")
    gw = gemmconv.conv2d_grad_weight(x, w.shape, gy, padding=1, padding_mode="circular")
    for a, c in zip((x, w, gy), copies, strict=True):
        np.testing.assert_array_equal(a, c)
    assert not any(np.shares_memory(r, a) for r in (gx, gw) for a in (x, w, gy))
    out = np.empty_like(gw)
    assert gemmconv.conv2d_grad_weight(x, w.shape, gy, padding=1, out=out) is out


def test_the_bias_gradient_is_a_sum_and_zero_sizes_work():
    gy = RNG.standard_normal((2, 5, 4, 4))
    assert gemmconv.conv2d_grad_weight(np.zeros((0, 4, 6, 6)), (5, 4, 3, 3), np.zeros((0, 5, 4, 4))).shape == \
        (5, 4, 3, 3)
    assert not gemmconv.conv2d_grad_input((2, 0, 6, 6), np.zeros((5, 0, 3, 3)), gy).any()
    assert "im2col" in supporting(gemmconv.plan(np.zeros((1, 4, 6, 6)), np.zeros((5, 4, 3, 3))).spec,
                                  pass_="grad_input")
