"""Strided grad_input two ways, in one process: im2col's col2im, and the polyphase decomposition into stride-1
convolutions of grad_y (``gemmconv/strategies/adjoint.py``) run by im2col's forward pass, against torch's
``convolution_backward`` (grad_input alone).

    python benchmarks/polyphase_ab.py

Each case is a forward convolution whose grad_input (the transposed convolution of the same shapes) is timed:
the stride-2 layers of ResNet-18 and the decoders of ``vs_torch_backward.py``. Median of 15 calls each; the last
column is the largest difference between the two, relative to the largest value. Needs torch.
"""

from __future__ import annotations

import numpy as np
import torch
from _timing import median_time  # benchmarks/ is on sys.path when this script runs

from gemmconv.core.args import ConvArgs
from gemmconv.planning.validate import validate
from gemmconv.strategies import adjoint, im2col, im2col_grad

POLYPHASE = adjoint.grad_input_pass(im2col.prepare, im2col.supports, ("im2col",))

#: (name, N, C, H, K, kernel, stride, padding) of the forward convolution
CASES = [("conv3x3s2_56", 1, 64, 56, 128, 3, 2, 1), ("conv3x3s2_56", 8, 64, 56, 128, 3, 2, 1),
         ("stem7x7s2", 1, 3, 224, 64, 7, 2, 3), ("stem7x7s2", 8, 3, 224, 64, 7, 2, 3),
         ("up4x4s2_8", 1, 128, 16, 256, 4, 2, 1), ("up4x4s2_8", 8, 128, 16, 256, 4, 2, 1),
         ("up4x4s2_16", 8, 64, 32, 128, 4, 2, 1), ("up3x3s2_28", 8, 64, 56, 128, 3, 2, 1),
         ("up2x2s2_28", 8, 64, 56, 128, 2, 2, 0)]


def median_ms(fn, calls: int = 15) -> float:
    return median_time(fn, calls) * 1e3


def main() -> None:
    rng = np.random.default_rng(0)
    for name, n, c, h, k, kernel, s, p in CASES:
        x = rng.standard_normal((n, c, h, h)).astype(np.float32)
        w = rng.standard_normal((k, c, kernel, kernel)).astype(np.float32)
        v = validate(x, w, None, ConvArgs(stride=s, padding=p))
        gy = rng.standard_normal(v.spec.out_shape).astype(np.float32)
        col2im = im2col_grad.GRAD_INPUT.prepare(v.backend, v.spec, v.limits)
        poly = POLYPHASE.prepare(v.backend, v.spec, v.limits)
        a, b = col2im(gy, w, None, None), poly(gy, w, None, None)
        diff = float(np.abs(a - b).max() / np.abs(a).max())
        tg, tw, tx = (torch.from_numpy(arr) for arr in (gy, w, x))
        t_torch = median_ms(lambda: torch.ops.aten.convolution_backward(
            tg, tx, tw, None, [s, s], [p, p], [1, 1], False, [0, 0], 1, [True, False, False]))
        t_col = median_ms(lambda: col2im(gy, w, None, None))
        t_poly = median_ms(lambda: poly(gy, w, None, None))
        print(f"{name:14s} N={n}  col2im {t_col:7.2f} ms ({t_col / t_torch:.2f}x)  polyphase {t_poly:7.2f} ms "
              f"({t_poly / t_torch:.2f}x)  torch {t_torch:.2f}  diff {diff:.1e}")


if __name__ == "__main__":
    main()
