"""Shared test helpers: the torch float64 oracle and the error measure."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from hypothesis import strategies as st

#: largest scaled error seen per (strategy, dtype) in this session, printed at the end
MAX_ERRORS: dict[tuple[str, str], float] = defaultdict(float)

# Tolerances on the scaled error  max|y - ref| / max(|x| ⋆ |w| + |b|)  (⋆ = the same convolution).
# The denominator is the sum of absolute products, so the bound does not depend on cancellation:
# summing n products in a precision of unit roundoff u is off by at most ~n·u of it (worst case),
# ~sqrt(n)·u typically. Our test layers reduce over n <= C/G·R·S <= 4·5·5 = 100 terms, and BLAS
# sums in blocks, so u·n/4 covers GEMM-based and direct sums with room (float32: u = 6e-8 -> 1.5e-6).
# Winograd multiplies the input by B^T (entries up to 5), the filter by G and the product by A^T
# (entries up to 8): F(4x4,3x3) loses ~1.5 decimal digits against direct, F(2x2,3x3) (entries <= 1)
# about a factor 2 (Lavin & Gray 2016; Barabasz et al. 2020), hence 7.5x the default for F(4x4).
# The observed maxima are printed by the test session's summary (conftest.py); over 3000-example
# runs they sit 5-8x below these limits (float32: direct/im2col/1x1 3e-7, F(2x2) 1.5e-7, F(4x4) 2.7e-6).
# The FFT's error is not per element: every output carries rounding of the size of the largest values of the
# whole transformed correlation (~u·log2(F) of them), so its scale is at least fft_floor's bound on those, and its
# tolerance is 5x the default (the transforms' O(log F) roundings on top of the mixing's sums).
TOLERANCE = {
    "float32": {"default": 2e-6, "winograd_f2": 2e-6, "winograd": 1.5e-5, "fft": 1e-5},
    "float64": {"default": 4e-15, "winograd_f2": 4e-15, "winograd": 3e-14, "fft": 2e-14},
    # GPU only. Inputs are rounded to float16 before the oracle sees them, sums run in float32,
    # so the error is the output's rounding (u = 4.9e-4) plus, for Winograd, the float16 storage
    # of the transformed tiles (entries up to 4x / ~100x the input for F(2x2) / F(4x4)).
    "float16": {"default": 1.5e-3, "winograd_f2": 3e-3, "winograd": 5e-2},
}


def tolerance(strategy: str, chosen: str, dtype: str) -> float:
    table = TOLERANCE[dtype]
    return table.get(chosen if strategy == "auto" else strategy, table["default"])


def torch_conv(x, w, b, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """torch.nn.Conv2d in float64 on the CPU with the given weights (the oracle).

    One-element tuples are expanded first, as ``torch.nn.functional.conv2d`` expands them: the module
    does not for its own padding (padding_mode other than zeros, or padding='same' with dilation=(d,)
    pads one dimension only, or fails).
    """
    stride, padding, dilation = (v * 2 if isinstance(v, tuple) and len(v) == 1 else v
                                 for v in (stride, padding, dilation))
    k, cg, kh, kw = w.shape
    conv = torch.nn.Conv2d(
        cg * groups, k, (kh, kw), stride=stride, padding=padding, dilation=dilation, groups=groups,
        bias=b is not None, padding_mode=padding_mode, dtype=torch.float64,
    )
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(np.asarray(w, dtype=np.float64)))
        if b is not None:
            conv.bias.copy_(torch.from_numpy(np.asarray(b, dtype=np.float64)))
        return conv(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()


def torch_accepts(x, w, b, args) -> bool:
    """Whether torch (the oracle) runs this configuration."""
    try:
        torch_conv(x, w, b, **args)
    except (RuntimeError, ValueError):
        return False
    return True


def fft_floor(a, b, terms: int) -> float:
    """The least scale of the FFT's error for a pass of operands ``a`` and ``b`` whose sums have ``terms`` terms:
    max|a|·max|b|·terms bounds every position of the whole (uncropped) correlation its transforms carry, which the
    same pass on absolute values does not see where the kept outputs are small (mostly padding) or zero."""
    return float(np.max(np.abs(a), initial=0.0)) * float(np.max(np.abs(b), initial=0.0)) * terms


def scaled_error(y, x, w, b, strategy: str = "", **conv_args) -> float:
    """max|y - ref| / max(|x| ⋆ |w| + |b|), the oracle computed in float64 by torch (for ``strategy="fft"``, at
    least :func:`fft_floor`)."""
    ref = torch_conv(x, w, b, **conv_args)
    scale = torch_conv(np.abs(x), np.abs(w), None if b is None else np.abs(b), **conv_args)
    denom = float(np.max(scale)) if scale.size else 1.0
    if strategy == "fft":
        denom = max(denom, fft_floor(x, w, int(np.prod(w.shape[1:]))))
    if ref.size == 0:
        return 0.0
    return float(np.max(np.abs(y.astype(np.float64) - ref))) / max(denom, np.finfo(np.float64).tiny)


def record(strategy: str, dtype: str, err: float) -> None:
    key = (strategy, dtype)
    MAX_ERRORS[key] = max(MAX_ERRORS[key], err)


PADDING_MODES = ["zeros", "reflect", "replicate", "circular"]


@st.composite
def configs(draw):
    groups = draw(st.integers(1, 3))
    cg, kg = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    family = draw(st.sampled_from(["any", "any", "any", "3x3", "3x3", "1x1"]))
    if family == "3x3":  # what winograd runs
        kh = kw = 3
        stride, dilation = draw(st.sampled_from([1, 1, 1, 2])), draw(st.sampled_from([1, 1, 1, 2]))
    elif family == "1x1":
        kh = kw = 1
        stride, dilation = draw(st.sampled_from([1, 2, (1, 2), 3])), 1
    else:
        kh = draw(st.integers(1, 5))
        kw = draw(st.sampled_from([kh, kh, 1, 2, 3, 4]))
        stride = draw(st.sampled_from([1, 1, (1, 1), 2, (2, 1), 3, (2,)]))  # (v,) means (v, v), as in torch
        dilation = draw(st.sampled_from([1, 1, 2, (1, 2), 3, (2,)]))
    padding = draw(st.sampled_from([0, 0, 1, 2, (1, 0), (0, 2), 3, (1,), "valid", "same", "same"]))
    if padding == "same" and stride not in (1, (1, 1)) and draw(st.integers(0, 9)):
        padding = 1  # keep 'same' with stride > 1 (an error) to about a tenth of its draws
    padding_mode = draw(st.sampled_from(PADDING_MODES))
    d = (dilation, dilation) if isinstance(dilation, int) else dilation * (3 - len(dilation))
    ekh, ekw = (kh - 1) * d[0] + 1, (kw - 1) * d[1] + 1
    h = draw(st.integers(max(1, ekh - 2), ekh + 12))
    w = draw(st.integers(max(1, ekw - 2), ekw + 12))
    n = draw(st.sampled_from([1, 1, 2, 3, 0]))
    unbatched = n == 1 and draw(st.booleans())
    dtype = draw(st.sampled_from(["float32", "float64"]))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (groups * cg, h, w) if unbatched else (n, groups * cg, h, w)).astype(dtype)
    wt = rng.uniform(-1, 1, (groups * kg, cg, kh, kw)).astype(dtype)
    b = rng.uniform(-1, 1, groups * kg).astype(dtype) if bias else None
    args = dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=padding_mode)
    return x, wt, b, args


def accepted_configs():
    """:func:`configs` that torch accepts (for the tests that compare with it)."""
    return configs().filter(lambda cfg: torch_accepts(*cfg))

