"""A plan's ``kernels`` are the backend operations its calls run: recorded against the listing, per strategy and
pass; and a third-party ``prepare`` may still return a bare runner."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import gemmconv
from gemmconv.backends import get_backend, numpy_backend
from gemmconv.core.args import ConvArgs
from gemmconv.core.prepared import Prepared, as_prepared
from gemmconv.planning.plan import make_plan

#: the backend operations a prepared pass may name (the NumPy backend's kernels and its two padding helpers)
OPERATIONS = ("pad", "pad_adjoint", "im2col", "im2col_part", "matmul", "col2im_part", "direct", "direct_grad_weight",
              "winograd_filter", "winograd_input", "winograd_input_rows", "winograd_multiply", "winograd_output",
              "winograd_output_rows", "winograd_grad_tiles", "winograd_weight_multiply")


@pytest.fixture
def recorded(monkeypatch):
    """The outermost backend operations called (each name once) while the fixture is active."""
    backend = get_backend(np.zeros(1, np.float32))
    calls: list[str] = []
    local = threading.local()  # the depth of nested operations, per thread (blocks run on the pool's threads)

    def wrap(name, fn):
        def wrapper(*args, **kwargs):
            depth = getattr(local, "depth", 0)
            if depth == 0:
                calls.append(name)
            local.depth = depth + 1
            try:
                return fn(*args, **kwargs)
            finally:
                local.depth = depth
        return wrapper

    for name in OPERATIONS:
        monkeypatch.setattr(backend, name, wrap(name, getattr(backend, name)))
    kernel = numpy_backend._KERNELS["direct"]  # the small direct path launches the compiled kernel itself
    monkeypatch.setitem(numpy_backend._KERNELS, "direct", wrap("direct", kernel))
    return calls


rng = np.random.default_rng(0)
X = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
W3 = rng.standard_normal((6, 4, 3, 3)).astype(np.float32)
W1 = rng.standard_normal((6, 4, 1, 1)).astype(np.float32)

FORWARD = [("im2col", W3, {"padding": 1}), ("im2col", W3, {"padding": 1, "padding_mode": "reflect"}),
           ("direct", W3, {"padding": 1, "stride": 2}), ("winograd", W3, {"padding": 1}),
           ("winograd_f2", W3, {}), ("1x1", W1, {}), ("1x1", W1, {"stride": 2}), ("auto", W3, {"padding": 1})]


def _check(plan, call, calls: list[str]) -> None:
    calls.clear()
    call()
    assert calls, "nothing recorded: the fixture does not see the backend's operations"
    assert set(calls) == set(plan.kernels), (plan, calls)
    assert all(name in OPERATIONS for name in plan.kernels)


@pytest.mark.parametrize(("strategy", "w", "kw"), FORWARD)
def test_forward_plan_names_the_kernels_it_runs(recorded, strategy, w, kw):
    p = make_plan(X, w, None, ConvArgs(strategy=strategy, **kw))  # not cached: made while the fixture records
    _check(p, lambda: p(X, w), recorded)
    assert f"kernels {' -> '.join(p.kernels)}" in repr(p)


@pytest.mark.parametrize("strategy", ["im2col", "direct", "winograd", "1x1"])
@pytest.mark.parametrize("pass_", ["grad_input", "grad_weight", "transpose"])
def test_pass_plan_names_the_kernels_it_runs(recorded, strategy, pass_):
    w = W1 if strategy == "1x1" else W3
    kw = {} if strategy in ("1x1", "winograd") else {"padding": 1, "stride": 2}
    y = gemmconv.conv2d(X, w, **kw)
    gy = rng.standard_normal(y.shape).astype(np.float32)
    if pass_ == "grad_input":
        p = gemmconv.plan_grad_input(X.shape, w, gy, strategy=strategy, **kw)
        call = lambda: p(w, gy)  # noqa: E731
    elif pass_ == "grad_weight":
        p = gemmconv.plan_grad_weight(X, w.shape, gy, strategy=strategy, **kw)
        call = lambda: p(X, gy)  # noqa: E731
    else:  # the transposed convolution of gy by w (C_in = K)
        p = gemmconv.plan_conv_transpose2d(gy, w, None, strategy=strategy, **kw)
        call = lambda: p(gy, w)  # noqa: E731
    _check(p, call, recorded)


def test_reflect_padding_adds_its_pad_and_fold():
    y = gemmconv.conv2d(X, W3, padding=1, padding_mode="reflect")
    p = gemmconv.plan_grad_input(X.shape, W3, y, padding=1, padding_mode="reflect", strategy="im2col")
    assert p.kernels[-1] == "pad_adjoint"
    q = gemmconv.plan(X, W3, padding=1, padding_mode="reflect", strategy="im2col")
    assert q.kernels[0] == "pad"


def test_a_bare_runner_is_still_accepted():
    def prepare(backend, spec, limits):
        return lambda x, w, b, out: gemmconv.get_strategy("direct").run(backend, x, w, b, spec)

    s = gemmconv.register_strategy(gemmconv.Strategy("bare_runner", lambda *a: None, prepare=prepare))
    try:
        p = gemmconv.plan(X, W3, padding=1, strategy="bare_runner")
        np.testing.assert_allclose(p(X, W3), gemmconv.conv2d(X, W3, padding=1, strategy="direct"), rtol=1e-5)
        assert p.workspace_bytes == 0 and p.kernels == ()
    finally:
        gemmconv.unregister_strategy(s.name)


def test_as_prepared_refuses_what_is_not_callable():
    with pytest.raises(TypeError, match="must return a gemmconv Prepared or a callable"):
        as_prepared(42)
    p = Prepared(lambda a, b, c, out: a, ("matmul",), 10)
    assert as_prepared(p) is p
    wrapped = p.then(p, before=("pad",), workspace_bytes=5)
    assert wrapped.kernels == ("pad", "matmul") and wrapped.workspace_bytes == 15 and wrapped(1, 2, 3, None) == 1
