"""Bad input gets a TypeError/ValueError that names the argument and the value, never a crash."""

from __future__ import annotations

import re

import numpy as np
import pytest

import gemmconv

X = np.ones((2, 4, 8, 8), dtype=np.float32)
W = np.ones((6, 4, 3, 3), dtype=np.float32)
B = np.ones(6, dtype=np.float32)


def call(x=X, w=W, b=None, **kw):
    return gemmconv.conv2d(x, w, b, **kw)


@pytest.mark.parametrize(
    "kwargs, exc, pattern",
    [
        (dict(x=np.ones((4, 8)), w=np.ones((6, 4, 3, 3))), ValueError,
         r"x must be 3-D or 4-D, got ndarray of shape \(4, 8\)"),
        (dict(x=np.ones((1, 2, 4, 8, 8), np.float32)), ValueError, r"x must be 3-D or 4-D"),
        (dict(w=np.ones((6, 4, 3), np.float32)), ValueError, r"w must be 4-D, got .*\(6, 4, 3\)"),
        (dict(w=np.ones((6, 3, 3, 3), np.float32)), ValueError,
         r"w\.shape\[1\] must be in_channels / groups = 4 / 1 = 4"),
        (dict(groups=3), ValueError, r"groups=3 must divide the 4 input channels"),
        (dict(w=np.ones((5, 2, 3, 3), np.float32), groups=2), ValueError, r"groups=2 must divide the 5 output"),
        (dict(groups=0), ValueError, r"groups must be >= 1, got 0"),
        (dict(groups=1.5), TypeError, r"groups must be an int.*1\.5"),
        (dict(groups=True), TypeError, r"groups must be an int.*bool True"),
        (dict(stride=0), ValueError, r"stride must be >= 1, got 0"),
        (dict(stride=(1, 0)), ValueError, r"stride must be >= 1, got 0"),
        (dict(stride=(1, 2, 3)), ValueError, r"stride must be an int or a pair.*length 3"),
        (dict(stride="2"), TypeError, r"stride must be an int or a pair of ints, got '2'"),
        (dict(dilation=0), ValueError, r"dilation must be >= 1, got 0"),
        (dict(dilation=-1), ValueError, r"dilation must be >= 1, got -1"),
        (dict(padding=-1), ValueError, r"padding must be >= 0, got -1"),
        (dict(padding=(0, -2)), ValueError, r"padding must be >= 0, got -2"),
        (dict(padding="full"), ValueError, r"padding must be .*'valid' or 'same', got 'full'"),
        (dict(padding="same", stride=2), ValueError, r"padding='same' is not supported for strided.*\(2, 2\)"),
        (dict(w=np.ones((6, 4, 9, 9), np.float32)), ValueError, r"kernel \(9x9.*larger than the padded input \(8x8"),
        (dict(w=np.ones((6, 4, 3, 3), np.float32), dilation=4), ValueError, r"9x9 effective.*larger"),
        (dict(x=X.astype(np.int32), w=W.astype(np.int32)), TypeError, r"x has integer dtype int32.*astype"),
        (dict(x=X.astype(bool), w=W.astype(bool)), TypeError, r"x has bool dtype"),
        (dict(x=X.astype(np.complex64)), ValueError, r"w has dtype float32 and x complex64: real and complex"),
        (dict(w=W.astype(np.complex128)), ValueError, r"w has dtype complex128 and x float32: real and complex"),
        (dict(b=np.ones(6, np.complex64)), ValueError, r"b has dtype complex64 and x float32: real and complex"),
        (dict(x=X.astype(np.complex64), w=W.astype(np.complex128)), TypeError, r"same dtype, got x complex64"),
        (dict(x=X.astype(np.complex64), w=W.astype(np.complex64), b=np.ones(6, np.float32)), ValueError,
         r"b has dtype float32 and x complex64"),
        (dict(x=X.astype(np.float16), w=W.astype(np.float16)), TypeError, r"dtype float16.*numpy backend.*float32"),
        (dict(w=W.astype(np.float64)), TypeError, r"same dtype, got x float32 and w float64"),
        (dict(w=W.astype(np.int64)), TypeError, r"w has integer dtype int64"),
        (dict(b=np.ones(6, np.float64)), TypeError, r"b must have the dtype of x \(float32\), got float64"),
        (dict(b=np.ones(5, np.float32)), ValueError, r"b must have shape \(6,\).*got shape \(5,\)"),
        (dict(b=np.ones((6, 1), np.float32)), ValueError, r"b must be 1-D, got .*\(6, 1\)"),
        (dict(padding_mode="mirror", padding=1), ValueError, r"padding_mode must be one of .*got 'mirror'"),
        (dict(padding_mode=None), ValueError, r"padding_mode must be one of .*got None"),
        (dict(padding=8, padding_mode="reflect"), ValueError, r"reflect.*smaller than the input.*8x8"),
        (dict(padding=9, padding_mode="circular"), ValueError, r"circular.*more than once"),
        (dict(x=[[[[1.0]]]]), TypeError, r"x must be an array.*got list.*numpy\.asarray"),
        (dict(w=3.0), TypeError, r"w must be an array.*got float"),
        (dict(b=[1.0] * 6), TypeError, r"b must be an array.*got list"),
        (dict(w=np.ones((0, 4, 3, 3), np.float32)), ValueError, r"at least one output channel"),
        (dict(strategy="fourier"), ValueError, r"unknown strategy='fourier'; registered strategies: direct, im2col"),
        (dict(strategy=None), TypeError, r"strategy must be a str, got None"),
    ],
)
def test_bad_input(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern) as info:
        call(**kwargs)
    assert type(info.value) is exc  # not a subclass from deep inside a kernel


