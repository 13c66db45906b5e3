"""Measured selection for strategy="auto"."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

import gemmconv
from gemmconv.strategies import tuning
from gemmconv.strategies.measure import Measurement


@pytest.fixture(autouse=True)
def clean_cache():
    gemmconv.tuning_cache.clear()
    yield
    gemmconv.tuning_cache.clear()


X = np.random.default_rng(0).standard_normal((2, 16, 8, 8)).astype(np.float32)
W = np.random.default_rng(1).standard_normal((16, 16, 3, 3)).astype(np.float32)


def fake_timings(monkeypatch, times):
    """Make measure() report the given median per strategy, and count calls."""
    calls = []

    def fake(name, run, backend, x, w, b, repeat):
        calls.append(name)
        return run(x, w, b, None), Measurement([times[name]] * repeat)

    monkeypatch.setattr(tuning, "_time_candidate", fake)
    return calls


def test_off_by_default_follows_the_rule():
    assert not gemmconv.get_autotune().enabled
    assert gemmconv.choose_strategy(X, W, padding=1) == "im2col"  # 2·2·2 = 8 tiles: below the rule's 16
    assert len(gemmconv.tuning_cache) == 0


def test_measures_once_then_uses_the_cache(monkeypatch):
    calls = fake_timings(monkeypatch, {"im2col": 3.0, "direct": 2.0, "winograd": 1.0, "winograd_f2": 1.5, "fft": 4.0})
    with gemmconv.autotune(max_seconds=None):
        assert gemmconv.choose_strategy(X, W, padding=1) == "winograd"
        assert sorted(calls) == ["direct", "fft", "im2col", "winograd", "winograd_f2"]
        y = gemmconv.conv2d(X, W, padding=1)  # same configuration: no new measurement
        assert len(calls) == 5
        np.testing.assert_allclose(y, gemmconv.conv2d(X, W, padding=1, strategy="direct"), rtol=1e-4, atol=1e-4)
        gemmconv.conv2d(X[:1], W, padding=1)  # the batch size is part of the key
        assert len(calls) == 10 and len(gemmconv.tuning_cache) == 2
    assert not gemmconv.get_autotune().enabled  # the context manager restored the setting


def test_max_error_excludes_inaccurate_strategies(monkeypatch):
    fake_timings(monkeypatch, {"im2col": 3.0, "direct": 2.0, "winograd": 1.0, "winograd_f2": 1.5, "fft": 4.0})
    with gemmconv.autotune(max_seconds=None, max_error=1e-6):  # F(4x4) is ~5e-6 in float32
        assert gemmconv.choose_strategy(X, W, padding=1) == "winograd_f2"
    with gemmconv.autotune(max_seconds=None, max_error=1e-12):  # nothing qualifies: the rule decides
        assert gemmconv.choose_strategy(X, W, padding=1) == "im2col"


def test_max_seconds_bounds_the_search(monkeypatch):
    calls = fake_timings(monkeypatch, {"im2col": 3.0, "direct": 2.0, "winograd": 1.0, "winograd_f2": 1.5, "fft": 4.0})
    clock = iter(range(100))
    monkeypatch.setattr(tuning, "_now", lambda: float(next(clock)))
    with gemmconv.autotune(max_seconds=1.5):  # each candidate "takes" a second: two are timed
        assert gemmconv.choose_strategy(X, W, padding=1) in ("im2col", "direct")
    assert calls[0] == "im2col" and len(calls) == 2  # the rule's choice is timed first


def test_save_and_load(tmp_path, monkeypatch):
    fake_timings(monkeypatch, {"im2col": 3.0, "direct": 0.5, "winograd": 1.0, "winograd_f2": 1.5, "fft": 4.0})
    with gemmconv.autotune():
        gemmconv.conv2d(X, W, padding=1)
    path = tmp_path / "tuning.json"
    gemmconv.tuning_cache.save(path)
    gemmconv.tuning_cache.clear()
    assert gemmconv.tuning_cache.load(path) == 1
    calls = fake_timings(monkeypatch, {"im2col": 1.0, "direct": 9.0, "winograd": 9.0, "winograd_f2": 9.0, "fft": 9.0})
    with gemmconv.autotune():
        assert gemmconv.choose_strategy(X, W, padding=1) == "direct"  # from the file, not re-measured
    assert calls == []
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    with pytest.raises(ValueError, match="not a gemmconv tuning cache"):
        gemmconv.tuning_cache.load(bad)


def test_threads_tune_once(monkeypatch):
    calls = fake_timings(monkeypatch, {"im2col": 3.0, "direct": 2.0, "winograd": 1.0, "winograd_f2": 1.5, "fft": 4.0})
    results = []
    with gemmconv.autotune(max_seconds=None):
        threads = [threading.Thread(target=lambda: results.append(gemmconv.choose_strategy(X, W, padding=1)))
                   for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == ["winograd"] * 6 and len(calls) == 5


def test_real_tuning_gives_correct_results():
    with gemmconv.autotune(repeat=1):
        for args in (dict(padding=1), dict(stride=2), dict(padding=1, padding_mode="reflect")):
            y = gemmconv.conv2d(X, W, **args)
            np.testing.assert_allclose(y, gemmconv.conv2d(X, W, strategy="im2col", **args), rtol=1e-4, atol=1e-4)
    assert len(gemmconv.tuning_cache) == 3


@pytest.mark.parametrize("kwargs, message", [
    (dict(repeat=0), "repeat must be an int >= 1"),
    (dict(max_seconds=-1), "max_seconds must be a positive number or None"),
    (dict(max_error="big"), "max_error must be a positive number or None"),
])
def test_settings_are_validated(kwargs, message):
    with pytest.raises(ValueError, match=message):
        gemmconv.set_autotune(True, **kwargs)
    assert not gemmconv.get_autotune().enabled


@pytest.mark.parametrize("pass_", ["grad_input", "grad_weight"])
def test_autotune_per_pass(monkeypatch, tmp_path, pass_):
    """auto's pass is measured among the strategies that have it, once per configuration and pass, keyed apart
    from the forward pass; the keys save and load."""
    times = {"im2col": 3.0, "direct": 1.0, "winograd": 2.0, "winograd_f2": 2.5, "fft": 4.0}
    calls = fake_timings(monkeypatch, times)
    gy = np.random.default_rng(2).standard_normal((2, 16, 8, 8)).astype(np.float32)

    def run():
        if pass_ == "grad_input":
            return gemmconv.conv2d_grad_input(X.shape, W, gy, padding=1)
        return gemmconv.conv2d_grad_weight(X, W.shape, gy, padding=1)

    with gemmconv.autotune(max_seconds=None):
        got = run()
        run()
    assert sorted(calls) == ["direct", "fft", "im2col", "winograd", "winograd_f2"]  # once each (not 1x1)
    (key, choice), = gemmconv.tuning_cache._choices.items()
    assert json.loads(key)[-1] == pass_ and choice == "direct"
    want = (gemmconv.conv2d_grad_input(X.shape, W, gy, padding=1, strategy="direct") if pass_ == "grad_input"
            else gemmconv.conv2d_grad_weight(X, W.shape, gy, padding=1, strategy="direct"))
    np.testing.assert_array_equal(got, want)
    path = tmp_path / "t.json"
    gemmconv.tuning_cache.save(path)
    gemmconv.tuning_cache.clear()
    assert gemmconv.tuning_cache.load(path) == 1
    bad = json.loads(path.read_text())
    bad["choices"] = {json.dumps([*json.loads(key)[:5], "backward"]): "direct"}
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="has a key that is not a configuration"):
        gemmconv.tuning_cache.load(path)
