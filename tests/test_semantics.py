"""Behaviour users rely on beyond the numbers: shapes, dtypes, no mutation, NaN/Inf, layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import torch_conv

import gemmconv
from gemmconv.core.args import ConvArgs
from gemmconv.planning.validate import validate
from gemmconv.strategies import im2col

STRATEGIES = ["direct", "im2col", "winograd", "winograd_f2", "1x1", "auto"]


def _kernel_for(strategy):
    return 1 if strategy == "1x1" else 3


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_inputs_are_not_modified(strategy):
    rng = np.random.default_rng(0)
    kk = _kernel_for(strategy)
    x = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
    w = rng.standard_normal((6, 4, kk, kk)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    copies = [a.copy() for a in (x, w, b)]
    for arr in (x, w, b):
        arr.flags.writeable = False  # a write would raise
    for mode in ("zeros", "reflect"):
        gemmconv.conv2d(x, w, b, padding=1, padding_mode=mode, strategy=strategy)
    for a, c in zip((x, w, b), copies, strict=False):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_unbatched_input_gives_unbatched_output(strategy):
    rng = np.random.default_rng(1)
    kk = _kernel_for(strategy)
    x = rng.standard_normal((3, 8, 8))
    w = rng.standard_normal((5, 3, kk, kk))
    y = gemmconv.conv2d(x, w, strategy=strategy)
    assert y.shape == (5, 9 - kk, 9 - kk)
    np.testing.assert_allclose(y, gemmconv.conv2d(x[None], w, strategy=strategy)[0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("padding_mode", ["zeros", "circular"])
def test_zero_size_batch(strategy, padding_mode):
    kk = _kernel_for(strategy)
    x = np.zeros((0, 4, 7, 6), dtype=np.float32)
    w = np.ones((8, 2, kk, kk), dtype=np.float32)
    y = gemmconv.conv2d(x, w, np.ones(8, np.float32), padding=1, groups=2, padding_mode=padding_mode,
                        strategy=strategy)
    assert y.shape == (0, 8, 10 - kk, 9 - kk) and y.dtype == np.float32 and isinstance(y, np.ndarray)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_non_contiguous_and_fortran_inputs(strategy):
    rng = np.random.default_rng(2)
    kk = _kernel_for(strategy)
    base = rng.standard_normal((2, 6, 20, 20))
    x = base[:, ::2, 1::2, ::-1]  # strided, negative stride
    w = np.asfortranarray(rng.standard_normal((4, 3, kk, kk)))
    y = gemmconv.conv2d(x, w, padding=1, strategy=strategy)
    np.testing.assert_allclose(y, torch_conv(x.copy(), w, None, padding=1), rtol=1e-10, atol=1e-12)


def test_big_endian_input_is_accepted():
    x = np.arange(2 * 16, dtype=">f8").reshape(1, 2, 4, 4)
    w = np.ones((1, 2, 3, 3), dtype=">f8")
    y = gemmconv.conv2d(x, w, strategy="direct")
    np.testing.assert_array_equal(y, torch_conv(x.astype("<f8"), w.astype("<f8"), None))


@pytest.mark.parametrize("strategy", ["direct", "im2col", "1x1"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_inf_propagate_like_torch(strategy, bad):
    rng = np.random.default_rng(3)
    kk = _kernel_for(strategy)
    x = rng.standard_normal((1, 2, 8, 8))
    x[0, 1, 3, 4] = bad
    x[0, 0, 0, 0] = bad
    w = rng.standard_normal((3, 2, kk, kk))
    y = gemmconv.conv2d(x, w, padding=1, strategy=strategy)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ref))
    np.testing.assert_array_equal(np.isposinf(y), np.isposinf(ref))
    np.testing.assert_array_equal(np.isneginf(y), np.isneginf(ref))
    finite = np.isfinite(ref)
    np.testing.assert_allclose(y[finite], ref[finite], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("strategy", ["winograd", "winograd_f2"])
def test_nan_reaches_every_output_it_touches_in_winograd(strategy):
    """Winograd mixes a whole input tile, so a NaN spreads to its tile's outputs: a superset of torch's."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 2, 12, 12))
    x[0, 1, 5, 6] = np.nan
    w = rng.standard_normal((3, 2, 3, 3))
    y = gemmconv.conv2d(x, w, padding=1, strategy=strategy)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1).numpy()
    assert np.isnan(y[np.isnan(ref)]).all()
    assert not np.isnan(y).all()


