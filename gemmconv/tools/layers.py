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
    stride, padding, dilation, groups, padding_mode
        As in :func:`gemmconv.conv2d`: ``stride`` and ``dilation`` an int or a pair, ``padding`` an int, a
        pair, ``"same"`` or ``"valid"``.
    """

    name: str
    c: int
    h: int
    w: int
    k: int
    kh: int
    kw: int
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] | str = 0
    groups: int = 1
    dilation: int | tuple[int, int] = 1
    padding_mode: str = "zeros"

    @property
    def conv_args(self) -> dict[str, Any]:
        """Keyword arguments for :func:`gemmconv.conv2d` (``padding_mode`` only if not ``"zeros"``, so that
        ``torch.nn.functional.conv2d`` takes them too)."""
        args: dict[str, Any] = dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                                    groups=self.groups)
        if self.padding_mode != "zeros":
            args["padding_mode"] = self.padding_mode
        return args

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
        (sh, sw), (dh, dw) = _pair(self.stride), _pair(self.dilation)
        if self.padding == "same":
            oh, ow = self.h, self.w
        else:
            ph, pw = (0, 0) if self.padding == "valid" else _pair(self.padding)
            oh = (self.h + 2 * ph - dh * (self.kh - 1) - 1) // sh + 1
            ow = (self.w + 2 * pw - dw * (self.kw - 1) - 1) // sw + 1
        return 2 * n * self.k * oh * ow * (self.c // self.groups) * self.kh * self.kw


def _pair(v: Any) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (v[0], v[-1])


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
