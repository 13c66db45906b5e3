"""Memory safety and cache integrity (the fixes of 2026-11-29, benchmarks/SAFETY_NOTES.md): kernels in bounds,
caches keyed by all they depend on, loaded tuning choices checked, locks that survive fork, sizes refused before
any work."""

from __future__ import annotations

import gc
import json
import os
import signal
import threading
import time
import tracemalloc
import warnings
import weakref

import numpy as np
import pytest
from helpers import torch_conv
from hypothesis import given, settings
from hypothesis import strategies as st

import gemmconv
from gemmconv.backends import get_backend
from gemmconv.core import _forksafe
from gemmconv.core.args import ConvArgs
from gemmconv.planning.validate import validate
from gemmconv.strategies import im2col
from gemmconv.strategies.tuning import _key, tuning_cache
from gemmconv.strategies.winograd import FILTER_CACHE

NUMPY = get_backend(np.zeros(1))
BOUNDSCHECK = os.environ.get("NUMBA_BOUNDSCHECK", "0") not in ("", "0")


def _spec(x, w, **args):
    defaults = dict(stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros")
    return validate(x, w, None, ConvArgs(**{**defaults, **args})).spec


# -- the compiled kernels stay in bounds ------------------------------------------------------------------------


@pytest.mark.skipif(not BOUNDSCHECK, reason="the bounds-checked pass of .ci/run sets NUMBA_BOUNDSCHECK=1")
def test_kernels_are_bounds_checked():
    """In the bounds-checked pass the kernels really are compiled with bounds checks (gemmconv's kernel cache
    keys on NUMBA_BOUNDSCHECK, and .ci/run gives that pass a cache of its own besides). A bias one element short
    must raise IndexError here (without checks it would read past the array)."""
    from gemmconv.backends import _numba_direct

    x, w = np.ones((1, 1, 4, 4)), np.ones((2, 1, 3, 3))
    out = np.empty((1, 2, 2, 2))
    with pytest.raises(IndexError):
        _numba_direct.direct(x, w, np.zeros(1), out, 1, 1, 0, 0, 1, 1, 1, 0, 2)


def test_im2col_band_in_the_top_padding_keeps_the_bias():
    # the reproducer of the out-of-bounds band write (fixed in 7c41359, 2026-11-29): a band whose rows all lie
    # in the top padding wrote its zeros past its row, over the row of ones the bias rides on (and past the
    # buffer: heap corruption), and the lost bias stayed
    x = np.arange(64.0).reshape(1, 1, 4, 16)
    w, b = np.ones((1, 1, 1, 1)), np.array([100.0])
    least = im2col.min_workspace(_spec(x, w, padding=(2, 0), workspace_limit=1))
    for limit in (least, least + 100, 2 * least):  # bands of one output row and up
        y = gemmconv.conv2d(x, w, b, padding=(2, 0), strategy="im2col", workspace_limit=limit)
        np.testing.assert_array_equal(y, torch_conv(x, w, b, padding=(2, 0)))
        np.testing.assert_array_equal(gemmconv.conv2d(x, w, b, strategy="im2col", workspace_limit=limit), x + 100)
    with pytest.raises(gemmconv.StrategyNotSupportedError, match=f"workspace_limit=400 is below the {least} bytes"):
        gemmconv.conv2d(x, w, b, padding=(2, 0), strategy="im2col", workspace_limit=400)


def test_im2col_grouped_dilated_band_in_the_padding():
    # the second reproducer of the out-of-bounds band write (7c41359: aborted, or IndexError under bounds
    # checking), at limits it now accepts
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 20, 10, 25)), rng.standard_normal((35, 4, 1, 1)), rng.standard_normal(35)
    args = dict(padding=(2, 0), dilation=(2, 3), groups=5)
    least = im2col.min_workspace(_spec(x, w, **args, workspace_limit=1))
    ref = torch_conv(x, w, b, **args)
    for limit in (least, 2 * least, 4096 * 8):
        for strategy in ("im2col", "auto"):
            y = gemmconv.conv2d(x, w, b, strategy=strategy, workspace_limit=limit, **args)
            np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


