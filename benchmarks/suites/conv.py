"""asv suites: every strategy on every backend, on a named layer set, at N=1 and N=8.

- ``TimeConv2d.time_conv2d``: seconds per call (GPU calls synchronise the device);
- ``PeakMemConv2d.peakmem_conv2d``: the process's peak memory, so im2col's column matrix shows;
- ``TrackError.track_rel_error``: max|y - ref| / max|ref| against a float64 reference computed by NumPy
  alone (sliding windows and einsum), so accuracy is tracked across commits too.

Combinations a strategy refuses, and backends that are not installed (CuPy without a GPU), raise
``NotImplementedError`` in ``setup``: asv skips them instead of reporting failures. The layer set is
written out here rather than imported, so the suite also runs against older commits.
"""

import contextlib
import os

import numpy as np

import gemmconv

STRATEGIES = ["direct", "im2col", "winograd", "winograd_f2", "1x1", "auto"]
BACKENDS = ["numpy", "cupy"]
# name: (C, H, W, K, KH, KW, stride, padding, groups)
LAYERS = {
    "stem7x7s2": (3, 224, 224, 64, 7, 7, 2, 3, 1),
    "conv3x3_56": (64, 56, 56, 64, 3, 3, 1, 1, 1),
    "conv3x3_28": (128, 28, 28, 128, 3, 3, 1, 1, 1),
    "conv3x3_14": (256, 14, 14, 256, 3, 3, 1, 1, 1),
    "conv3x3_7": (512, 7, 7, 512, 3, 3, 1, 1, 1),
    "conv3x3s2_56": (64, 56, 56, 128, 3, 3, 2, 1, 1),
    "conv1x1s2_56": (64, 56, 56, 128, 1, 1, 2, 0, 1),
    "r50_1x1_56": (256, 56, 56, 64, 1, 1, 1, 0, 1),
    "dw3x3_56": (128, 56, 56, 128, 3, 3, 1, 1, 128),
}
BATCHES = [1, 8]
if os.environ.get("GEMMCONV_ASV_SMOKE"):  # CI's smoke run: two small layers at N=1
    LAYERS = {name: LAYERS[name] for name in ("conv3x3_14", "dw3x3_56")}
    BATCHES = [1]


def _namespace(backend):
    if backend == "numpy":
        return np, lambda: None
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() < 1:
            raise NotImplementedError("no GPU")
    except Exception as e:  # noqa: BLE001 - CuPy missing, no driver, no device: all mean "skip"
        raise NotImplementedError(f"CuPy backend unavailable: {e}") from None
    return cupy, lambda: cupy.cuda.get_current_stream().synchronize()


def _problem(layer, batch, seed=0):
    c, h, w, k, kh, kw, stride, padding, groups = LAYERS[layer]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, c, h, w)).astype(np.float32)
    wt = (rng.standard_normal((k, c // groups, kh, kw)) / np.sqrt(c // groups * kh * kw)).astype(np.float32)
    b = rng.standard_normal(k).astype(np.float32)
    return x, wt, b, dict(stride=stride, padding=padding, groups=groups)


def _reference(x, w, b, stride, padding, groups):
    """float64 convolution by NumPy alone: sliding windows and one einsum per call."""
    x, w, b = (a.astype(np.float64) for a in (x, w, b))
    n, _c, _, _ = x.shape
    k, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
    oh, ow = win.shape[2:4]
    win = win.reshape(n, groups, cg, oh, ow, kh, kw)  # (N, G, C/G, OH, OW, KH, KW)
    wg = w.reshape(groups, k // groups, cg, kh, kw)  # (G, K/G, C/G, KH, KW)
    y = np.einsum("ngcpqrs,gkcrs->ngkpq", win, wg, optimize=True)
    return y.reshape(n, k, oh, ow) + b[None, :, None, None]


def _warm():
    """Compile (or load from numba's cache) every CPU kernel once, in the parent that asv forks from."""
    x = np.ones((1, 4, 9, 9), np.float32)
    for s in STRATEGIES:
        with contextlib.suppress(Exception):
            gemmconv.conv2d(x, np.ones((4, 4, 1 if s == "1x1" else 3, 1 if s == "1x1" else 3), np.float32),
                            strategy=s, padding=1)


_warm()


class _Conv:
    params = (STRATEGIES, BACKENDS, list(LAYERS), BATCHES)
    param_names = ["strategy", "backend", "layer", "batch"]

    def setup(self, strategy, backend, layer, batch):
        xp, self.sync = _namespace(backend)
        x, w, b, self.args = _problem(layer, batch)
        self.x, self.w, self.b = xp.asarray(x), xp.asarray(w), xp.asarray(b)
        self.strategy = strategy
        try:
            self.y = gemmconv.conv2d(self.x, self.w, self.b, strategy=strategy, **self.args)  # warm-up
        except gemmconv.StrategyNotSupportedError as e:
            raise NotImplementedError(str(e)) from None
        self.sync()

    def run(self):
        gemmconv.conv2d(self.x, self.w, self.b, strategy=self.strategy, **self.args)
        self.sync()


class TimeConv2d(_Conv):
    number = 1
    repeat = (3, 7, 2.0)  # at least 3, at most 7 samples, stop after 2 s
    rounds = 1
    warmup_time = 0.0

    def time_conv2d(self, strategy, backend, layer, batch):
        self.run()


class PeakMemConv2d(_Conv):
    def peakmem_conv2d(self, strategy, backend, layer, batch):
        self.run()


class TrackError(_Conv):
    params = (STRATEGIES, BACKENDS, list(LAYERS))
    param_names = ["strategy", "backend", "layer"]

    def setup(self, strategy, backend, layer):
        super().setup(strategy, backend, layer, 1)

    def track_rel_error(self, strategy, backend, layer):
        x, w, b, args = _problem(layer, 1)
        ref = _reference(x, w, b, **args)
        y = self.y.get() if hasattr(self.y, "get") else self.y
        return float(np.max(np.abs(y.astype(np.float64) - ref)) / np.max(np.abs(ref)))

    track_rel_error.unit = "max|y-ref|/max|ref|"
