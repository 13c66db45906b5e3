"""Process-wide defaults: threads, the BLAS thread count, cache bounds, fresh arrays, and the semantics
the issue tracker asked for (zero input channels, one-element tuples)."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest
from helpers import torch_conv

import gemmconv
from gemmconv.backends import _pool, _threads, get_backend
from gemmconv.core.args import ConvArgs
from gemmconv.planning.validate import validate
from gemmconv.strategies.winograd import FILTER_CACHE

NUMPY = get_backend(np.zeros(1))
RNG = np.random.default_rng(3)


def _worker_threads() -> list[threading.Thread]:
    """The threads of the current pool (a replaced pool's threads may still be finishing)."""
    pool = _pool.current()
    return [] if pool is None else list(pool.threads)


def _big():
    x = RNG.standard_normal((4, 64, 28, 28)).astype(np.float32)
    w = RNG.standard_normal((64, 64, 3, 3)).astype(np.float32)
    return x, w


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="needs os.sched_getaffinity (Linux)")
def test_workers_are_not_pinned_by_default():
    old = gemmconv.set_threads(2)  # two workers even on one core
    try:
        x, w = _big()
        gemmconv.conv2d(x, w, padding=1, strategy="im2col")
        workers = _worker_threads()
        assert workers
        allowed = os.sched_getaffinity(0)
        pool = _pool.current()
        assert pool is not None and pool.caller_cpu is None  # nobody pinned
        for t in workers:  # any allowed CPU but the one the caller held during the call (SpinPool placement)
            cpus = os.sched_getaffinity(t.native_id)
            assert cpus <= allowed and len(cpus) >= max(1, len(allowed) - 1)
        gemmconv.set_threads(2, pin=True)
        gemmconv.conv2d(x, w, padding=1, strategy="im2col")
        pinned = [os.sched_getaffinity(t.native_id) for t in _worker_threads()]
        assert pinned and all(len(cpus) == 1 and cpus <= allowed for cpus in pinned)
    finally:
        gemmconv.set_threads(2, pin=False)  # an explicit count: the workers run even on a busy machine
        gemmconv.conv2d(*_big(), padding=1, strategy="im2col")  # unpinned workers again for the next tests
        gemmconv.set_threads(old.threads, pin=False, keep_blas=old.keep_blas, spin_us=old.spin_us)
    allowed = os.sched_getaffinity(0)
    assert all(len(allowed) - 1 <= len(os.sched_getaffinity(t.native_id)) for t in _worker_threads())


def test_worker_count_follows_allowed_cores_and_blas_limit():
    from threadpoolctl import threadpool_limits

    assert gemmconv.get_threads().threads is None
    assert _threads.worker_count() == max(1, min(_threads.blas_threads(), _threads.allowed_cores()))
    with threadpool_limits(1, user_api="blas"):
        assert _threads.worker_count() == 1
    old = gemmconv.set_threads(3)
    try:
        assert _threads.worker_count() == 3
    finally:
        gemmconv.set_threads(old.threads, pin=old.pin, keep_blas=old.keep_blas)
    with pytest.raises(ValueError, match="threads must be an int >= 1 or None, got 0"):
        gemmconv.set_threads(0)


def _blas_counts_seen_while(fn) -> set[int]:
    """The BLAS thread counts this thread sees while ``fn`` runs on another thread."""
    seen, done = set(), threading.Event()

    def target():
        try:
            fn()
        finally:
            done.set()

    t = threading.Thread(target=target)
    t.start()
    while not done.is_set():
        seen.add(_threads.blas_threads())
        time.sleep(0.0005)
    t.join()
    return seen


@pytest.mark.parametrize("keep_blas", [False, True])
def test_blas_thread_count_seen_from_another_thread(keep_blas):
    before = _threads.blas_threads()
    if before < 2:
        pytest.skip("the BLAS runs on one thread here: nothing to lower")
    x, w = _big()
    old = gemmconv.set_threads(2, keep_blas=keep_blas)
    try:
        seen = _blas_counts_seen_while(lambda: [gemmconv.conv2d(x, w, padding=1, strategy="im2col")
                                                for _ in range(20)])
    finally:
        gemmconv.set_threads(old.threads, pin=old.pin, keep_blas=old.keep_blas)
    assert _threads.blas_threads() == before  # always put back
    if keep_blas or _threads._thread_local_limits() is not None:
        assert seen == {before}  # never lowered for the rest of the process
    else:  # NumPy's pthreads OpenBLAS has no thread-local limit: lowered while blocks run (README: threads)
        assert seen <= {before, 1}