@settings(max_examples=300)
@given(
    kh=st.integers(1, 7), kw=st.integers(1, 4), h=st.integers(1, 6), w=st.integers(1, 12), pt=st.integers(0, 9),
    pl=st.integers(0, 3), dh=st.integers(1, 4), dw=st.integers(1, 3), sh=st.sampled_from([1, 1, 2, 3, 7]),
    sw=st.sampled_from([1, 1, 2, 5]), c=st.integers(1, 3), k=st.integers(1, 3), bias=st.booleans(),
    extra=st.sampled_from([0, 0, 1, 50, 300, 5000]), threads=st.sampled_from([1, 2]),
    strategy=st.sampled_from(["im2col", "im2col", "1x1", "auto", "direct"]),
    dtype=st.sampled_from(["float32", "float64"]),
)
def test_bands_in_the_padding_match_torch(kh, kw, h, w, pt, pl, dh, dw, sh, sw, c, k, bias, extra, threads,
                                           strategy, dtype):
    """Tall kernels, large top and bottom padding, dilation, short inputs, limits at and just above the
    smallest block, with and without bias, twice on the same threads and then once without a limit."""
    from threadpoolctl import threadpool_limits

    if strategy == "1x1":
        kh = kw = 1
    if (kh - 1) * dh + 1 > h + 2 * pt or (kw - 1) * dw + 1 > w + 2 * pl:
        return  # the kernel outgrows the padded input (a ValueError, tested elsewhere)
    rng = np.random.default_rng(kh * 1000 + h * 100 + pt * 10 + c)
    x = rng.uniform(-1, 1, (2, c, h, w)).astype(dtype)
    wt = rng.uniform(-1, 1, (k, c, kh, kw)).astype(dtype)
    b = rng.uniform(-1, 1, k).astype(dtype) if bias else None
    args = dict(stride=(sh, sw), padding=(pt, pl), dilation=(dh, dw))
    ref = torch_conv(x, wt, b, **args)
    spec = _spec(x, wt, **args, workspace_limit=1)
    least = im2col.min_workspace(spec, pads_zeros=strategy != "1x1")  # 1x1 pads a copy first...
    if strategy == "1x1" and spec.pads_explicitly(False):
        least += spec.padded_bytes  # ...which counts against the limit
    tol = 1e-5 if dtype == "float32" else 1e-12
    with threadpool_limits(threads, user_api="blas"):
        for _ in range(2):  # the second call reuses this thread's buffers (and row of ones)
            y = gemmconv.conv2d(x, wt, b, strategy=strategy, workspace_limit=least + extra, **args)
            np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)
        y = gemmconv.conv2d(x, wt, b, strategy=strategy, **args)  # then with no limit: nothing left behind
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)


# -- sizes: work and memory follow the output, not the stride; what cannot fit is refused --------------------------


@pytest.mark.parametrize("strategy", ["auto", "im2col", "direct"])
@pytest.mark.parametrize("stride", [30_000, 10**5, 2**40])
def test_huge_strides_take_little_memory(strategy, stride):
    x, w = np.arange(25.0).reshape(1, 1, 5, 5), np.ones((1, 1, 3, 3))
    gemmconv.conv2d(x, w, stride=2, strategy=strategy)  # compiled and warm
    tracemalloc.start()
    try:
        y = gemmconv.conv2d(x, w, stride=stride, strategy=strategy)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert y.shape == (1, 1, 1, 1) and y[0, 0, 0, 0] == x[0, 0, :3, :3].sum()
    assert peak < 1 << 20  # (was 3.5 GiB at stride 30000 through im2col's polyphase planes)


@pytest.mark.parametrize("strategy", ["auto", "im2col", "direct"])
def test_huge_dilation_and_padding_take_little_memory(strategy):
    x, w = np.random.default_rng(2).standard_normal((1, 2, 5, 5)), np.ones((3, 2, 3, 3))
    args = dict(padding=20_000, dilation=20_000, stride=(1, 7))  # a 5x1 output; a padded plane would be 3.2 GB
    gemmconv.conv2d(x, w, padding=1, dilation=2, strategy=strategy)
    tracemalloc.start()
    try:
        y = gemmconv.conv2d(x, w, strategy=strategy, **args)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_allclose(y, torch_conv(x, w, None, **args), rtol=1e-12, atol=1e-12)
    assert peak < 1 << 20


@pytest.mark.parametrize("name, value", [("stride", 2**63), ("stride", 2**62), ("dilation", 2**61),
                                         ("padding", 2**62), ("padding", (0, 2**64))])
def test_values_past_int64_are_refused_naming_the_argument(name, value):
    x, w = np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3))
    args = {name: value}
    if name == "dilation":
        args["padding"] = 2**62
    with pytest.raises(ValueError, match=rf"^{name}=.*too large for the numpy backend.*at most 2\*\*60"):
        gemmconv.conv2d(x, w, **args)


