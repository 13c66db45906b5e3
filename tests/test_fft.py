"""``strategy="fft"``: tiled (overlap-save) against torch in float64 / complex128 with tiles forced small, so that
the seams between tiles are exercised on small inputs; the tiling's cost model; the weights' spectra cache (its
key, its content check, its byte bound); refusals; SciPy imported on the first transform only."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from test_dims import TOLERANCE, _fn, layers, oracle

import gemmconv
from gemmconv.core.args import ConvArgs
from gemmconv.planning.validate import validate
from gemmconv.strategies import fft_phases, fft_spectra, fft_tiling

FFT = 5  # as test_dims: on the scale of helpers.fft_floor


@contextlib.contextmanager
def _short_tiles(longest: int | None, stride_by: str | None = None):
    """Transforms of at most ``longest`` positions per axis (at least the kernel's extent): many tiles; strided
    passes by ``stride_by`` (the polyphase split or subsampling)."""
    saved = fft_tiling.LONGEST, fft_tiling.STRIDE_BY
    fft_tiling.LONGEST, fft_tiling.STRIDE_BY = longest, stride_by
    gemmconv.clear_caches()  # no plan made with other tiles serves these calls, nor these plans later ones
    try:
        yield
    finally:
        fft_tiling.LONGEST, fft_tiling.STRIDE_BY = saved
        gemmconv.clear_caches()


def _bound(a, b, terms: int) -> float:
    return float(np.max(np.abs(a), initial=0.0)) * float(np.max(np.abs(b), initial=0.0)) * terms


@pytest.mark.parametrize("ndim", [1, 2, 3])
@settings(max_examples=40, deadline=None)
@given(data=st.data(), complex_=st.booleans(), longest=st.integers(1, 8), room=st.none() | st.floats(1.0, 4.0),
       stride_by=st.sampled_from(["polyphase", "subsample"]))
def test_every_pass_in_small_tiles_against_torch(ndim, data, complex_, longest, room, stride_by):
    """With a workspace limit (``room`` times the least each pass keeps to), the passes run in chunks of images and
    rows of tiles; strided ones by the polyphase split or by subsampling (where that keeps to the limit)."""
    x, w, b, args = data.draw(layers(ndim, complex_))
    found = oracle(ndim, x, w, b, data.draw(st.integers(0, 2**31)), args)
    if found is None:
        return  # torch refuses it: test_dims checks that gemmconv does too
    y_ref, gy, gx_ref, gw_ref = found
    dtype = data.draw(st.sampled_from(["complex128", "complex64"] if complex_ else ["float64", "float32"]))
    xs, ws, gys = (a.astype(dtype) for a in (x, w, gy))
    bs = None if b is None else b.astype(dtype)
    spec = validate(xs, ws, None, ConvArgs(**args), ndim=ndim).spec
    taps = int(np.prod(spec.kernel))
    with _short_tiles(longest, stride_by):
        copy = spec.padded_bytes if spec.pads_explicitly(True) else 0  # a padding mode's copy counts too
        limit = {p: None if room is None else int(room * fft_tiling.least_workspace(spec, p)) + copy
                 for p in ("forward", "grad_input", "grad_weight")}
        got = {"forward": _fn("conv{}d", ndim)(xs, ws, bs, strategy="fft", workspace_limit=limit["forward"], **args),
               "grad_input": _fn("conv{}d_grad_input", ndim)(x.shape, ws, gys, strategy="fft",
                                                              workspace_limit=limit["grad_input"], **args),
               "grad_weight": _fn("conv{}d_grad_weight", ndim)(xs, w.shape, gys, strategy="fft",
                                                                workspace_limit=limit["grad_weight"], **args)}
    scales = {"forward": _bound(x, w, spec.cg * taps) + (0 if b is None else float(np.max(np.abs(b)))),
              "grad_input": _bound(gy, w, spec.kg * taps),
              "grad_weight": _bound(x, gy, spec.n * int(np.prod(spec.out_size)))}
    for pass_, ref in (("forward", y_ref), ("grad_input", gx_ref), ("grad_weight", gw_ref)):
        assert got[pass_].shape == ref.shape and got[pass_].dtype == np.dtype(dtype)
        err = float(np.max(np.abs(got[pass_] - ref), initial=0.0)) / max(scales[pass_], 1e-300)
        assert err <= TOLERANCE[dtype] * FFT, (pass_, dtype, longest, err)


@pytest.mark.parametrize(("size", "kernel", "longest"),
                         [((40, 37), (5, 3), 8), ((300,), (31,), 40), ((9, 10, 11), (3, 3, 3), 4)])
def test_the_tiles_cover_the_outputs_and_forced_tiles_are_many(size, kernel, longest):
    backend = gemmconv.get_backend(np.zeros(1))
    outputs = tuple(s - k + 1 for s, k in zip(size, kernel, strict=True))
    with _short_tiles(longest):
        tile = fft_tiling.tiling(backend, fft_tiling.Geometry(outputs, kernel, 2, 3, 4, 3, True, 8))
    assert tile.tiles > 1 and all(n <= max(longest, e) for n, e in zip(tile.length, kernel, strict=True))
    for o, s, c, n, e in zip(outputs, tile.step, tile.count, tile.length, kernel, strict=True):
        assert s == n - e + 1 and c * s >= o > (c - 1) * s  # every output in exactly one tile
    x = np.random.default_rng(0).standard_normal((2, 3, *size))
    w = np.random.default_rng(1).standard_normal((4, 3, *kernel))
    ref = getattr(F, f"conv{len(size)}d")(torch.from_numpy(x), torch.from_numpy(w)).numpy()
    with _short_tiles(longest):
        got = _fn("conv{}d", len(size))(x, w, strategy="fft")
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * np.abs(ref).max())


def test_the_cost_model_tiles_a_long_input_and_not_a_short_one():
    backend = gemmconv.get_backend(np.zeros(1))
    long = fft_tiling.tiling(backend, fft_tiling.Geometry((16384,), (255,), 1, 16, 16, 16, True, 4))
    short = fft_tiling.tiling(backend, fft_tiling.Geometry((12, 12), (5, 5), 1, 8, 8, 8, True, 4))
    assert long.tiles > 1 and long.length[0] < 16384
    assert short.tiles == 1


def test_weight_spectra_are_cached_by_contents_and_key_and_bounded():
    cache = fft_spectra.SPECTRA_CACHE
    gemmconv.clear_caches()
    rng = np.random.default_rng(2)
    x, w = rng.standard_normal((1, 4, 20, 20)), rng.standard_normal((4, 4, 5, 5))
    first = gemmconv.conv2d(x, w, strategy="fft", padding=2)
    assert len(cache) == 1 and cache.misses >= 1
    hits = cache.hits
    np.testing.assert_array_equal(gemmconv.conv2d(x, w, strategy="fft", padding=2), first)
    assert cache.hits == hits + 1
    w[0, 0, 0, 0] += 1.0  # changed in place: never served the old spectrum
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=2).numpy()
    np.testing.assert_allclose(gemmconv.conv2d(x, w, strategy="fft", padding=2), ref, atol=1e-11)
    gemmconv.conv2d(x, w.reshape(2, 8, 5, 5)[:, :2].copy(), strategy="fft", padding=2, groups=2)  # another key
    gemmconv.conv2d(x, w, strategy="fft", padding=2, dilation=2)  # another dilation: another key
    assert len(cache) >= 3
    saved = cache.max_bytes
    try:
        cache.max_bytes = 200_000  # about two of these entries (a copy of w and its spectrum each)
        for dilation in (1, 2, 3):
            gemmconv.conv2d(x, w, strategy="fft", padding=1, dilation=dilation)
        assert 0 < cache.nbytes <= 200_000 and len(cache) < 3  # the least recently used were dropped
    finally:
        cache.max_bytes = saved
    gemmconv.clear_caches()
    assert len(cache) == 0 and cache.nbytes == 0


def test_a_workspace_limit_below_one_row_of_tiles_is_refused_naming_the_least():
    x, w = np.ones((1, 4, 64, 64)), np.ones((4, 4, 7, 7))
    spec = validate(x, w, None, ConvArgs()).spec
    need = fft_tiling.least_workspace(spec)
    with pytest.raises(gemmconv.StrategyNotSupportedError, match=rf"least {need} bytes .* workspace_limit=1000") as e:
        gemmconv.conv2d(x, w, strategy="fft", workspace_limit=1000)
    assert "fft" not in e.value.alternatives
    assert gemmconv.plan(x, w, strategy="fft", workspace_limit=need).workspace_bytes <= need  # the least is enough


@pytest.mark.parametrize("pass_", ["forward", "grad_input", "grad_weight"])
@pytest.mark.parametrize(("shape", "kernel", "args", "chunk"), [
    ((3, 8, 40, 40), (7, 7), dict(padding=3), "images"),
    ((1, 8, 64, 64), (9, 9), dict(padding=4, stride=2), "rows"),
    ((1, 4, 4000), (63,), dict(padding=31), "rows"),
    ((2, 4, 12, 20, 20), (3, 5, 5), dict(padding=(1, 2, 2), dilation=(1, 2, 1)), "rows"),
    ((2, 3, 67, 67), (11, 11), dict(padding=2, stride=4), "polyphase"),
])
def test_the_passes_keep_to_a_workspace_limit_in_chunks(pass_, shape, kernel, args, chunk):
    """Under a limit the passes run in chunks (whole images, else rows of tiles of one image; the polyphase split's
    too): the peak of the temporary memory (beyond the result) stays under the limit, the plan reports at most the
    limit, and the result is the unlimited one's."""
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal(shape), rng.standard_normal((8, shape[1], *kernel))
    spec = validate(x, w, None, ConvArgs(**args), ndim=len(kernel)).spec
    gy = rng.standard_normal(spec.out_shape)
    backend = gemmconv.get_backend(x)
    d = len(kernel)
    call, plan = {
        "forward": (lambda lim: _fn("conv{}d", d)(x, w, strategy="fft", workspace_limit=lim, **args),
                    lambda lim: gemmconv.plan(x, w, strategy="fft", workspace_limit=lim, **args)),
        "grad_input": (lambda lim: _fn("conv{}d_grad_input", d)(x.shape, w, gy, strategy="fft", workspace_limit=lim,
                                                               **args),
                       lambda lim: gemmconv.plan_grad_input(x.shape, w, gy, strategy="fft", workspace_limit=lim,
                                                            **args)),
        "grad_weight": (lambda lim: _fn("conv{}d_grad_weight", d)(x, w.shape, gy, strategy="fft",
                                                                 workspace_limit=lim, **args),
                        lambda lim: gemmconv.plan_grad_weight(x, w.shape, gy, strategy="fft", workspace_limit=lim,
                                                              **args)),
    }[pass_]
    full = call(None)
    whole = plan(None).workspace_bytes
    least = fft_tiling.least_workspace(spec, pass_)
    if chunk == "polyphase":  # the least of the split (which may exceed subsampling's)
        phases = fft_phases.phased(spec)
        least = fft_tiling._least(phases, pass_) + fft_tiling._split_bytes(phases, True)
    limit = max(least, whole // 2) if chunk == "images" else least
    assert whole > limit  # the unlimited pass would not keep to it
    chosen = fft_tiling.cut(backend, spec, pass_, gemmconv.core.spec.Limits(workspace=limit))
    tile = chosen.tile
    assert chosen.phases == (chunk == "polyphase")
    assert tile.chunk is not None and (tile.chunk[1] < tile.count[0]) == (chunk != "images")
    assert plan(limit).workspace_bytes <= limit
    call(limit)  # the plan made and the worker threads started (and their code compiled) before the tracing
    got, peak = backend.profiler.peak_memory(lambda: call(limit))
    assert peak <= limit
    np.testing.assert_allclose(got, full, rtol=0, atol=1e-12 * np.abs(full).max())


def test_importing_gemmconv_does_not_import_scipy_fft():
    code = "import sys, gemmconv; sys.exit(1 if 'scipy.fft' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code], timeout=300).returncode == 0


def test_non_finite_input_reaches_the_whole_transform():
    x = np.zeros((1, 1, 16, 16))
    x[0, 0, 3, 3] = np.nan
    y = gemmconv.conv2d(x, np.ones((1, 1, 3, 3)), strategy="fft", padding=1)
    assert np.isnan(y[0, 0, 2:5, 2:5]).all()  # the outputs that read it, and (documented) others of its tiles


@pytest.mark.parametrize(("x_shape", "w_shape", "kwargs", "expected"), [
    ((1, 16, 4096), (16, 16, 255), dict(padding=127), "fft"),  # 255 taps: the FFT by far
    ((1, 32, 56, 56), (32, 32, 15, 15), dict(padding=7), "fft"),
    ((1, 64, 56, 56), (64, 64, 3, 3), dict(padding=1), "winograd"),  # 9 taps: never weighed
    ((1, 8, 28, 28), (8, 8, 5, 5), dict(padding=2), "im2col"),  # 25 taps of little work: the GEMM
    ((1, 32, 56, 56), (32, 32, 15, 15), dict(padding=7, workspace_limit=100_000), "direct"),  # fft and im2col need more
])
def test_auto_weighs_the_fft_on_large_kernels(x_shape, w_shape, kwargs, expected):
    x, w = np.zeros(x_shape, np.float32), np.zeros(w_shape, np.float32)
    assert gemmconv.choose_strategy(x, w, **kwargs) == expected
    if expected == "fft":  # and for the gradients of the same layer
        gy = np.zeros(gemmconv.plan(x, w, **kwargs).out_shape, np.float32)
        assert gemmconv.plan_grad_input(x.shape, w, gy, **kwargs).strategy == "fft"
        assert gemmconv.plan_grad_weight(x, w.shape, gy, **kwargs).strategy == "fft"


def test_auto_runs_the_fft_in_chunks_under_a_workspace_limit():
    x, w = np.zeros((1, 32, 56, 56), np.float32), np.zeros((32, 32, 15, 15), np.float32)
    unlimited = gemmconv.plan(x, w, padding=7)
    limited = gemmconv.plan(x, w, padding=7, workspace_limit=24 << 20)
    assert unlimited.strategy == limited.strategy == "fft"
    assert limited.workspace_bytes <= 24 << 20 < unlimited.workspace_bytes


def test_a_strided_pass_runs_as_the_convolution_of_its_phases_where_the_model_predicts_it_faster():
    """AlexNet's 11x11/4 layer (3 channels): the split transforms back 1/16 of the outputs that subsampling does;
    the plan shows it, and either way forced gives torch's result."""
    rng = np.random.default_rng(5)
    x, w = rng.standard_normal((1, 3, 67, 67)), rng.standard_normal((8, 3, 11, 11))
    args = dict(stride=4, padding=2)
    spec = validate(x, w, None, ConvArgs(**args)).spec
    backend = gemmconv.get_backend(x)
    chosen = fft_tiling.cut(backend, spec, "forward")
    assert chosen.phases and chosen.runs.c == 3 * 16 and chosen.runs.kernel == (3, 3) and chosen.runs.stride == (1, 1)
    assert gemmconv.plan(x, w, strategy="fft", **args).kernels[0] == "split"
    ref = F.conv2d(torch.from_numpy(x), torch.from_numpy(w), **args).numpy()
    for way in ("polyphase", "subsample"):
        with _short_tiles(None, way):
            assert (gemmconv.plan(x, w, strategy="fft", **args).kernels[0] == "split") == (way == "polyphase")
            np.testing.assert_allclose(gemmconv.conv2d(x, w, strategy="fft", **args), ref, atol=1e-11)
