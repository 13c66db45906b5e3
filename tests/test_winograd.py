"""Winograd transforms and the filter-transform cache."""

from __future__ import annotations

import numpy as np
import pytest

import gemmconv
from gemmconv.strategies.winograd import FILTER_CACHE
from gemmconv.strategies.winograd_transforms import TRANSFORMS


@pytest.mark.parametrize("m", [2, 4])
def test_one_dimensional_identity(m):
    """A^T [(G g) ⊙ (B^T d)] equals the correlation of d with g, for any d and g."""
    rng = np.random.default_rng(m)
    mats = TRANSFORMS[m]
    for _ in range(20):
        d, g = rng.standard_normal(m + 2), rng.standard_normal(3)
        y = mats["at"] @ ((mats["g"] @ g) * (mats["bt"] @ d))
        np.testing.assert_allclose(y, np.correlate(d, g, mode="valid"), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("strategy", ["winograd", "winograd_f2"])
def test_changed_weights_are_never_served_a_stale_transform(strategy):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 10, 10)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    FILTER_CACHE.clear()
    y1 = gemmconv.conv2d(x, w, padding=1, strategy=strategy)
    misses = FILTER_CACHE.misses
    np.testing.assert_array_equal(gemmconv.conv2d(x, w, padding=1, strategy=strategy), y1)
    assert FILTER_CACHE.misses == misses  # a hit
    w[0, 0, 1, 1] += 1.0  # in place: same buffer, same shape
    y2 = gemmconv.conv2d(x, w, padding=1, strategy=strategy)
    np.testing.assert_allclose(y2, gemmconv.conv2d(x, w, padding=1, strategy="direct"), rtol=1e-4, atol=1e-4)
    assert FILTER_CACHE.misses == misses + 1
    assert not np.allclose(y1, y2)


@pytest.mark.parametrize("k", [3, 250])  # in the first and in the last worker's slice
def test_changed_weights_are_caught_by_the_workers_check_on_channel_split_layers(k):
    """Deep layers on small images check the cached transform on the workers, a slice of the output
    channels each (winograd.plan splits the channels there)."""
    from threadpoolctl import threadpool_limits

    from gemmconv.core.args import ConvArgs
    from gemmconv.planning.validate import validate
    from gemmconv.strategies import winograd

    rng = np.random.default_rng(k)
    x = rng.standard_normal((1, 256, 7, 7)).astype(np.float32)
    w = rng.standard_normal((256, 256, 3, 3)).astype(np.float32)
    with threadpool_limits(2):
        be, _x4, _w4, _, spec, *_ = validate(x, w, None, ConvArgs(padding=1))
        assert len({b[2:] for b in winograd.plan(spec, 4, be.scheduler.block_budget(spec), 2, 4)}) == 2  # channel split
        FILTER_CACHE.clear()
        y1 = gemmconv.conv2d(x, w, padding=1, strategy="winograd")
        hits, misses = FILTER_CACHE.hits, FILTER_CACHE.misses
        np.testing.assert_array_equal(gemmconv.conv2d(x, w, padding=1, strategy="winograd"), y1)
        assert (FILTER_CACHE.hits, FILTER_CACHE.misses) == (hits + 1, misses)
        w[k, 100, 2, 0] += 1.0  # in place
        y2 = gemmconv.conv2d(x, w, padding=1, strategy="winograd")
        assert FILTER_CACHE.misses == misses + 1
    ref = gemmconv.conv2d(x.astype(np.float64), w.astype(np.float64), padding=1, strategy="im2col")
    np.testing.assert_allclose(y2, ref, rtol=0, atol=1e-4 * np.abs(ref).max())  # F(4x4)'s float32 error
    assert not np.allclose(y1[:, k], y2[:, k])


def test_cache_tells_tile_sizes_and_dtypes_apart():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 2, 8, 8))
    w = rng.standard_normal((2, 2, 3, 3))
    ref = gemmconv.conv2d(x, w, strategy="direct")
    for s in ("winograd", "winograd_f2", "winograd"):
        np.testing.assert_allclose(gemmconv.conv2d(x, w, strategy=s), ref, rtol=1e-12, atol=1e-12)
    y32 = gemmconv.conv2d(x.astype(np.float32), w.astype(np.float32), strategy="winograd")
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, ref, rtol=1e-4, atol=1e-4)


def test_cache_is_bounded():
    FILTER_CACHE.clear()
    x = np.ones((1, 1, 6, 6))
    weights = [np.full((1, 1, 3, 3), float(i)) for i in range(FILTER_CACHE.max_entries + 5)]  # distinct buffers
    for w in weights:
        gemmconv.conv2d(x, w, strategy="winograd")
    assert len(FILTER_CACHE) == FILTER_CACHE.max_entries


def test_grouped_winograd():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 6, 9, 7))
    w = rng.standard_normal((9, 2, 3, 3))
    for s in ("winograd", "winograd_f2"):
        np.testing.assert_allclose(
            gemmconv.conv2d(x, w, padding=1, groups=3, strategy=s),
            gemmconv.conv2d(x, w, padding=1, groups=3, strategy="direct"),
            rtol=1e-11, atol=1e-11,
        )


def test_cache_is_bounded_in_bytes():
    FILTER_CACHE.clear()
    saved = FILTER_CACHE.max_bytes
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 16, 8, 8))
    ws = [rng.standard_normal((16, 16, 3, 3)) for _ in range(6)]
    entry = ws[0].nbytes + 36 * 16 * 16 * 8  # the copy of w and its F(4x4) transform: 90 KiB
    try:
        FILTER_CACHE.max_bytes = 3 * entry
        for w in ws:
            gemmconv.conv2d(x, w, padding=1, strategy="winograd")
        assert len(FILTER_CACHE) == 3 and FILTER_CACHE.nbytes == 3 * entry
        FILTER_CACHE.max_bytes = entry // 2  # smaller than one entry: nothing kept, and still right
        y = gemmconv.conv2d(x, ws[0] + 1, padding=1, strategy="winograd")
        np.testing.assert_allclose(y, gemmconv.conv2d(x, ws[0] + 1, padding=1, strategy="direct"), rtol=1e-9, atol=1e-9)
        FILTER_CACHE.clear()
        assert len(FILTER_CACHE) == 0 and FILTER_CACHE.nbytes == 0
    finally:
        FILTER_CACHE.max_bytes = saved
        FILTER_CACHE.clear()