def test_the_cupy_kernels_int32_indices_bound_the_sizes():
    # the CUDA kernels take int sizes: the CuPy backend's limit, applied by the same check (no GPU needed)
    from gemmconv.backends.cupy_backend import CupyBackend
    from gemmconv.planning.validate import _check_sizes

    spec = _spec(np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3)), stride=2**30)
    _check_sizes(NUMPY, spec, np.ones(1))
    with pytest.raises(ValueError, match=r"^stride=.*cupy backend.*below 2\*\*31.*at most 2\*\*29"):
        _check_sizes(CupyBackend(), spec, np.ones(1))
    big = _spec(np.ones((1, 1, 5, 5), np.float32), np.ones((1, 1, 1, 1), np.float32), padding=25_000)  # 50005²
    with pytest.raises(ValueError, match=r"^x of shape"):
        _check_sizes(CupyBackend(), big, np.ones(1))


@pytest.mark.parametrize("args, what", [
    (dict(padding=10**5), "output"),  # 37 GiB of output: more than any machine here holds
    (dict(padding=3 * 10**6, stride=3), "output"),
    (dict(padding=10**6, stride=10**6, padding_mode="replicate"), "padding"),  # a 3x3 output, from a 8 TB copy
])
def test_what_cannot_be_allocated_is_refused_before_any_work(args, what):
    x, w = np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3))
    for strategy in ("auto", "im2col", "direct"):
        with pytest.raises(ValueError, match=r"needs [\d,]+ bytes \(.*iB\), more than the") as err:
            gemmconv.conv2d(x, w, strategy=strategy, **args)
        assert str(err.value).startswith("the output" if what == "output" else "padding=")
    with pytest.raises(ValueError, match="needs"):
        gemmconv.conv2d(x, np.ones((1, 1, 1, 1)), padding=10**6, stride=10**6, strategy="1x1")  # 1x1 pads a copy


def test_a_limit_below_the_smallest_block_is_refused_or_steers_auto_to_direct():
    rng = np.random.default_rng(3)
    x, w, b = rng.standard_normal((2, 8, 30, 30)), rng.standard_normal((8, 8, 3, 3)), rng.standard_normal(8)
    spec = _spec(x, w, padding=1, workspace_limit=1)
    least = im2col.min_workspace(spec)
    with pytest.raises(gemmconv.StrategyNotSupportedError, match=f"pass workspace_limit >= {least}"):
        gemmconv.conv2d(x, w, b, padding=1, strategy="im2col", workspace_limit=1024)
    assert gemmconv.choose_strategy(x, w, b, padding=1, workspace_limit=1024) == "direct"
    y = gemmconv.conv2d(x, w, b, padding=1, workspace_limit=1024)
    np.testing.assert_allclose(y, torch_conv(x, w, b, padding=1), rtol=1e-12, atol=1e-12)
    w1 = rng.standard_normal((8, 8, 1, 1))
    with pytest.raises(gemmconv.StrategyNotSupportedError, match="pass workspace_limit >="):
        gemmconv.conv2d(x, w1, stride=2, strategy="1x1", workspace_limit=64)
    gemmconv.conv2d(x, w1, strategy="1x1", workspace_limit=64)  # unstrided 1x1 uses no workspace


@pytest.mark.parametrize("threads", [1, 2])
def test_the_smallest_limit_is_kept(threads):
    from threadpoolctl import threadpool_limits

    x = np.random.default_rng(4).standard_normal((2, 16, 40, 40)).astype(np.float32)
    w = np.random.default_rng(5).standard_normal((16, 16, 3, 3)).astype(np.float32)
    limit = im2col.min_workspace(_spec(x, w, padding=1, workspace_limit=1))
    def run():
        return gemmconv.conv2d(x, w, padding=1, strategy="im2col", workspace_limit=limit)
    with threadpool_limits(threads, user_api="blas"):  # two workers share the limit, or run one at a time
        run()  # compiled (numba's compiler allocates too)
        y, peak = NUMPY.profiler.peak_memory(run)
    assert peak <= limit
    np.testing.assert_allclose(y, torch_conv(x, w, None, padding=1), rtol=1e-5, atol=1e-5)


