"""asv suites: large kernels, where the FFT meets the GEMM strategies, on the NumPy backend, N=1.

- ``TimeConvLarge.time_conv``: seconds per forward call of each strategy that runs the layer;
- ``TrackErrorLarge.track_rel_error``: max|y - ref| / max|ref| against ``direct`` in double precision (the FFT's
  error is relative to the largest magnitudes, as this measure is).

The layers (a subset of ``gemmconv.tools.layers.LAYERS_LARGE``, written out here so that the suite runs against
older commits): 11x11 and 15x15 at 56² (64 and 32 channels), a depthwise 31x31 at 28², a 1-D filter of 255 taps,
a 3-D 9³ filter, and sigpy's full mode (31x31 on 256², 8 channels, complex64). Commits without ``fft`` (or a
layer's function or dtype) skip them (``NotImplementedError`` in ``setup``), as do strategies that refuse a layer.
"""

import os

import numpy as np

import gemmconv

from .nd import random_problem

STRATEGIES = ["direct", "im2col", "fft", "auto"]
# name: (C, spatial size, K, kernel, padding, groups, dtype); every axis alike
LAYERS = {
    "k11_56": (64, (56, 56), 64, (11, 11), 5, 1, "float32"),
    "k15_56": (32, (56, 56), 32, (15, 15), 7, 1, "float32"),
    "dw31_28": (128, (28, 28), 128, (31, 31), 15, 128, "float32"),
    "sig_k255_16384": (16, (16384,), 16, (255,), 127, 1, "float32"),
    "vol9_32": (16, (32, 32, 32), 16, (9, 9, 9), 4, 1, "float32"),
    "sigpy_full31_256": (8, (256, 256), 8, (31, 31), 30, 1, "complex64"),
}
if os.environ.get("GEMMCONV_ASV_SMOKE"):  # CI's smoke run: the smallest layer
    LAYERS = {"dw31_28": LAYERS["dw31_28"]}


def _problem(layer, seed=0):
    c, size, k, kernel, padding, groups, dtype = LAYERS[layer]
    return (*random_problem(c, size, k, kernel, groups, dtype, seed), dict(padding=padding, groups=groups))


class _ConvLarge:
    params = (STRATEGIES, list(LAYERS))
    param_names = ["strategy", "layer"]

    def setup(self, strategy, layer):
        name = f"conv{len(LAYERS[layer][1])}d"
        if not hasattr(gemmconv, name) or strategy not in gemmconv.list_strategies():
            raise NotImplementedError(f"this commit has no gemmconv.{name} or no strategy {strategy!r}")
        self.fn = getattr(gemmconv, name)
        self.x, self.w, self.args = _problem(layer)
        self.strategy = strategy
        try:
            self.y = self.fn(self.x, self.w, strategy=strategy, **self.args)  # warm-up
        except (gemmconv.StrategyNotSupportedError, TypeError) as e:  # refused, or a dtype this commit lacks
            raise NotImplementedError(str(e)) from None


class TimeConvLarge(_ConvLarge):
    number = 1
    repeat = (3, 7, 2.0)  # at least 3, at most 7 samples, stop after 2 s
    rounds = 1
    warmup_time = 0.0

    def time_conv(self, strategy, layer):
        self.fn(self.x, self.w, strategy=self.strategy, **self.args)


class TrackErrorLarge(_ConvLarge):
    def track_rel_error(self, strategy, layer):
        wide = "complex128" if np.dtype(self.x.dtype).kind == "c" else "float64"
        ref = self.fn(self.x.astype(wide), self.w.astype(wide), strategy="direct", **self.args)
        return float(np.max(np.abs(self.y.astype(wide) - ref)) / np.max(np.abs(ref)))

    track_rel_error.unit = "max|y-ref|/max|ref|"