def test_torch_tensor_is_a_clear_type_error():
    import torch

    with pytest.raises(TypeError, match=r"x is a torch\.Tensor.*x\.numpy\(\)"):
        gemmconv.conv2d(torch.ones(1, 1, 3, 3), np.ones((1, 1, 1, 1)))


@pytest.mark.parametrize(
    "strategy, w, kwargs, reason",
    [
        ("winograd", np.ones((6, 4, 5, 5), np.float32), {}, "needs a 3x3 kernel, got 5x5"),
        ("winograd_f2", W, dict(stride=2), "needs stride 1, got stride (2, 2)"),
        ("winograd", W, dict(dilation=(1, 2)), "needs dilation 1, got dilation (1, 2)"),
        ("1x1", W, {}, "needs a 1x1 kernel, got 3x3"),
    ],
)
def test_explicit_strategy_never_falls_back(strategy, w, kwargs, reason):
    with pytest.raises(gemmconv.StrategyNotSupportedError) as info:
        gemmconv.conv2d(X, w, strategy=strategy, **kwargs)
    err = info.value
    assert isinstance(err, ValueError)
    msg = str(err)
    assert f"strategy={strategy!r} cannot run" in msg and reason in msg
    assert "received kernel" in msg and "x (2, 4, 8, 8)" in msg
    assert err.reason.startswith(reason) and err.strategy == strategy
    assert "direct" in err.alternatives and "im2col" in err.alternatives and "auto" in err.alternatives
    assert re.search(r"Strategies that can run it: direct, im2col.*auto\.", msg)


def test_library_has_no_assert_on_user_input():
    import pathlib

    root = pathlib.Path(gemmconv.__file__).parent
    offenders = [
        f"{p.name}:{i}"
        for p in root.rglob("*.py")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if line.lstrip().startswith("assert ")
    ]
    assert offenders == []


@pytest.mark.parametrize("which", ["x", "w", "b"])
def test_masked_arrays_are_refused_not_their_mask_ignored(which):
    arrays = {"x": np.ones((1, 2, 5, 5)), "w": np.ones((3, 2, 3, 3)), "b": np.zeros(3)}
    arrays[which] = np.ma.masked_array(arrays[which], mask=np.zeros(arrays[which].shape, bool))
    with pytest.raises(TypeError, match=rf"^{which} is a masked array.*{which}\.filled\(0\)"):
        gemmconv.conv2d(arrays["x"], arrays["w"], arrays["b"])