# -- caches ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["winograd", "winograd_f2", "auto"])
def test_one_weight_array_across_everything_that_changes_the_filter_transform(strategy):
    # w (32, 16, 3, 3) is a valid weight for 16, 32 and 64 input channels (groups 1, 2, 4): the cached
    # transform's layout depends on the groups, and its values on the tile size
    rng = np.random.default_rng(6)
    w = rng.standard_normal((32, 16, 3, 3))
    FILTER_CACHE.clear()
    for groups in (1, 2, 4, 2, 1, 4):
        x = rng.standard_normal((2, 16 * groups, 12, 12))
        for s in (strategy, "winograd_f2" if strategy == "winograd" else "winograd"):
            y = gemmconv.conv2d(x, w, padding=1, groups=groups, strategy=s)
            np.testing.assert_allclose(y, torch_conv(x, w, None, padding=1, groups=groups), rtol=1e-9, atol=1e-9)


def test_clear_workspace_frees_the_columns_after_a_bias_in_the_gemm():
    x = np.random.default_rng(7).standard_normal((1, 1, 300, 300))
    w, b = np.ones((8, 1, 3, 3)), np.ones(8)
    spec = _spec(x, w, padding=1)
    assert im2col.folds_bias(spec, b)
    NUMPY.clear_workspace()
    NUMPY.im2col_part(x, spec, 0, 1, 0, spec.oh, ones_row=True, reuse=True)  # as a bias-in-GEMM block, on this thread
    buf = weakref.ref(NUMPY._local.bufs["cols"])
    NUMPY.clear_workspace()
    gc.collect()
    assert buf() is None  # the row-of-ones mark no longer keeps the (here 6.5 MB) column buffer alive


