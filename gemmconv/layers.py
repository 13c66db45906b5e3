"""Named layers of common networks, shared by the compare tool and the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LAYERS", "Layer"]


@dataclass(frozen=True)
class Layer:
    """One convolution layer (the batch size is chosen when its arrays are made).

    Attributes
    ----------
    name : str
        Short name used in tables and benchmark parameters.
    c, h, w, k, kh, kw : int
        Input channels, input height and width, output channels, kernel size.
    stride, padding, groups : int
        As in :func:`gemmconv.conv2d`.
    """

    name: str
    c: int
    h: int
    w: int
    k: int
    kh: int
    kw: int
    stride: int = 1
    padding: int = 0
    groups: int = 1

    @property
    def conv_args(self) -> dict[str, Any]:
        """Keyword arguments for :func:`gemmconv.conv2d`."""
        return dict(stride=self.stride, padding=self.padding, groups=self.groups)

    def arrays(self, n: int, dtype: str = "float32", seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Random ``x`` (N, C, H, W), ``w`` (K, C/G, KH, KW) scaled to unit output variance, and ``b`` (K,)."""
        rng = np.random.default_rng(seed)
        cg = self.c // self.groups
        x = rng.standard_normal((n, self.c, self.h, self.w)).astype(dtype)
        w = (rng.standard_normal((self.k, cg, self.kh, self.kw)) / np.sqrt(cg * self.kh * self.kw)).astype(dtype)
        b = rng.standard_normal(self.k).astype(dtype)
        return x, w, b

    def flops(self, n: int) -> int:
        """Direct-convolution flop count (2 per multiply-add) at batch ``n``."""
        oh = (self.h + 2 * self.padding - self.kh) // self.stride + 1
        ow = (self.w + 2 * self.padding - self.kw) // self.stride + 1
        return 2 * n * self.k * oh * ow * (self.c // self.groups) * self.kh * self.kw


#: ResNet-18's distinct 3x3 layers, its stride-2 3x3 and 1x1 shortcut, the 7x7 stem,
#: a ResNet-50 bottleneck 1x1 and a MobileNet-style depthwise 3x3
LAYERS: dict[str, Layer] = {
    layer.name: layer
    for layer in (
        Layer("stem7x7s2", 3, 224, 224, 64, 7, 7, stride=2, padding=3),
        Layer("conv3x3_56", 64, 56, 56, 64, 3, 3, padding=1),
        Layer("conv3x3_28", 128, 28, 28, 128, 3, 3, padding=1),
        Layer("conv3x3_14", 256, 14, 14, 256, 3, 3, padding=1),
        Layer("conv3x3_7", 512, 7, 7, 512, 3, 3, padding=1),
        Layer("conv3x3s2_56", 64, 56, 56, 128, 3, 3, stride=2, padding=1),
        Layer("conv1x1s2_56", 64, 56, 56, 128, 1, 1, stride=2),
        Layer("r50_1x1_56", 256, 56, 56, 64, 1, 1),
        Layer("dw3x3_56", 128, 56, 56, 128, 3, 3, padding=1, groups=128),
    )
}
