"""asv suites of the backward passes: every strategy that has a pass, on ResNet-18's layers, at N=1 and N=8.

- ``TimeBackward.time_pass``: seconds per call of ``conv2d_grad_input``, ``conv2d_grad_weight`` or
  ``conv_transpose2d`` (the transposed convolution of the layer's output shape back to its input's);
- ``TrackBackwardError.track_pass_error``: max|g - ref| / max|ref| against the same pass in float64, computed
  by NumPy alone (the adjoint of a sliding-window convolution, by einsum), so accuracy is tracked too.

As in ``conv.py``: refused combinations, and a missing GPU, raise ``NotImplementedError`` in ``setup`` (asv
skips them); the layers are conv.py's, and a commit before the backward passes existed skips them all.
"""

import os

import numpy as np

import gemmconv

from .conv import LAYERS as _CONV_LAYERS
from .conv import _namespace  # the array library of a backend, and how to wait for it

STRATEGIES = ["direct", "im2col", "winograd", "winograd_f2", "1x1", "auto"]
PASSES = ["grad_input", "grad_weight", "transpose"]
# ResNet-18's layers of conv.py (name: (C, H, W, K, KH, KW, stride, padding, groups)); in CI's smoke run
# (GEMMCONV_ASV_SMOKE) those conv.py keeps, at N=1
LAYERS = {name: _CONV_LAYERS[name] for name in ("conv3x3_56", "conv3x3_14", "conv3x3s2_56", "conv1x1s2_56", "dw3x3_56")
          if name in _CONV_LAYERS}
BATCHES = [1] if os.environ.get("GEMMCONV_ASV_SMOKE") else [1, 8]


def _problem(layer, batch, seed=0):
    """x, w, the upstream gradient gy (of the output's shape) and the convolution's keywords, in float64."""
    c, h, w, k, kh, kw, stride, padding, groups = LAYERS[layer]
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, c, h, w))
    wt = rng.standard_normal((k, c // groups, kh, kw)) / np.sqrt(c // groups * kh * kw)
    oh, ow = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    gy = rng.standard_normal((batch, k, oh, ow))
    return x, wt, gy, dict(stride=stride, padding=padding, groups=groups)


def _reference(pass_, x, w, gy, stride, padding, groups):
    """The pass in float64 by NumPy alone: the forward's sliding windows, and their adjoint by einsum."""
    n, c, h, wd = x.shape
    k, cg, kh, kw = w.shape
    oh, ow = gy.shape[2:]
    gyg = gy.reshape(n, groups, k // groups, oh, ow)  # (N, G, K/G, OH, OW)
    if pass_ == "grad_weight":
        xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
        win = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(2, 3))[:, :, ::stride, ::stride]
        win = win[:, :, :oh, :ow].reshape(n, groups, cg, oh, ow, kh, kw)  # (N, G, C/G, OH, OW, KH, KW)
        return np.einsum("ngcpqrs,ngkpq->gkcrs", win, gyg, optimize=True).reshape(k, cg, kh, kw)
    wg = w.reshape(groups, k // groups, cg, kh, kw)  # (G, K/G, C/G, KH, KW)
    cols = np.einsum("gkcrs,ngkpq->ngcrspq", wg, gyg, optimize=True)  # each tap's contribution
    dx = np.zeros((n, groups, cg, h + 2 * padding, wd + 2 * padding))
    for r in range(kh):
        for s in range(kw):
            dx[:, :, :, r:r + (oh - 1) * stride + 1:stride, s:s + (ow - 1) * stride + 1:stride] += cols[:, :, :, r, s]
    return dx[:, :, :, padding:padding + h, padding:padding + wd].reshape(n, c, h, wd)


class _Pass:
    params = (STRATEGIES, PASSES, ["numpy", "cupy"], list(LAYERS), BATCHES)
    param_names = ["strategy", "pass", "backend", "layer", "batch"]

    def setup(self, strategy, pass_, backend, layer, batch):
        if not hasattr(gemmconv, "conv2d_grad_input"):
            raise NotImplementedError("this commit has no backward passes")
        xp, self.sync = _namespace(backend)
        x, w, gy, args = _problem(layer, batch)
        x, w, gy = (xp.asarray(a.astype(np.float32)) for a in (x, w, gy))
        if pass_ == "grad_input":
            self.call = lambda: gemmconv.conv2d_grad_input(x.shape, w, gy, strategy=strategy, **args)
        elif pass_ == "grad_weight":
            self.call = lambda: gemmconv.conv2d_grad_weight(x, w.shape, gy, strategy=strategy, **args)
        else:  # the transposed convolution of gy is the grad_input pass: output of x's shape (output_padding 0)
            self.call = lambda: gemmconv.conv_transpose2d(gy, w, strategy=strategy, **args)
        try:
            self.result = self.call()  # warm-up
        except gemmconv.StrategyNotSupportedError as e:
            raise NotImplementedError(str(e)) from None
        self.sync()

    def run(self):
        self.call()
        self.sync()


class TimeBackward(_Pass):
    number = 1
    repeat = (3, 7, 2.0)
    rounds = 1
    warmup_time = 0.0

    def time_pass(self, strategy, pass_, backend, layer, batch):
        self.run()


class TrackBackwardError(_Pass):
    params = (STRATEGIES, PASSES, ["numpy", "cupy"], list(LAYERS))
    param_names = ["strategy", "pass", "backend", "layer"]

    def setup(self, strategy, pass_, backend, layer):
        super().setup(strategy, pass_, backend, layer, 1)

    def track_pass_error(self, strategy, pass_, backend, layer):
        x, w, gy, args = _problem(layer, 1)
        x, w, gy = (a.astype(np.float32).astype(np.float64) for a in (x, w, gy))  # what the pass saw
        ref = _reference("grad_weight" if pass_ == "grad_weight" else "grad_input", x, w, gy, **args)
        got = self.result.get() if hasattr(self.result, "get") else self.result
        if pass_ == "transpose":  # output_padding 0: the rows and columns no stride reaches past the last are cut
            ref = ref[..., :got.shape[-2], :got.shape[-1]]
        return float(np.max(np.abs(got.astype(np.float64) - ref)) / np.max(np.abs(ref)))

    track_pass_error.unit = "max|g-ref|/max|ref|"
