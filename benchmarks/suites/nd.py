"""asv suites: 1-D, 3-D and complex convolution, every strategy, on the NumPy backend, N=1.

- ``TimeConvND.time_conv``: seconds per forward call;
- ``TrackErrorND.track_rel_error``: max|y - ref| / max|ref| against the same convolution in double precision by
  ``direct`` (a plain loop, no transform), so Winograd's error and the complex pairs' show across commits.

Commits before ``conv1d`` / ``conv3d`` (or complex dtypes) existed skip these (``NotImplementedError`` in
``setup``), as do strategies that refuse a layer. The layers are written out here (a 1-D signal layer, a 3-D
volume layer and an MRI-like complex 3-D layer), not imported, so the suite runs against older commits.
"""

import os

import numpy as np

import gemmconv

STRATEGIES = ["direct", "im2col", "winograd", "winograd_f2", "1x1", "fft", "auto"]
# name: (C, spatial size, K, kernel, padding); every axis alike
LAYERS = {
    "sig_k9_16000": (64, (16000,), 64, (9,), 4),
    "vol3x3x3_16": (64, (16, 16, 16), 64, (3, 3, 3), 1),
    "mri5x5x5_32": (8, (32, 32, 32), 8, (5, 5, 5), 4),
}
DTYPES = ["float32", "complex64"]
if os.environ.get("GEMMCONV_ASV_SMOKE"):  # CI's smoke run: the smallest layer
    LAYERS = {"vol3x3x3_16": LAYERS["vol3x3x3_16"]}


def random_problem(c, size, k, kernel, groups, dtype, seed=0):
    """x (1, C, *size) and w (K, C/G, *kernel) of unit output variance, random (both parts, complex dtypes)."""
    rng = np.random.default_rng(seed)

    def draw(shape):
        a = rng.standard_normal(shape)
        if np.dtype(dtype).kind == "c":
            a = a + 1j * rng.standard_normal(shape)
        return a

    x = draw((1, c, *size)).astype(dtype)
    w = (draw((k, c // groups, *kernel)) / np.sqrt(c // groups * np.prod(kernel))).astype(dtype)
    return x, w


def _problem(layer, dtype, seed=0):
    c, size, k, kernel, padding = LAYERS[layer]
    return (*random_problem(c, size, k, kernel, 1, dtype, seed), dict(padding=padding))


def _function(layer):
    name = f"conv{len(LAYERS[layer][1])}d"
    if not hasattr(gemmconv, name):
        raise NotImplementedError(f"this commit has no gemmconv.{name}")
    return getattr(gemmconv, name)


class _ConvND:
    params = (STRATEGIES, list(LAYERS), DTYPES)
    param_names = ["strategy", "layer", "dtype"]

    def setup(self, strategy, layer, dtype):
        self.fn = _function(layer)
        self.x, self.w, self.args = _problem(layer, dtype)
        self.strategy = strategy
        try:
            self.y = self.fn(self.x, self.w, strategy=strategy, **self.args)  # warm-up
        except gemmconv.StrategyNotSupportedError as e:
            raise NotImplementedError(str(e)) from None
        except TypeError as e:  # a commit without complex dtypes
            raise NotImplementedError(str(e)) from None
        except ValueError as e:  # a commit without this strategy
            raise NotImplementedError(str(e)) from None


class TimeConvND(_ConvND):
    number = 1
    repeat = (3, 7, 2.0)  # at least 3, at most 7 samples, stop after 2 s
    rounds = 1
    warmup_time = 0.0

    def time_conv(self, strategy, layer, dtype):
        self.fn(self.x, self.w, strategy=self.strategy, **self.args)


class TrackErrorND(_ConvND):
    def track_rel_error(self, strategy, layer, dtype):
        wide = "complex128" if np.dtype(dtype).kind == "c" else "float64"
        ref = self.fn(self.x.astype(wide), self.w.astype(wide), strategy="direct", **self.args)
        return float(np.max(np.abs(self.y.astype(wide) - ref)) / np.max(np.abs(ref)))

    track_rel_error.unit = "max|y-ref|/max|ref|"
