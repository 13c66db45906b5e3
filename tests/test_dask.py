"""conv2d on Dask arrays: every chunking against the in-memory result, laziness, the weights once, errors, and
a real distributed cluster."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest
from helpers import configs, tolerance
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gemmconv
from gemmconv.dask import conv as dask_conv
from gemmconv.dask import grad_input as dask_grad_input

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
cloudpickle = pytest.importorskip("cloudpickle")

RNG = np.random.default_rng(3)


def _chunks(draw, size: int) -> tuple[int, ...]:
    """Irregular chunks of ``size`` (some of one element), as a user might have them."""
    if size <= 1:
        return (size,)
    cuts = sorted(draw(st.sets(st.integers(1, size - 1), max_size=3)))
    return tuple(b - a for a, b in itertools.pairwise([0, *cuts, size]))


def _in_memory(x, w, b, args):
    try:
        return gemmconv.conv2d(x, w, b, **args)
    except ValueError:
        return None


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(), st.data())
def test_every_chunking_matches_the_in_memory_result(cfg, data):
    """Chunks along N, C, H and W (irregular, together or alone), with stride, dilation, padding forms and modes,
    groups and unbatched inputs: the lazy result, computed, equals the in-memory call on the whole array."""
    x, w, b, args = cfg
    ref = _in_memory(x, w, b, args)
    if ref is None:  # refused in memory: the Dask call must refuse it too (below, in its own tests)
        return
    strategy = data.draw(st.sampled_from(["auto", "auto", "direct", "im2col"]))
    spatial = x.shape[-2:]
    chunks = tuple(_chunks(data.draw, s) for s in spatial)
    channels = _chunks(data.draw, x.shape[-3])  # partial sums over channel chunks, groups split or whole
    if x.ndim == 4:
        chunks = (_chunks(data.draw, x.shape[0]), channels, *chunks)
    else:
        chunks = (channels, *chunks)
    xd = da.from_array(x, chunks=chunks)
    y = gemmconv.conv2d(xd, w, b, strategy=strategy, **args)
    assert isinstance(y, da.Array) and y.shape == ref.shape and y.dtype == ref.dtype
    got = y.compute(scheduler="sync")
    assert isinstance(got, np.ndarray)
    scale = max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    assert np.max(np.abs(got - ref), initial=0.0) <= 20 * tolerance("winograd", "winograd", x.dtype.name) * scale


@pytest.mark.parametrize("args", [dict(padding=1), dict(stride=2, padding=3, dilation=2),
                                  dict(padding="same", padding_mode="circular"),
                                  dict(padding=(2, 1), padding_mode="reflect", groups=2)])
def test_halos_wider_than_a_chunk_and_strides_across_chunks(args):
    """Chunks of one or two rows (narrower than the halo), strides that do not divide them."""
    x = RNG.standard_normal((3, 4, 17, 15))
    w = RNG.standard_normal((6, 4 // args.get("groups", 1), 5, 3))
    xd = da.from_array(x, chunks=(1, 4, (1, 2, 1, 6, 7), (2,) * 7 + (1,)))
    np.testing.assert_allclose(gemmconv.conv2d(xd, w, **args).compute(), gemmconv.conv2d(x, w, **args),
                               rtol=1e-12, atol=1e-12)


def test_the_result_is_lazy_until_computed():
    calls = []

    def make(block):
        calls.append(block.shape)
        return block

    x = da.from_array(RNG.standard_normal((4, 3, 12, 12)), chunks=(2, 3, 6, 6)).map_blocks(make, dtype=float)
    calls.clear()  # map_blocks may call it on an empty block to learn its type
    y = gemmconv.conv2d(x, RNG.standard_normal((2, 3, 3, 3)), padding=1)
    assert calls == [] and isinstance(y, da.Array)
    y.compute(scheduler="sync")
    assert calls


def test_the_weights_enter_the_graph_once():
    x = da.from_array(RNG.standard_normal((8, 16, 20, 20)), chunks=(2, 16, 7, 7))
    w, b = RNG.standard_normal((32, 16, 3, 3)), RNG.standard_normal(32)
    y = gemmconv.conv2d(x, w, b, padding=1)
    graph = dict(y.__dask_graph__())
    assert len(graph) > 4 * 9  # many tasks...
    size = len(cloudpickle.dumps(graph))
    assert size < 2 * w.nbytes + 4 * x.nbytes  # ...but w once (the input's chunks are in the graph too)
    held = [v for v in graph.values() if isinstance(getattr(v, "value", None), np.ndarray)
            and v.value.shape == w.shape]
    assert len(held) == 1


def test_chunks_along_n_alone_are_one_task_each():
    """No communication: each chunk of images is one convolution task (padding done by it), nothing else."""
    x = da.from_array(RNG.standard_normal((8, 3, 9, 9)), chunks=(2, 3, 9, 9))
    y = gemmconv.conv2d(x, RNG.standard_normal((4, 3, 3, 3)), padding=1, padding_mode="circular")
    layers = y.__dask_graph__().layers
    assert len(layers) == 3  # the input, the weights, the convolution
    assert len(y.__dask_graph__()) == 4 + 1 + 4


def test_dask_weights_stay_lazy_and_enter_once():
    x = da.from_array(RNG.standard_normal((4, 3, 9, 9)), chunks=(2, 3, 5, 9))
    w = RNG.standard_normal((4, 3, 3, 3))
    wd = da.from_array(w, chunks=(2, 3, 3, 3))
    np.testing.assert_allclose(gemmconv.conv2d(x, wd, padding=1).compute(),
                               gemmconv.conv2d(x.compute(), w, padding=1), rtol=1e-12)
    gy = RNG.standard_normal((4, 4, 9, 9))
    np.testing.assert_allclose(gemmconv.conv2d_grad_input((4, 3, 9, 9), wd, gy, padding=1).compute(),
                               gemmconv.conv2d_grad_input((4, 3, 9, 9), w, gy, padding=1), rtol=1e-12)


def test_bad_input_is_named_before_any_work():
    x = da.from_array(RNG.standard_normal((2, 4, 9, 9)), chunks=(1, 2, 9, 9))
    w = RNG.standard_normal((3, 4, 3, 3))
    with pytest.raises(ValueError, match="x must be 4-D"):
        gemmconv.conv2d(x[0, 0], w)
    with pytest.raises(TypeError, match="out= is not supported"):
        gemmconv.conv2d(x, w, out=np.empty((2, 3, 7, 7)))
    with pytest.raises(TypeError, match="w must be"):
        gemmconv.conv2d(x, w.tolist())
    with pytest.raises(TypeError, match="same dtype"):
        gemmconv.conv2d(x, w.astype(np.float32))
    with pytest.raises(ValueError, match=r"w.shape\[1\]"):
        gemmconv.conv2d(x, w[:, :2])
    with pytest.raises(gemmconv.StrategyNotSupportedError, match="needs a 1x1 kernel"):
        gemmconv.conv2d(x, w, strategy="1x1")
    with pytest.raises(ValueError, match="workspace_limit"):
        gemmconv.conv2d(x, w, strategy="im2col", workspace_limit=8)


def test_importing_gemmconv_and_numpy_calls_do_not_import_dask():
    code = ("import sys, numpy as np, gemmconv\n"
            "gemmconv.conv2d(np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3)))\n"
            "import gemmconv.api._dask_hook as hook\n"
            "assert not hook.any_dask(np.ones(2))\n"
            "sys.exit(1 if 'dask' in sys.modules or 'gemmconv.dask' in sys.modules else 0)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(("chunks", "groups", "cg", "kg", "pieces"), [
    ((4,), 1, 4, 6, [(0, 4, 0, 6, 1, 0, 4)]),
    ((3, 5), 2, 4, 3, [(0, 3, 0, 3, 1, 0, 3), (3, 4, 0, 3, 1, 3, 4), (4, 8, 3, 6, 1, 0, 4)]),
    ((3, 3, 2), 8, 1, 2, [(0, 3, 0, 6, 3, 0, 1), (3, 6, 6, 12, 3, 0, 1), (6, 8, 12, 16, 2, 0, 1)]),
    ((1, 6, 1), 2, 4, 1, [(0, 1, 0, 1, 1, 0, 1), (1, 4, 0, 1, 1, 1, 4), (4, 7, 1, 2, 1, 0, 3), (7, 8, 1, 2, 1, 3, 4)]),
])
def test_channel_chunks_become_whole_groups_or_parts_of_one(chunks, groups, cg, kg, pieces):
    assert dask_conv.channel_pieces(chunks, groups, cg, kg) == pieces


def test_channel_chunks_sum_by_a_tree_and_the_weights_stay_one_node():
    x = RNG.standard_normal((2, 16, 9, 9))
    w, b = RNG.standard_normal((6, 8, 3, 3)), RNG.standard_normal(6)
    xd = da.from_array(x, chunks=(2, (3, 2, 5, 6), 9, 9))
    y = gemmconv.conv2d(xd, w, b, groups=2, padding=1)
    np.testing.assert_allclose(y.compute(), gemmconv.conv2d(x, w, b, groups=2, padding=1), rtol=1e-12, atol=1e-12)
    graph = dict(y.__dask_graph__())
    held = [v for v in graph.values() if isinstance(getattr(v, "value", None), np.ndarray)
            and v.value.shape == w.shape]
    assert len(held) == 1


def test_output_bounds_cut_at_the_input_chunks():
    assert dask_conv.output_bounds((5, 5, 5), 1, 1, 3, 15) == [0, 5, 10, 15]
    assert dask_conv.output_bounds((1, 1, 13), 0, 2, 3, 7) == [0, 1, 7]
    assert dask_conv.output_bounds((4,), 0, 1, 3, 2) == [0, 2]


@pytest.fixture(scope="module")
def client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  worker_class=distributed.Nanny) as cluster, distributed.Client(cluster) as c:
        yield c


def test_on_a_distributed_cluster_of_two_processes(client):
    """A real engine: two worker processes, chunks along N and H, each block gemmconv's conv2d in a worker."""
    x = RNG.standard_normal((6, 8, 30, 28)).astype(np.float32)
    w = RNG.standard_normal((16, 8, 3, 3)).astype(np.float32)
    b = RNG.standard_normal(16).astype(np.float32)
    xd = da.from_array(x, chunks=(2, 8, 10, 28))
    y = gemmconv.conv2d(xd, w, b, padding=1, padding_mode="reflect")
    got = client.compute(y).result()
    np.testing.assert_allclose(got, gemmconv.conv2d(x, w, b, padding=1, padding_mode="reflect"), rtol=2e-4,
                               atol=2e-4)
    workers = client.run(lambda: __import__("os").getpid())
    assert len(set(workers.values())) == 2


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(), st.data())
def test_grad_weight_of_every_chunking_matches_the_in_memory_result(cfg, data):
    """conv2d_grad_weight with x chunked along N, C, H and W (grad_y a Dask array of other chunks, or in memory):
    the blocks' shares, added by a tree, equal the in-memory gradient."""
    x, w, b, args = cfg
    y = _in_memory(x, w, b, args)
    if y is None:
        return
    gy = np.random.default_rng(int(x.size)).uniform(-1, 1, y.shape).astype(x.dtype)
    ref = gemmconv.conv2d_grad_weight(x, w.shape, gy, **args)
    chunks = tuple(_chunks(data.draw, s) for s in x.shape)
    gyd = da.from_array(gy, chunks=tuple(_chunks(data.draw, s) for s in gy.shape)) if data.draw(st.booleans()) else gy
    got = gemmconv.conv2d_grad_weight(da.from_array(x, chunks=chunks), w.shape, gyd, **args)
    assert isinstance(got, da.Array) and got.shape == w.shape and got.dtype == x.dtype
    scale = max(1.0, float(np.max(np.abs(ref))))
    terms = max(1, y.size // max(1, w.shape[0]))
    assert np.max(np.abs(got.compute(scheduler="sync") - ref)) <= (
        tolerance("default", "default", x.dtype.name) * scale * max(1.0, terms / 100))


def test_grad_weight_bad_input_is_named_before_any_work():
    x = da.from_array(RNG.standard_normal((2, 4, 9, 9)), chunks=(1, 2, 9, 9))
    with pytest.raises(ValueError, match=r"grad_y must have shape \(2, 3, 7, 7\)"):
        gemmconv.conv2d_grad_weight(x, (3, 4, 3, 3), np.zeros((2, 3, 9, 9)))
    with pytest.raises(TypeError, match="out= is not supported"):
        gemmconv.conv2d_grad_weight(x, (3, 4, 3, 3), np.zeros((2, 3, 7, 7)), out=np.empty((3, 4, 3, 3)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(), st.data())
def test_grad_input_of_every_chunking_matches_the_in_memory_result(cfg, data):
    """conv2d_grad_input with grad_y chunked along N, K, OH and OW (irregular, with stride, dilation, padding
    forms and modes, groups, unbatched): each block of dL/dx gathered from the dL/dy its windows cover, the
    padding folded across the whole array, equals the in-memory gradient."""
    x, w, b, args = cfg
    y = _in_memory(x, w, b, args)
    if y is None:
        return
    gy = np.random.default_rng(int(x.size)).uniform(-1, 1, y.shape).astype(x.dtype)
    ref = gemmconv.conv2d_grad_input(x.shape, w, gy, **args)
    strategy = data.draw(st.sampled_from(["auto", "direct", "im2col"]))
    gyd = da.from_array(gy, chunks=tuple(_chunks(data.draw, s) for s in gy.shape))
    got = gemmconv.conv2d_grad_input(x.shape, w, gyd, strategy=strategy, **args)
    assert isinstance(got, da.Array) and got.shape == x.shape and got.dtype == x.dtype
    scale = max(1.0, float(np.max(np.abs(ref))) if ref.size else 1.0)
    assert np.max(np.abs(got.compute(scheduler="sync") - ref), initial=0.0) <= (
        20 * tolerance("default", "default", x.dtype.name) * scale)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_conv_transpose2d_of_every_chunking_matches_the_in_memory_result(data):
    """conv_transpose2d of a Dask x (stride, padding, dilation, output_padding, groups, bias, unbatched)."""
    g = data.draw(st.sampled_from([1, 2]))
    c_in, c_out = 2 * g, data.draw(st.integers(1, 3)) * g
    kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    sh, sw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    dh, dw = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    ph, pw = data.draw(st.integers(0, (kh - 1) * dh)), data.draw(st.integers(0, (kw - 1) * dw))
    oph, opw = data.draw(st.integers(0, max(sh, dh) - 1)), data.draw(st.integers(0, max(sw, dw) - 1))
    shape = (data.draw(st.integers(1, 3)), c_in, data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9)))
    rng = np.random.default_rng(sum(shape))
    x = rng.standard_normal(shape)
    w = rng.standard_normal((c_in, c_out // g, kh, kw))
    b = rng.standard_normal(c_out) if data.draw(st.booleans()) else None
    kwargs = dict(stride=(sh, sw), padding=(ph, pw), dilation=(dh, dw), output_padding=(oph, opw), groups=g)
    try:
        ref = gemmconv.conv_transpose2d(x, w, b, **kwargs)
    except ValueError:
        return
    if data.draw(st.booleans()):
        x, ref = x[0], ref[0]
    xd = da.from_array(x, chunks=tuple(_chunks(data.draw, s) for s in x.shape))
    got = gemmconv.conv_transpose2d(xd, w, b, **kwargs)
    assert isinstance(got, da.Array) and got.shape == ref.shape
    np.testing.assert_allclose(got.compute(scheduler="sync"), ref, rtol=1e-12, atol=1e-12)


def test_bands_of_dx_are_covered_by_the_windows_they_read():
    # 3-wide windows, stride 1, padding 1: position p is read by outputs p-2..p (in padded positions)
    assert dask_grad_input.bands((5, 5), 1, 10, 1, 1, 3, 10, padded=False) == [(1, 5, 0, 5), (5, 11, 3, 10)]
    # stride 3 over 2-wide windows skips every third position: a band there has no output
    assert dask_grad_input.bands((1, 1, 1), 0, 9, 0, 3, 2, 3, padded=False) == [(0, 3, 0, 1), (3, 6, 1, 2),
                                                                                 (6, 9, 2, 3)]
    assert dask_grad_input.bands((2, 1), 0, 9, 0, 3, 2, 3, padded=False)[1] == (6, 9, 2, 3)
    assert dask_grad_input.bands((4,), 2, 4, 2, 1, 5, 4, padded=True) == [(0, 8, 0, 4)]


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
@pytest.mark.parametrize(("size", "chunks"), [(20, (3, 14, 3)), (5, (2, 3)), (9, (1,) * 9)])
def test_fold_of_the_padding_acts_across_the_whole_array(mode, size, chunks):
    """The padding's gradient folds onto the elements it copies, from two end strips or the whole axis."""
    from gemmconv.backends import get_backend
    spec = gemmconv.plan(np.zeros((1, 1, size, size)), np.zeros((1, 1, 5, 5)), padding=(2, 2),
                         padding_mode=mode).spec
    g = RNG.standard_normal((1, 2, size + 4, size + 4))
    ref = get_backend(g, "g").pad_adjoint(g, spec)
    gd = da.from_array(g, chunks=(1, 2, (2, *chunks, 2), size + 4))
    got = dask_grad_input.fold(da, dask_grad_input.fold(da, gd, spec, 2), spec, 3)
    np.testing.assert_allclose(got.compute(), ref, rtol=1e-13, atol=1e-13)


def test_grad_input_chunks_along_n_alone_are_one_task_each_and_the_weights_once():
    gy = da.from_array(RNG.standard_normal((8, 4, 9, 9)), chunks=(2, 4, 9, 9))
    w = RNG.standard_normal((4, 3, 3, 3))
    dx = gemmconv.conv2d_grad_input((8, 3, 9, 9), w, gy, padding=1, padding_mode="reflect")
    assert len(dx.__dask_graph__()) == 4 + 1 + 4
    np.testing.assert_allclose(dx.compute(), gemmconv.conv2d_grad_input((8, 3, 9, 9), w, gy.compute(), padding=1,
                                                                        padding_mode="reflect"), rtol=1e-12)
    spatial = gemmconv.conv2d_grad_input((8, 3, 9, 9), w, gy.rechunk((2, 2, 4, 5)), padding=1)
    held = [v for v in dict(spatial.__dask_graph__()).values()
            if isinstance(getattr(v, "value", None), np.ndarray) and v.value.shape == w.shape]
    assert len(held) == 1


def test_grad_input_and_transpose_bad_input_is_named_before_any_work():
    gy = da.from_array(RNG.standard_normal((2, 3, 7, 7)), chunks=(1, 3, 4, 7))
    w = RNG.standard_normal((3, 4, 3, 3))
    with pytest.raises(ValueError, match="grad_y must be 4-D"):
        gemmconv.conv2d_grad_input((2, 4, 9, 9), w, gy[0, 0])
    with pytest.raises(ValueError, match=r"grad_y must have shape \(2, 3, 5, 5\)"):
        gemmconv.conv2d_grad_input((2, 4, 7, 7), w, gy)
    with pytest.raises(TypeError, match="out= is not supported for a Dask array grad_y"):
        gemmconv.conv2d_grad_input((2, 4, 9, 9), w, gy, out=np.empty((2, 4, 9, 9)))
    with pytest.raises(TypeError, match=r"grad_y must have the dtype of the other arrays \(float32\)"):
        gemmconv.conv2d_grad_input((2, 4, 9, 9), w.astype(np.float32), gy)
    with pytest.raises(gemmconv.StrategyNotSupportedError, match="needs a 1x1 kernel"):
        gemmconv.conv2d_grad_input((2, 4, 9, 9), w, gy, strategy="1x1")
    x = da.from_array(RNG.standard_normal((2, 3, 5, 5)), chunks=(1, 3, 2, 5))
    with pytest.raises(ValueError, match="output_padding"):
        gemmconv.conv_transpose2d(x, w, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"w.shape\[0\]"):
        gemmconv.conv_transpose2d(x, w[:2])
    with pytest.raises(gemmconv.StrategyNotSupportedError):
        gemmconv.conv_transpose2d(x, w, strategy="1x1")


def test_grad_input_on_a_distributed_cluster_of_two_processes(client):
    gy = RNG.standard_normal((4, 16, 15, 14)).astype(np.float32)
    w = RNG.standard_normal((16, 8, 3, 3)).astype(np.float32)
    gyd = da.from_array(gy, chunks=(2, (10, 6), 8, 7))
    dx = gemmconv.conv2d_grad_input((4, 8, 30, 28), w, gyd, stride=2, padding=1, padding_mode="circular")
    np.testing.assert_allclose(client.compute(dx).result(), gemmconv.conv2d_grad_input(
        (4, 8, 30, 28), w, gy, stride=2, padding=1, padding_mode="circular"), rtol=2e-4, atol=2e-4)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_gathered_slab_is_the_window_of_the_padded_array(data):
    """Any window of the array padded in any mode (reflect under the size, circular at most the size), from
    any chunks: the strips and the copies of :class:`~gemmconv.dask.gather.Gather` give ``np.pad``'s values."""
    from gemmconv.dask.gather import Gather
    mode = data.draw(st.sampled_from(["zeros", "reflect", "replicate", "circular"]))
    shape = (data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3)), data.draw(st.integers(2, 9)),
             data.draw(st.integers(2, 9)))
    limit = {"reflect": lambda s: s - 1, "circular": lambda s: s}.get(mode, lambda s: 6)
    pads = ((0, 0), (0, 0), *((data.draw(st.integers(0, limit(s))), data.draw(st.integers(0, limit(s))))
                              for s in shape[2:]))
    x = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    xd = da.from_array(x, chunks=tuple(_chunks(data.draw, s) for s in shape))
    padded = np.pad(x, pads, mode={"zeros": "constant", "replicate": "edge", "circular": "wrap"}.get(mode, mode))
    window = []
    for s in padded.shape:
        lo = data.draw(st.integers(0, s - 1))
        window.append((lo, data.draw(st.integers(lo + 1, s))))
    gather = Gather(xd, pads, mode, "test-gather")
    task = gather.task(tuple(window))
    graph = {**dict(xd.__dask_graph__()), **gather.layer, "slab": task}
    got = dask.get(graph, "slab")
    np.testing.assert_array_equal(got, padded[tuple(slice(lo, hi) for lo, hi in window)])
    for strip in gather.layer.values():  # a strip is never longer than the window (circular may read both ends)
        assert mode == "circular" or all(sl.stop - sl.start <= hi - lo
                                         for sl, (lo, hi) in zip(strip[2], window, strict=True))


def test_a_block_reads_its_own_chunk_and_thin_strips_of_its_neighbours():
    x = da.from_array(RNG.standard_normal((2, 3, 40, 40)), chunks=(2, 3, 20, 20))
    y = gemmconv.conv2d(x, RNG.standard_normal((4, 3, 3, 3)), padding=1)
    graph = dict(y.__dask_graph__())
    strips = [v for k, v in graph.items() if isinstance(k, tuple) and "-strip-" in str(k[0])]
    assert len(strips) == 4 * 3  # each chunk gives a row, a column and a corner to its three neighbours
    for _, _, index in strips:
        assert min(index[2].stop - index[2].start, index[3].stop - index[3].start) == 1
    assert len(graph) == 4 + 12 + 1 + 4  # chunks, strips, weights, blocks: nothing else
