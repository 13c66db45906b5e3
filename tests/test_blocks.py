"""The blocked pipelines: block plans, the worker pool, and results with blocks forced small."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest
from helpers import configs, record, scaled_error, tolerance
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits

import gemmconv
from gemmconv.backends import _threads, get_backend
from gemmconv.core.args import ConvArgs
from gemmconv.core.spec import ConvSpec
from gemmconv.planning.validate import validate
from gemmconv.strategies import im2col, winograd
from gemmconv.strategies._common import split

NUMPY = get_backend(np.zeros(1))
BLOCKED = ["im2col", "winograd", "winograd_f2", "1x1", "auto"]


@contextlib.contextmanager
def blocks_of(nbytes: int | None, threads: int):
    """The NumPy backend with ``nbytes`` per block, for any size of work, and ``threads`` BLAS threads (= workers)."""
    sched = NUMPY.scheduler
    saved = sched.block_bytes, sched.min_block_flops
    sched.block_bytes, sched.min_block_flops = nbytes, 0
    try:
        with threadpool_limits(threads, user_api="blas"):
            yield
    finally:
        sched.block_bytes, sched.min_block_flops = saved


def test_small_convolutions_run_as_one_block():
    x, w = np.ones((1, 64, 28, 28), np.float32), np.ones((128, 64, 1, 1), np.float32)  # 12.8 MFLOP
    calls = []
    run_blocks = NUMPY.scheduler.run_blocks
    NUMPY.scheduler.run_blocks = lambda fn, items, workers=None: (calls.append(len(items)),
                                                                  run_blocks(fn, items, workers))
    try:
        gemmconv.conv2d(x, w, strategy="1x1")
        gemmconv.conv2d(np.ones((8, 64, 28, 28), np.float32), w, strategy="1x1")  # 103 MFLOP
    finally:
        del NUMPY.scheduler.run_blocks
    assert calls[0] == 1 and calls[1] >= 2  # only the 103 MFLOP one was cut into blocks


def _spec(x_shape, w_shape, **args) -> ConvSpec:
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    defaults = dict(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros")
    return validate(x, w, None, ConvArgs(**{**defaults, **args})).spec


@settings(max_examples=300)
@given(cfg=configs(), strategy=st.sampled_from(BLOCKED), nbytes=st.sampled_from([1, 700, 4096, 50_000]),
       threads=st.sampled_from([1, 2, 3]))
def test_small_blocks_match_torch(cfg, strategy, nbytes, threads):
    x, w, b, args = cfg
    with blocks_of(nbytes, threads):
        try:
            y = gemmconv.conv2d(x, w, b, strategy=strategy, **args)
        except gemmconv.StrategyNotSupportedError:
            return
        except ValueError:  # a configuration torch refuses too (checked in test_properties)
            return
    chosen = gemmconv.choose_strategy(x, w, b, **args) if strategy == "auto" else strategy
    err = scaled_error(y, x, w, b, **args)
    record(strategy, str(x.dtype), err)
    assert err <= tolerance(strategy, chosen, str(x.dtype))


@pytest.mark.parametrize("strategy", ["im2col", "winograd", "winograd_f2"])
@pytest.mark.parametrize("n, c, hw, k", [(1, 64, 56, 64), (3, 32, 23, 48), (2, 256, 7, 256)])
def test_real_sized_blocks_match_unblocked(strategy, n, c, hw, k):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
    w = (rng.standard_normal((k, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    with blocks_of(None, 1):
        whole = gemmconv.conv2d(x, w, b, padding=1, strategy=strategy)
    for nbytes in (64 * 1024, NUMPY.scheduler.block_bytes):
        with blocks_of(nbytes, 2):
            np.testing.assert_allclose(gemmconv.conv2d(x, w, b, padding=1, strategy=strategy), whole,
                                       rtol=2e-5, atol=2e-5)


@given(total=st.integers(1, 500), unit=st.integers(1, 10_000), budget=st.integers(1, 10**6),
       parts=st.integers(1, 8))
def test_split_covers_the_range_in_near_equal_parts(total, unit, budget, parts):
    ranges = split(total, unit, budget, parts)
    assert ranges[0][0] == 0 and ranges[-1][1] == total
    assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
    sizes = [hi - lo for lo, hi in ranges]
    assert min(sizes) >= 1 and max(sizes) - min(sizes) <= 1
    if len(ranges) > 1:
        assert total * unit > budget // 16
        assert max(sizes) == 1 or max(sizes) * unit <= budget
        assert len(ranges) % parts == 0 or len(ranges) == total


def test_im2col_plan():
    spec = _spec((8, 64, 56, 56), (64, 64, 3, 3), padding=1)
    # a 56² image's columns are 7.2 MB: bands of rows, a multiple of 2 per image, each under 1 MiB
    blocks = im2col.plan(spec, 1 << 20, 2, 4)
    assert {(n0, n1) for n0, n1, *_ in blocks} == {(n, n + 1) for n in range(8)}
    assert all((k0, k1) == (0, 64) for *_, k0, k1 in blocks)
    per_image = [b for b in blocks if b[0] == 0]
    assert len(per_image) % 2 == 0 and per_image[0][2] == 0 and per_image[-1][3] == 56
    row_bytes = ((64 * 9 + 64) * 56 + 64 * 56) * 4
    assert all((o1 - o0) * row_bytes <= 1 << 20 for _, _, o0, o1, _, _ in blocks)
    assert im2col.plan(spec, None, 2, 4) == [(0, 8, 0, 56, 0, 64)]  # a GPU: one block
    small = _spec((2, 8, 10, 10), (8, 8, 3, 3))  # 46 KB of columns, products and input rows
    assert im2col.plan(small, 1 << 20, 2, 4) == [(0, 2, 0, 8, 0, 8)]  # too little work to hand out
    # a workspace limit is shared by the workers
    blocks = im2col.plan(spec, None, 4, 4, limit=4 << 20)
    assert max((o1 - o0) * row_bytes for _, _, o0, o1, _, _ in blocks) <= 1 << 20


def test_im2col_plan_splits_channels_where_weights_outweigh_columns():
    # 512 channels at 7², N=1: 9.4 MB of weights against 0.9 MB of columns; bands of rows would each read all
    deep = _spec((1, 512, 7, 7), (512, 512, 3, 3), padding=1)
    assert im2col.plan(deep, 3 << 20, 2, 4) == [(0, 1, 0, 7, 0, 256), (0, 1, 0, 7, 256, 512)]
    assert im2col.plan(deep, 3 << 20, 1, 4) == [(0, 1, 0, 7, 0, 512)]  # one worker: nothing to split
    # the whole batch's columns must fit one block: at N=8 (7.2 MB) whole images again
    assert all((k0, k1) == (0, 512) for *_, k0, k1 in im2col.plan(_spec((8, 512, 7, 7), (512, 512, 3, 3),
                                                                          padding=1), 3 << 20, 2, 4))
    grouped = _spec((1, 512, 7, 7), (512, 256, 3, 3), padding=1, groups=2)
    assert all((k0, k1) == (0, 512) for *_, k0, k1 in im2col.plan(grouped, 3 << 20, 2, 4))


@pytest.mark.parametrize("strategy, kh, stride", [("im2col", 3, 1), ("im2col", 3, 2), ("1x1", 1, 1), ("1x1", 1, 2)])
@pytest.mark.parametrize("threads", [2, 3])
def test_channel_split_blocks_match_torch(strategy, kh, stride, threads):
    # weights (96 x 64·KH·KW) outweigh the columns of a 6² output: plan splits the output channels
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1, 64, 6 * stride, 6 * stride)).astype(np.float32)
    w = (rng.standard_normal((96, 64, kh, kh)) / np.sqrt(64 * kh * kh)).astype(np.float32)
    b = rng.standard_normal(96).astype(np.float32)
    args = dict(stride=stride, padding=kh // 2)
    spec = _spec(x.shape, w.shape, **args)
    assert len({(k0, k1) for *_, k0, k1 in im2col.plan(spec, 256 << 10, threads, 4)}) == threads
    with blocks_of(256 << 10, threads):
        y = gemmconv.conv2d(x, w, b, strategy=strategy, **args)
    assert scaled_error(y, x, w, b, **args) <= tolerance(strategy, strategy, "float32")


def test_winograd_plan_splits_rows_or_channels():
    spec = _spec((8, 64, 56, 56), (64, 64, 3, 3), padding=1)
    blocks = winograd.plan(spec, 4, 1 << 20, 2, 4)
    assert all((k0, k1) == (0, 64) for _, _, k0, k1 in blocks)
    assert blocks[0][0] == 0 and blocks[-1][1] == 8 * 14 and len(blocks) % 2 == 0
    # 512 channels at 7²: the filter transform (37.7 MB) outweighs the tiles, the workers split K
    deep = _spec((8, 512, 7, 7), (512, 512, 3, 3), padding=1)
    assert winograd.plan(deep, 4, 1 << 20, 2, 4) == [(0, 16, 0, 256), (0, 16, 256, 512)]
    assert winograd.plan(deep, 4, None, 2, 4) == [(0, 16, 0, 512)]


def test_run_blocks_runs_on_the_caller_and_pool_threads_and_restores_blas():
    seen = []
    lock = threading.Lock()
    here = threading.current_thread().name

    def fn(item):
        time.sleep(0.002)  # long enough for the helper to take some items
        with lock:
            seen.append((item, threading.current_thread().name, _threads.in_worker()))

    with threadpool_limits(2, user_api="blas"):
        _threads.run_blocks(fn, list(range(10)), 2)
        assert _threads.blas_threads() == 2  # restored after the blocks (they ran with 1)
    assert sorted(i for i, _, _ in seen) == list(range(10))
    assert all((name == here and not worker) or (name.startswith("gemmconv") and worker)
               for _, name, worker in seen)
    assert len({name for _, name, _ in seen}) <= 2  # two workers: the caller and one helper
    assert not _threads.in_worker()


def test_run_blocks_runs_here_with_one_worker_and_raises_errors():
    names = []
    _threads.run_blocks(lambda i: names.append(threading.current_thread().name), [1, 2], 1)
    assert names == [threading.current_thread().name] * 2

    def boom(i):
        if i == 3:
            raise RuntimeError("block 3 failed")

    with pytest.raises(RuntimeError, match="block 3 failed"):
        _threads.run_blocks(boom, list(range(6)), 2)


def test_blas_is_single_threaded_inside_blocks():
    counts = []
    with threadpool_limits(2, user_api="blas"):
        _threads.run_blocks(lambda i: counts.append(_threads.blas_threads()), [0, 1, 2], 2)
    assert counts == [1, 1, 1]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_blocks_run_in_a_forked_child():
    # the child has none of the parent's pool threads: it must start its own, not wait forever
    x = np.random.default_rng(4).standard_normal((4, 32, 20, 20)).astype(np.float32)
    w = np.random.default_rng(5).standard_normal((32, 32, 3, 3)).astype(np.float32)
    with blocks_of(4096, 2):
        expected = gemmconv.conv2d(x, w, padding=1, strategy="im2col")  # starts the parent's pool
        with warnings.catch_warnings():  # Python >= 3.12 warns on fork() with threads running
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                y = gemmconv.conv2d(x, w, padding=1, strategy="im2col")
                code = 0 if np.allclose(y, expected, rtol=1e-5, atol=1e-5) else 2
            finally:
                os._exit(code)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung running blocks")


@pytest.mark.parametrize("c, p", [(256, 16), (512, 4), (64, 196), (3, 5)])
@pytest.mark.parametrize("scratch", [True, False])
def test_winograd_tile_matrices_start_an_odd_number_of_cache_lines_apart(c, p, scratch):
    be = get_backend(np.zeros(1))
    v = be._spaced("test", 36, p, c, np.float32, scratch=scratch)
    assert v.shape == (36, p, c) and v.strides[1:] == (c * 4, 4)  # each (P, C) matrix C-contiguous
    assert v.strides[0] >= c * p * 4  # the T² matrices don't overlap
    assert v.strides[0] % 64 == 0 and (v.strides[0] // 64) % 2 == 1  # ... and fall in different L1 sets
    v[...] = np.arange(v.size, dtype=np.float32).reshape(v.shape)  # every element its own: no overlap
    assert np.array_equal(v[35], np.arange(35 * c * p, 36 * c * p).reshape(p, c))


@pytest.mark.parametrize("stride, padding", [(2, 0), (1, 1), (2, 1)])
def test_columns_with_a_row_of_ones(stride, padding):
    """The NumPy kernels and the generic default give the same columns, plus the ones row the bias rides on."""
    from gemmconv.backends.kernels import Im2colKernels

    x = np.random.default_rng(7).standard_normal((2, 3, 9, 9)).astype(np.float32)
    for kh in (1, 3):
        be, x4, _, _, spec, *_ = validate(x, np.ones((4, 3, kh, kh), np.float32), None,
                                         ConvArgs(stride=stride, padding=padding))
        plain = be.im2col_part(x4, spec, 0, 2, 1, spec.oh).copy()
        ones = be.im2col_part(x4, spec, 0, 2, 1, spec.oh, ones_row=True).copy()
        generic = Im2colKernels.im2col_part(be, x4, spec, 0, 2, 1, spec.oh, ones_row=True)
        crs = 3 * kh * kh
        assert ones.shape == generic.shape == (2, crs + 1, (spec.oh - 1) * spec.ow)
        np.testing.assert_array_equal(ones[:, :crs], plain)
        np.testing.assert_array_equal(generic, ones)
        assert (ones[:, crs] == 1).all()
    # the ones row is kept between calls of one shape: another shape over the same buffer must not leave it stale
    be.im2col_part(x4, spec, 0, 2, 0, spec.oh, ones_row=True)
    be.im2col_part(x4 * 0 + 5, spec, 0, 2, 1, spec.oh)  # other rows, fives everywhere: overwrites the old ones row
    again = be.im2col_part(x4, spec, 0, 2, 0, spec.oh, ones_row=True)
    assert (again[:, crs] == 1).all()
    other = be.im2col_part(x4 * 0 + 5, spec, 0, 1, 1, spec.oh, ones_row=True)  # another shape, with ones
    assert (other[:, crs] == 1).all() and (other[:, :crs] == 5).mean() > 0.5
    again = be.im2col_part(x4, spec, 0, 2, 0, spec.oh, ones_row=True)
    assert (again[:, crs] == 1).all()


def test_bias_rides_the_gemm_where_the_weights_are_small():
    small = _spec((1, 64, 56, 56), (128, 64, 1, 1), stride=2)  # 65 weight columns, 784 outputs
    assert im2col.folds_bias(small, np.ones(128)) and not im2col.folds_bias(small, None)
    deep = _spec((1, 256, 14, 14), (256, 256, 3, 3), padding=1)  # 2305 weight columns, 196 outputs
    assert not im2col.folds_bias(deep, np.ones(256))
    grouped = _spec((1, 64, 56, 56), (64, 32, 1, 1), groups=2)
    assert not im2col.folds_bias(grouped, np.ones(64))
    strided = _spec((1, 64, 56, 56), (128, 64, 1, 1), stride=2)
    assert im2col.folds_bias(strided, 1, limit=1 << 20)
    assert not im2col.folds_bias(strided, np.ones(128), limit=100_000)  # the widened weights: over an eighth of it
    # the plan counts the widened weights and the row of ones against a limit
    dense = _spec((1, 64, 56, 56), (64, 64, 3, 3), padding=1)
    assert (len(im2col.plan(dense, None, 2, 4, fold_bias=True, limit=2 << 20))
            >= len(im2col.plan(dense, None, 2, 4, limit=2 << 20)))


def test_run_phases_finishes_a_phase_before_the_next_and_raises_errors():
    done, order = [], []
    lock = threading.Lock()

    def first(i):
        time.sleep(0.002 * (i % 3))  # uneven items
        with lock:
            done.append(i)

    def second(i):
        with lock:
            order.append((i, len(done), after_ran[0]))

    after_ran = [0]

    def after():
        after_ran[0] += 1

    with threadpool_limits(2, user_api="blas"):
        _threads.run_phases([(first, list(range(7)), after), (second, list(range(5)), None)], 2)
    assert sorted(done) == list(range(7)) and after_ran == [1]
    assert sorted(i for i, _, _ in order) == list(range(5))
    assert all(n_done == 7 and ran == 1 for _, n_done, ran in order)  # the second phase saw the first complete

    def boom(i):
        if i == 2:
            raise RuntimeError("phase item 2 failed")

    ran = []
    with pytest.raises(RuntimeError, match="phase item 2 failed"):
        _threads.run_phases([(boom, list(range(4)), None), (ran.append, [0, 1], None)], 2)
    assert ran == []  # a failed phase stops the later ones


def test_concurrent_phased_calls_do_not_wait_on_each_other():
    """Callers sharing the pool: a worker waits only for items other workers are running."""
    from concurrent.futures import ThreadPoolExecutor

    def call(k):
        out = []
        _threads.run_phases([(lambda i: time.sleep(0.001), range(2), None), (out.append, range(3), None)], 2)
        return sorted(out)

    with threadpool_limits(2, user_api="blas"), ThreadPoolExecutor(4) as callers:
        results = list(callers.map(call, range(12), timeout=60))
    assert results == [[0, 1, 2]] * 12
