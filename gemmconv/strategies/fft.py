"""``fft``: convolution by the convolution theorem, in every D and dtype, every pass.

Each pass is a correlation ``r[p] = Σ_u k[u]·a[p + u]`` of a long signal ``a`` with a kernel ``k``, cut into tiles
(overlap-save, as cuDNN's FFT_TILING and SciPy's ``oaconvolve``): tile ``i`` of ``length`` positions, from
``i·step`` on along each axis, keeps the ``step = length - extent + 1`` outputs that no product wraps onto. Every
tile is transformed (a real transform for real dtypes), the channels are mixed per frequency by one batched GEMM
(``(C_out/G x C_in/G) @ (C_in/G x N·tiles)`` per group; products of broadcast arrays where a group has one input
channel), and transformed back. A cost model (:func:`.fft_tiling.tiling`) picks the length: longer tiles waste
fewer positions on the overlap but make larger spectra of the weights. Under a ``workspace_limit`` the tiles are
transformed in chunks (whole images, else rows of tiles of one image: :func:`.fft_spectra.chunks`).

- **stride**: the convolution of the input's and the kernel's phases (:mod:`.fft_phases`), of stride 1; or, where
  the cost model predicts it faster (:func:`.fft_tiling.cut`), the strided convolution itself, as below.
- **forward**: ``a`` the padded input, ``k`` the weights (dilated: zeros between the taps); all outputs of stride
  1 are computed and every ``stride``-th kept.
- **grad_input**: ``a`` dL/dy spread to every ``stride``-th position (zeros between) and padded by the kernel's
  extent less one, ``k`` the weights flipped, K and C swapped (and conjugated, complex): the padded input's
  gradient, cropped to the input.
- **grad_weight**: the sum over the positions of dL/dy, cut into tiles instead: each tile of dL/dy spread (flipped)
  convolved with the input's tile that its outputs read; the mixing sums over the images and tiles
  (``(K/G x N·tiles) @ (N·tiles x C/G)``); dL/dw is read at the taps. For complex dtypes it uses conj(x).

The backend supplies the transforms (:class:`~gemmconv.backends.kernels.FFTKernels`); the weights' spectra are
cached in the mixing's layout (:data:`SPECTRA_CACHE`, content-checked and bounded like Winograd's transformed
filters). A non-finite input reaches every output of its image's transform, not just those that read it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from ..backends.kernels import FFTKernels
from ..core.prepared import Prepared
from ..core.registry import GRAD_INPUT, GRAD_WEIGHT, PassImpl, Strategy
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from . import fft_grad
from ._common import add_bias
from .fft_phases import split_signal
from .fft_spectra import SPECTRA_CACHE, correlate, kernel_spectrum, tiles_of, written
from .fft_tiling import Cut, Tiling, cut, geometry, supports

__all__ = ["SPECTRA_CACHE", "STRATEGY", "prepare", "run", "supports"]


def _forward(backend: FFTKernels, spec: ConvSpec, c: Cut) -> Any:
    xp, runs, tile = backend.xp, c.runs, c.tile
    before = tuple(a for a, _ in runs.padding)
    every = geometry(runs, "forward").outputs  # the outputs at stride 1, of which every stride-th is kept
    keep = tuple(slice(0, e, s) for e, s in zip(every, runs.stride, strict=True))
    phases = spec if c.phases else None

    def run(x: Any, w: Any, b: Any, out: Any) -> Any:
        wt = kernel_spectrum(backend, w, tile, runs.dilation, runs.groups, phases=phases)
        a = x if phases is None else split_signal(xp, x, spec)  # (N, C, *size), or its phases (N, C·s^D, ...)

        def tiles(sub: Tiling, images: slice, origin: int) -> Any:
            return tiles_of(xp, a[images], before, sub, origin=origin)

        y = correlate(backend, tiles, wt, tile, runs.n, runs.k, keep)  # (N, K, *out)
        return add_bias(written(xp, y, out), b)

    return run


def prepare(backend: FFTKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    c = cut(backend, spec, "forward", limits)
    return Prepared(_forward(backend, spec, c), ("split", "fft", "mix", "ifft") if c.phases else ("fft", "mix", "ifft"),
                    c.workspace_bytes)


def run(backend: FFTKernels, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    return prepare(backend, spec)(x, w, b, None)


STRATEGY = Strategy(
    name="fft",
    run=run,
    prepare=prepare,
    supports=supports,
    needs=("fft",),
    backward={GRAD_INPUT: PassImpl(fft_grad.prepare_grad_input, partial(supports, pass_="grad_input"), ("fft",)),
              GRAD_WEIGHT: PassImpl(fft_grad.prepare_grad_weight, partial(supports, pass_="grad_weight"), ("fft",))},
    description="FFT: the convolution theorem, one transform per signal and a GEMM per frequency; its cost "
    "hardly grows with the kernel, its error is relative to the largest values",
    dims=(1, 2, 3),
)