@pytest.mark.parametrize("strategy", ["direct", "im2col", "winograd", "winograd_f2", "1x1", "auto"])
@pytest.mark.parametrize("n", [1, 8])
def test_nan_and_inf_raise_no_numpy_warning(strategy, n):
    rng = np.random.default_rng(8)
    kk = 1 if strategy == "1x1" else 3
    x = rng.standard_normal((n, 32, 20, 20)).astype(np.float32)
    x[0, 0, 4, 4], x[0, 1, 4, 5], x[-1, 2, 9, 9] = np.inf, -np.inf, np.nan
    w = rng.standard_normal((64, 32, kk, kk)).astype(np.float32)
    w[0, 0, 0, 0] = np.inf
    b = rng.standard_normal(64).astype(np.float32)
    for args in (dict(padding=kk // 2), dict(stride=2)):
        if strategy.startswith("winograd") and "stride" in args:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            y = gemmconv.conv2d(x, w, b, strategy=strategy, **args)
        assert not np.isfinite(y).all() and np.isfinite(y).any()


# -- tuned choices are checked ------------------------------------------------------------------------------------


def _write(tmp_path, data, raw=None):
    path = tmp_path / "tuning.json"
    path.write_text(raw if raw is not None else json.dumps(data))
    return path


def _tuning_key(x, w, **args):
    v = validate(x, w, None, ConvArgs(**args))
    return _key(v.backend, v.backend.device_key(v.x), v.spec, v.limits, None)


def test_a_loaded_choice_that_cannot_run_the_layer_is_tuned_again_never_run(tmp_path):
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal((1, 16, 20, 20)), rng.standard_normal((16, 16, 3, 3))
    key = _tuning_key(x, w, stride=2, padding=1)
    tuning_cache.clear()
    assert tuning_cache.load(_write(tmp_path, {"gemmconv_tuning": 4, "choices": {key: "winograd"}})) == 1
    try:
        with gemmconv.autotune(max_seconds=None, repeat=1):
            y = gemmconv.conv2d(x, w, stride=2, padding=1)
            choice = tuning_cache.get(key)
    finally:
        tuning_cache.clear()
    np.testing.assert_allclose(y, torch_conv(x, w, None, stride=2, padding=1), rtol=1e-12, atol=1e-12)
    assert choice is not None and choice != "winograd"


@pytest.mark.parametrize("data, raw, match", [
    ({"gemmconv_tuning": 4}, None, "'choices' must map"),
    ({"gemmconv_tuning": 4, "choices": [["k", "im2col"]]}, None, "'choices' must map"),
    ({"gemmconv_tuning": 4, "choices": {"KEY": 3}}, None, "names no strategy auto chooses among"),
    ({"gemmconv_tuning": 4, "choices": {"KEY": "my_conv"}}, None, "names no strategy auto chooses among"),
    ({"gemmconv_tuning": 4, "choices": {"[1, 2]": "im2col"}}, None, "a key that is not a configuration"),
    ({"gemmconv_tuning": 4, "choices": {'["numpy", "numpy", {"n": 1}, null]': "im2col"}}, None, "not a configuration"),
    ({"gemmconv_tuning": 99, "choices": {}}, None, "format 99; this version of gemmconv reads formats 4"),
    ({"choices": {}}, None, "is not a gemmconv tuning cache"),
    (None, '{"gemmconv_tuning": 4, "choi', "is not valid JSON"),
])
def test_malformed_tuning_files_are_refused_naming_the_file_and_the_entry(tmp_path, data, raw, match):
    x, w = np.ones((1, 4, 8, 8)), np.ones((4, 4, 3, 3))
    if data is not None and isinstance(data.get("choices"), dict) and "KEY" in data["choices"]:
        data["choices"] = {_tuning_key(x, w): data["choices"]["KEY"]}
    path = _write(tmp_path, data, raw)
    tuning_cache.clear()
    with pytest.raises(ValueError, match=match) as err:
        tuning_cache.load(path)
    assert str(path) in str(err.value) and len(tuning_cache) == 0  # nothing of a bad file is used


def test_tuning_files_round_trip_and_older_formats_are_refused(tmp_path):
    x, w = np.ones((1, 4, 8, 8)), np.ones((4, 4, 3, 3))
    key = _tuning_key(x, w)
    tuning_cache.clear()
    try:
        tuning_cache.put(key, "direct")
        tuning_cache.save(tmp_path / "a.json")
        assert json.loads((tmp_path / "a.json").read_text())["gemmconv_tuning"] == 4
        tuning_cache.clear()
        assert tuning_cache.load(tmp_path / "a.json") == 1 and tuning_cache.get(key) == "direct"
        tuning_cache.clear()
        for old in (1, 2, 3):  # their keys name 2-D sizes one by one (h and w; height, width, kh, ...)
            with pytest.raises(ValueError, match=f"format {old}; this version of gemmconv reads formats 4: tune again"):
                tuning_cache.load(_write(tmp_path, {"gemmconv_tuning": old, "choices": {key: "im2col"}}))
    finally:
        tuning_cache.clear()


# -- locks survive fork -------------------------------------------------------------------------------------------


def _wait_child(pid: int, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0, f"the forked child failed {what}"
            return
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child hung {what}")


def _fork() -> int:
    with warnings.catch_warnings():  # Python >= 3.12 warns on fork() with threads running
        warnings.simplefilter("ignore", DeprecationWarning)
        return os.fork()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_child_forked_while_another_thread_tunes_can_tune(monkeypatch):
    import gemmconv.strategies.tuning

    rng = np.random.default_rng(10)
    x, w = rng.standard_normal((1, 8, 12, 12)), rng.standard_normal((8, 8, 3, 3))
    tuning, release = threading.Event(), threading.Event()
    real_measure = gemmconv.strategies.tuning._time_candidate

    def slow_measure(*args, **kwargs):  # the parent's tuning holds the tune lock until released
        tuning.set()
        release.wait(30)
        return real_measure(*args, **kwargs)

    expected = torch_conv(x, w, None, padding=2)  # here: torch's threads do not survive fork
    tuning_cache.clear()
    monkeypatch.setattr(gemmconv.strategies.tuning, "_time_candidate", slow_measure)
    with gemmconv.autotune(max_seconds=None, repeat=1):
        tuner = threading.Thread(target=gemmconv.conv2d, args=(x, w), kwargs=dict(padding=1))
        tuner.start()
        try:
            assert tuning.wait(30) and tuning_cache.tune_lock.locked()
            pid = _fork()
            if pid == 0:  # the child: its first untuned auto call must tune, not wait for a thread it lacks
                code = 1
                try:
                    monkeypatch.undo()
                    y = gemmconv.conv2d(x, w, padding=2)
                    code = 0 if np.allclose(y, expected, rtol=1e-12, atol=1e-12) else 2
                finally:
                    os._exit(code)
            _wait_child(pid, "tuning")
        finally:
            release.set()
            tuner.join(30)
    tuning_cache.clear()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_every_lock_is_free_in_a_forked_child():
    locks = _forksafe.all_locks()
    assert len(locks) >= 8  # the registries, caches, tuning and worker pool guards
    held, release = threading.Event(), threading.Event()

    def hold():
        for lock in locks:
            lock.acquire()
        held.set()
        release.wait(30)
        for lock in locks:
            lock.release()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(30)
        pid = _fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if all(lock.acquire(timeout=5) for lock in locks) else 2
            finally:
                os._exit(code)
        _wait_child(pid, "acquiring gemmconv's locks")
    finally:
        release.set()
        holder.join(30)