@pytest.mark.parametrize("padding", ["same", "valid", (2, 0), 3])
@pytest.mark.parametrize("kernel", [(2, 2), (4, 3), (3, 5)])
@pytest.mark.parametrize("dilation", [1, (2, 1)])
def test_padding_strings_match_torch(padding, kernel, dilation):
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 2, 11, 10))
    w = rng.standard_normal((3, 2, *kernel))
    y = gemmconv.conv2d(x, w, padding=padding, dilation=dilation)
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=padding, dilation=dilation).numpy()
    assert y.shape == ref.shape
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_result_is_a_fresh_array():
    x = np.ones((1, 4, 5, 5))
    w = np.ones((4, 4, 1, 1))
    y = gemmconv.conv2d(x, w, strategy="1x1")
    assert not np.shares_memory(y, x) and not np.shares_memory(y, w)


def test_depthwise():
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 8, 10, 10)).astype(np.float32)
    w = rng.standard_normal((16, 1, 3, 3)).astype(np.float32)  # depth multiplier 2
    for strategy in [*STRATEGIES[:-2], "auto"]:
        y = gemmconv.conv2d(x, w, padding=1, groups=8, strategy=strategy)
        np.testing.assert_allclose(y, torch_conv(x, w, None, padding=1, groups=8), rtol=1e-4, atol=1e-5)
    assert gemmconv.choose_strategy(x, w, padding=1, groups=8) == "direct"


def test_concurrent_calls_from_threads():
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 8, 12, 12)).astype(np.float32)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    expected = {s: gemmconv.conv2d(x, w, padding=1, strategy=s) for s in STRATEGIES if s != "1x1"}

    def job(i):
        s = list(expected)[i % len(expected)]
        return s, gemmconv.conv2d(x, w, padding=1, strategy=s)

    with ThreadPoolExecutor(4) as pool:
        for s, y in pool.map(job, range(40)):
            np.testing.assert_array_equal(y, expected[s])


@pytest.mark.parametrize("limit", ["least", 60_000, 10**9])
@pytest.mark.parametrize(
    "shape, args",
    [
        ((3, 4, 20, 17, 6, 3), dict(padding=1)),
        ((2, 6, 23, 19, 4, 5), dict(stride=2, padding=2, dilation=2, groups=2)),
        ((1, 8, 30, 30, 8, 3), dict(stride=3, groups=4)),
        ((2, 3, 12, 12, 5, 3), dict(padding=2, padding_mode="reflect")),
    ],
)
def test_im2col_workspace_limit_gives_the_same_result(shape, args, limit):
    rng = np.random.default_rng(8)
    n, c, h, w, k, kk = shape
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((k, c // args.get("groups", 1), kk, kk))
    b = rng.standard_normal(k)
    if limit == "least":  # the smallest limit im2col keeps to; one byte less is refused, naming it
        spec = validate(x, wt, b, ConvArgs(**args, workspace_limit=1)).spec
        least = im2col.min_workspace(spec)
        copy = spec.padded_bytes if spec.pads_explicitly(True) else 0  # a padding mode's copy of the input counts
        limit = least + copy
        named = f"below the {least} bytes .* >= {least}" + (f".* less the {copy} bytes of the input" if copy else "")
        with pytest.raises(gemmconv.StrategyNotSupportedError, match=named):
            gemmconv.conv2d(x, wt, b, strategy="im2col", workspace_limit=limit - 1, **args)
    y = gemmconv.conv2d(x, wt, b, strategy="im2col", workspace_limit=limit, **args)
    np.testing.assert_allclose(y, torch_conv(x, wt, b, **args), rtol=1e-10, atol=1e-10)


def test_im2col_workspace_limit_bounds_the_peak():
    rng = np.random.default_rng(9)
    x = rng.standard_normal((2, 16, 40, 40)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    backend = gemmconv.get_backend(x)
    run = lambda limit: gemmconv.conv2d(x, w, padding=1, strategy="im2col", workspace_limit=limit)  # noqa: E731
    y_full, peak_full = backend.profiler.peak_memory(lambda: run(None))
    limit = 256 * 1024
    y, peak = backend.profiler.peak_memory(lambda: run(limit))
    assert peak_full > 4 * limit  # the unbounded column matrices: 2·144·1600·4 bytes
    assert peak <= limit
    # two float32 summation orders of 144 products (the blocks' GEMMs are shaped differently): agree to a few
    # units of float32 rounding of the largest output, not of each output
    np.testing.assert_allclose(y, y_full, rtol=0, atol=1e-6 * float(np.abs(y_full).max()) * 144 ** 0.5)


def test_workspace_limit_is_validated_and_steers_auto():
    x, w = np.ones((1, 64, 32, 32), np.float32), np.ones((64, 64, 3, 3), np.float32)
    with pytest.raises(ValueError, match="workspace_limit must be >= 1, got 0"):
        gemmconv.conv2d(x, w, workspace_limit=0)
    with pytest.raises(TypeError, match=r"workspace_limit must be an int, got 1\.5"):
        gemmconv.conv2d(x, w, workspace_limit=1.5)
    assert gemmconv.choose_strategy(x, w, padding=1) == "winograd"
    assert gemmconv.choose_strategy(x, w, padding=1, workspace_limit=2**20) == "im2col"