def test_keep_blas_gives_the_same_result():
    x, w = _big()
    expected = gemmconv.conv2d(x, w, padding=1, strategy="winograd")
    old = gemmconv.set_threads(2, keep_blas=True)
    try:
        np.testing.assert_allclose(gemmconv.conv2d(x, w, padding=1, strategy="winograd"), expected, rtol=1e-5,
                                   atol=1e-4)
    finally:
        gemmconv.set_threads(old.threads, pin=old.pin, keep_blas=old.keep_blas)


def test_filter_cache_bound_in_bytes_with_weights_kept_alive():
    assert FILTER_CACHE.max_bytes == 256 << 20  # the documented default
    x = RNG.standard_normal((1, 64, 8, 8)).astype(np.float32)
    weights = [RNG.standard_normal((64, 64, 3, 3)).astype(np.float32) for _ in range(12)]  # all kept alive
    old = FILTER_CACHE.max_bytes
    FILTER_CACHE.clear()
    try:
        FILTER_CACHE.max_bytes = 1 << 20  # each entry: a 147 KiB copy + a 576 KiB transform
        for w in weights:
            gemmconv.conv2d(x, w, padding=1, strategy="winograd")
            assert FILTER_CACHE.nbytes <= FILTER_CACHE.max_bytes
        assert len(FILTER_CACHE) == 1
        assert FILTER_CACHE.nbytes == sum(int(a.nbytes) for e in FILTER_CACHE.entries.values() for a in e)
    finally:
        FILTER_CACHE.max_bytes = old
    gemmconv.clear_caches()
    assert len(FILTER_CACHE) == 0 and FILTER_CACHE.nbytes == 0


def test_clear_caches_frees_the_workspaces():
    x, w = _big()
    gemmconv.conv2d(x, w, padding=1, strategy="im2col")
    gemmconv.clear_caches()
    assert all(not bufs for bufs in NUMPY._all_bufs)


def test_public_kernels_return_fresh_arrays():
    x = RNG.standard_normal((2, 4, 9, 9)).astype(np.float32)
    spec = validate(x, np.ones((8, 4, 3, 3), np.float32), None, ConvArgs(padding=1)).spec
    first = NUMPY.im2col(x, spec)
    kept = first.copy()
    second = NUMPY.im2col(x[::-1].copy(), spec)
    assert not np.shares_memory(first, second)
    np.testing.assert_array_equal(first, kept)  # the next call did not overwrite the first result
    a = NUMPY.im2col_part(x, spec, 0, 1, 0, 3, ones_row=True)
    b = NUMPY.im2col_part(x, spec, 0, 1, 0, 3, ones_row=True)
    assert not np.shares_memory(a, b)
    v1 = NUMPY.winograd_input(x, spec, 4, 3, 3)
    v2 = NUMPY.winograd_input(x, spec, 4, 3, 3)
    assert not np.shares_memory(v1, v2)


@pytest.mark.parametrize("strategy", ["direct", "im2col", "winograd", "winograd_f2", "auto"])
@pytest.mark.parametrize("bias", [False, True])
def test_zero_input_channels_give_the_bias(strategy, bias):
    x = np.zeros((2, 0, 50, 100), np.float32)
    w = np.zeros((33, 0, 3, 3), np.float32)
    b = RNG.standard_normal(33).astype(np.float32) if bias else None
    y = gemmconv.conv2d(x, w, b, strategy=strategy)
    assert y.shape == (2, 33, 48, 98)  # torch gives (2, 0, 48, 98): the README says why this differs
    expected = np.broadcast_to(b.reshape(1, -1, 1, 1), y.shape) if bias else np.zeros(y.shape, np.float32)
    np.testing.assert_array_equal(y, expected)
    grouped = gemmconv.conv2d(np.zeros((1, 0, 6, 6)), np.zeros((4, 0, 3, 3)), groups=2, padding=1,
                              padding_mode="reflect" if strategy == "direct" else "zeros")
    assert grouped.shape == (1, 4, 6, 6) and not grouped.any()


@pytest.mark.parametrize("args", [dict(stride=(2,)), dict(padding=(1,)), dict(dilation=(2,)),
                                  dict(stride=(2,), padding=(2,), dilation=(1,))])
def test_one_element_tuples_expand_as_in_torch(args):
    x = RNG.standard_normal((1, 3, 11, 11))
    w = RNG.standard_normal((4, 3, 3, 3))
    for strategy in ("direct", "im2col", "auto"):
        np.testing.assert_allclose(gemmconv.conv2d(x, w, strategy=strategy, **args), torch_conv(x, w, None, **args),
                                   rtol=1e-12, atol=1e-12)
