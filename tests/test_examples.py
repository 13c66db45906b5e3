"""The worked examples of the specification, exact, for every strategy that can run them."""

from __future__ import annotations

import numpy as np
import pytest

import gemmconv

X = np.array([[[0, 1, 2], [3, 4, 5], [6, 7, 8]], [[1, 2, 3], [4, 5, 6], [7, 8, 9]]], dtype=np.float64)
K = np.array([[[0, 1], [2, 3]], [[1, 2], [3, 4]]], dtype=np.float64)
CONCRETE = ["direct", "im2col", "auto"]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("strategy", CONCRETE)
def test_two_input_channels(strategy, dtype):
    y = gemmconv.conv2d(X.astype(dtype), K[None].astype(dtype), strategy=strategy)
    np.testing.assert_array_equal(y, [[[56, 72], [104, 120]]])
    assert y.dtype == dtype and y.shape == (1, 2, 2)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("strategy", CONCRETE)
def test_three_output_channels(strategy, dtype):
    w = np.stack([K, K + 1, K + 2]).astype(dtype)
    y = gemmconv.conv2d(X.astype(dtype), w, strategy=strategy)
    np.testing.assert_array_equal(
        y, [[[56, 72], [104, 120]], [[76, 100], [148, 172]], [[96, 128], [192, 224]]]
    )


def test_batched_example_equals_unbatched():
    w = np.stack([K, K + 1, K + 2])
    y = gemmconv.conv2d(np.stack([X, 2 * X]), w)
    np.testing.assert_array_equal(y[0], gemmconv.conv2d(X, w))
    np.testing.assert_array_equal(y[1], 2 * y[0])


@pytest.mark.parametrize("strategy", ["1x1", "im2col", "direct", "auto"])
def test_1x1_kernel_is_reshape_matmul(strategy):
    rng = np.random.default_rng(0)
    x = rng.integers(-4, 5, (2, 5, 4, 3)).astype(np.float64)
    w = rng.integers(-4, 5, (7, 5, 1, 1)).astype(np.float64)
    expected = (w.reshape(7, 5) @ x.reshape(2, 5, 12)).reshape(2, 7, 4, 3)  # (K, C) @ (N, C, H·W)
    np.testing.assert_array_equal(gemmconv.conv2d(x, w, strategy=strategy), expected)


@pytest.mark.parametrize("strategy", ["winograd", "winograd_f2"])
def test_winograd_exact_on_small_integers(strategy):
    # Winograd's transforms have fractions (1/6, 1/24), so only near-exact: within a few ulps of float64.
    rng = np.random.default_rng(1)
    x = rng.integers(-3, 4, (1, 2, 9, 9)).astype(np.float64)
    w = rng.integers(-3, 4, (3, 2, 3, 3)).astype(np.float64)
    y = gemmconv.conv2d(x, w, padding=1, strategy=strategy)
    np.testing.assert_allclose(y, gemmconv.conv2d(x, w, padding=1, strategy="direct"), rtol=0, atol=1e-12)
