"""Named layers of common networks, shared by the compare tool and the benchmarks."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["LAYERS", "LAYERS_LARGE", "LAYERS_ND", "SWEEP_SIZES", "Layer", "LayerND", "kernel_sweep"]


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


@dataclass(frozen=True)
class LayerND:
    """One 1-D or 3-D convolution layer (the batch size is chosen when its arrays are made).

    Attributes
    ----------
    name : str
        Short name used in tables and benchmark parameters.
    c, k : int
        Input and output channels.
    size, kernel : tuple of int
        The input's and the kernel's spatial sizes (one entry per spatial axis).
    stride, padding, groups : int
        As in :func:`gemmconv.conv1d` / :func:`gemmconv.conv3d`, the same on every axis.
    """

    name: str
    c: int
    size: tuple[int, ...]
    k: int
    kernel: tuple[int, ...]
    stride: int = 1
    padding: int = 0
    groups: int = 1

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(self.size)

    @property
    def conv_args(self) -> dict[str, Any]:
        """Keyword arguments of :func:`gemmconv.conv1d` / :func:`gemmconv.conv3d` (and torch's)."""
        return dict(stride=self.stride, padding=self.padding, groups=self.groups)

    def arrays(self, n: int, dtype: str = "float32", seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Random ``x`` (N, C, *size), ``w`` (K, C/G, *kernel) scaled to unit output variance, and ``b`` (K,);
        complex dtypes get random real and imaginary parts."""
        rng = np.random.default_rng(seed)
        cg = self.c // self.groups

        def draw(shape: tuple[int, ...]) -> np.ndarray:
            a = rng.standard_normal(shape)
            if np.dtype(dtype).kind == "c":
                a = a + 1j * rng.standard_normal(shape)
            return a.astype(dtype)

        fan_in = cg * int(np.prod(self.kernel))
        return (draw((n, self.c, *self.size)), (draw((self.k, cg, *self.kernel)) / np.sqrt(fan_in)).astype(dtype),
                draw((self.k,)))


#: 1-D signal layers (audio, ECG: 64 channels, 16000 samples, 9 and 3 taps) and 3-D volume layers (video and
#: medical: 3x3x3 at 32^3 and 16^3, a 1x1x1 projection, a strided 3x3x3; an MRI-like 8->8-channel 5^3 filter on
#: 64^3 in sigpy's "full" mode, padded by 4)
LAYERS_ND: dict[str, LayerND] = {
    layer.name: layer
    for layer in (
        LayerND("sig_k9_16000", 64, (16000,), 64, (9,), padding=4),
        LayerND("sig_k3_16000", 64, (16000,), 64, (3,), padding=1),
        LayerND("sig_k3s2_16000", 64, (16000,), 128, (3,), stride=2, padding=1),
        LayerND("vol3x3x3_32", 32, (32, 32, 32), 32, (3, 3, 3), padding=1),
        LayerND("vol3x3x3_16", 64, (16, 16, 16), 64, (3, 3, 3), padding=1),
        LayerND("vol1x1x1_16", 64, (16, 16, 16), 64, (1, 1, 1)),
        LayerND("vol3x3x3s2_32", 32, (32, 32, 32), 64, (3, 3, 3), stride=2, padding=1),
        LayerND("mri5x5x5_64", 8, (64, 64, 64), 8, (5, 5, 5), padding=4),
    )
}


#: large kernels, where an FFT's cost (hardly growing with the kernel) meets a GEMM's (growing with its taps):
#: 2-D 7x7 to 11x11 (64 channels at 56^2, ConvNeXt-like), 15x15 (32 channels), a depthwise 31x31 (RepLKNet-like,
#: 128 channels at 28^2), all "same"; a 1-D filter of 255 taps (16 channels, 16384 samples); 3-D 5^3 and 9^3 filters
#: (16 channels at 32^3); sigpy's full mode on 8->8 channels at 256^2 with 31x31 filters (run it in complex64)
LAYERS_LARGE: dict[str, LayerND] = {
    layer.name: layer
    for layer in (
        LayerND("k7_56", 64, (56, 56), 64, (7, 7), padding=3),
        LayerND("k9_56", 64, (56, 56), 64, (9, 9), padding=4),
        LayerND("k11_56", 64, (56, 56), 64, (11, 11), padding=5),
        LayerND("k15_56", 32, (56, 56), 32, (15, 15), padding=7),
        LayerND("dw31_28", 128, (28, 28), 128, (31, 31), padding=15, groups=128),
        LayerND("sig_k255_16384", 16, (16384,), 16, (255,), padding=127),
        LayerND("vol5_32", 16, (32, 32, 32), 16, (5, 5, 5), padding=2),
        LayerND("vol9_32", 16, (32, 32, 32), 16, (9, 9, 9), padding=4),
        LayerND("sigpy_full31_256", 8, (256, 256), 8, (31, 31), padding=30),
    )
}

#: the kernel sizes of ``gemmconv compare --sweep kernel`` by default
SWEEP_SIZES = (1, 3, 5, 7, 9, 11, 15, 21, 31)


def kernel_sweep(layer: Layer | LayerND, sizes: tuple[int, ...] = SWEEP_SIZES) -> list[LayerND]:
    """``layer`` with a kernel of each size in ``sizes`` on every axis and padding ``size // 2`` (the output's size
    kept for odd sizes), its channels, groups and stride as they are: the layers of a crossover plot. Named
    ``<name>_k<size>``."""
    if isinstance(layer, Layer):
        layer = LayerND(layer.name, layer.c, (layer.h, layer.w), layer.k, (layer.kh, layer.kw),
                        stride=_pair(layer.stride)[0], groups=layer.groups)
    return [LayerND(f"{layer.name}_k{k}", layer.c, layer.size, layer.k, (k,) * layer.ndim, stride=layer.stride,
                    padding=k // 2, groups=layer.groups) for k in sizes]
