"""The spec is D-dimensional: validation, output sizes, the polyphase split and explicit padding hold for 1-D
and 3-D specs too, against torch's conv1d / conv3d in float64; a strategy declares the D it runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import gemmconv
from gemmconv.backends import get_backend
from gemmconv.core.args import ConvArgs
from gemmconv.core.registry import supporting
from gemmconv.planning.validate import validate
from gemmconv.strategies import adjoint

TORCH_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


@st.composite
def layers(draw, ndim):
    """x and w shapes and keyword arguments of one ``ndim``-D convolution torch accepts."""
    n, g = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    c, k = g * draw(st.integers(1, 2)), g * draw(st.integers(1, 2))
    kernel = tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    dilation = tuple(draw(st.integers(1, 2)) for _ in range(ndim))
    same = draw(st.booleans())
    stride = (1,) * ndim if same else tuple(draw(st.integers(1, 3)) for _ in range(ndim))
    padding = "same" if same else tuple(draw(st.integers(0, 2)) for _ in range(ndim))
    reach = [(r - 1) * d + 1 for r, d in zip(kernel, dilation, strict=True)]
    size = tuple(draw(st.integers(e, e + 5)) for e in reach)
    return (n, c, *size), (k, c // g, *kernel), dict(stride=stride, padding=padding, dilation=dilation, groups=g)


@pytest.mark.parametrize("ndim", [1, 2, 3])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_the_spec_of_every_d_gives_torchs_output_shape(ndim, data):
    x_shape, w_shape, args = data.draw(layers(ndim))
    x, w = np.zeros(x_shape), np.zeros(w_shape)
    spec = validate(x, w, None, ConvArgs(**args), ndim=ndim).spec
    y = TORCH_CONV[ndim](torch.from_numpy(x), torch.from_numpy(w), **args)
    assert spec.ndim == ndim and spec.out_shape == tuple(y.shape)
    assert spec.in_shape == x_shape and spec.weight_shape == w_shape
    assert spec.flops == 2 * y.numel() * w[0].size


def test_messages_name_the_dimensions():
    x, w = np.zeros((1, 2, 6, 6, 6)), np.zeros((2, 2, 3, 3, 3))
    with pytest.raises(TypeError, match="stride must be an int or a triple of ints"):
        validate(x, w, None, ConvArgs(stride="2"), ndim=3)
    with pytest.raises(ValueError, match=r"stride must be an int or a triple of ints, got \(1, 2\) of length 2"):
        validate(x, w, None, ConvArgs(stride=(1, 2)), ndim=3)
    with pytest.raises(ValueError, match=r"w must be 5-D"):
        validate(x, w[..., 0], None, ConvArgs(), ndim=3)
    with pytest.raises(ValueError, match=r"kernel \(3x3x9.*larger than the padded input \(6x6x6.*per axis"):
        validate(x, np.zeros((2, 2, 3, 3, 9)), None, ConvArgs(), ndim=3)


@pytest.mark.parametrize("ndim", [1, 3])
def test_a_strategy_declares_its_dimensions_and_2d_names_are_refused(ndim):
    """A strategy registered without ``dims`` runs 2-D only and refuses other specs before its predicate is asked;
    the built-ins run every D; a spec of another D has no 2-D names."""
    x, w = np.zeros((1, 2, *(5,) * ndim)), np.zeros((2, 2, *(3,) * ndim))
    spec = validate(x, w, None, ConvArgs(padding=1), ndim=ndim).spec
    asked = []
    mine = gemmconv.Strategy("two_d_only", lambda *a: None, supports=asked.append)
    assert mine.refusal(spec) == f"runs 2-D convolutions, not {ndim}-D ones" and not asked
    assert {"direct", "im2col", "auto"} <= set(supporting(spec, get_backend(x)))
    with pytest.raises(AttributeError, match=f"a {ndim}-D convolution has no 2-D sizes.*read size, kernel"):
        _ = spec.kh


@pytest.mark.parametrize("ndim", [1, 3])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_the_polyphase_split_covers_what_torchs_gradient_reaches(ndim, data):
    """Each input position is in at most one phase of the stride, every phase is a stride-1 convolution, and
    the positions in none get no gradient from torch either."""
    x_shape, w_shape, args = data.draw(layers(ndim))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**31)))
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    spec = validate(x, w, None, ConvArgs(**args), ndim=ndim).spec
    seen = np.zeros(spec.size, int)
    for p in adjoint.phases(spec):
        seen[p.positions(spec)[2:]] += 1
        assert p.spec.stride == (1,) * ndim and p.spec.ndim == ndim
    assert seen.max() <= 1
    xt = torch.from_numpy(x).requires_grad_()
    TORCH_CONV[ndim](xt, torch.from_numpy(w), **args).sum().backward()
    assert not xt.grad.numpy()[..., seen == 0].any()


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_explicit_padding_and_its_adjoint_in_3d_match_torch(mode):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 2, 4, 5, 6))
    w = np.zeros((1, 2, 1, 1, 1))
    spec = validate(x, w, None, ConvArgs(padding=(1, 2, 3), padding_mode=mode), ndim=3).spec
    assert spec.padding == ((1, 1), (2, 2), (3, 3))
    backend = get_backend(x)
    xt = torch.from_numpy(x).requires_grad_()
    padded = F.pad(xt, (3, 3, 2, 2, 1, 1), mode=mode)  # torch lists the last axis first
    np.testing.assert_array_equal(backend.pad(x, spec), padded.detach().numpy())
    g = rng.standard_normal(padded.shape)
    padded.backward(torch.from_numpy(g))
    np.testing.assert_allclose(backend.pad_adjoint(g, spec), xt.grad.numpy(), rtol=1e-12, atol=1e-12)
