"""Stride by a polyphase split: a convolution of stride ``s`` is the sum over the ``s^D`` phases ``r`` of stride-1
correlations of the input's phase ``x_r[j] = x_padded[j·s + r]`` with the kernel's ``k_r[q] = k_dilated[q·s + r]``.
Laid out as channels (input channel ``c`` and phase ``r`` become channel ``c·s^D + r``, so a group's channels stay
together), it is one stride-1 convolution without padding or dilation (:func:`phased`), of ``s^D`` times the input
channels and a kernel of ``ceil(extent / s)`` per axis; its outputs are the strided convolution's, not ``s^D``
times as many as :mod:`.fft` computes and subsamples otherwise. Its adjoints map back: the gradient of the phases is
the padded input's, interleaved (:func:`merge_signal`); the gradient of the kernel's phases, the kernel's
(:func:`merge_kernel`).

These are pure functions of the array library ``xp`` and the spec; a shape comment on every reshape.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..core.spec import ConvSpec
from ._common import trailing

__all__ = ["merge_kernel", "merge_signal", "phase_lengths", "phased", "split_kernel", "split_signal"]


def _dilated(spec: ConvSpec) -> tuple[Any, ...]:
    """The index of the dilated kernel's taps."""
    return trailing([slice(0, e, dl) for e, dl in zip(spec.effective_kernel, spec.dilation, strict=True)])


def _taps(spec: ConvSpec) -> tuple[int, ...]:
    """The kernel's length per axis and phase: ``ceil(extent / stride)``."""
    return tuple(-(-e // s) for e, s in zip(spec.effective_kernel, spec.stride, strict=True))


def phase_lengths(spec: ConvSpec) -> tuple[int, ...]:
    """Each phase's length per axis: what the strided outputs read (``out + taps - 1``)."""
    return tuple(o + q - 1 for o, q in zip(spec.out_size, _taps(spec), strict=True))


def phased(spec: ConvSpec) -> ConvSpec:
    """The stride-1 convolution of the phases that equals ``spec``'s."""
    d = spec.ndim
    return dataclasses.replace(spec, c=spec.c * math.prod(spec.stride), size=phase_lengths(spec),
                               kernel=_taps(spec), stride=(1,) * d, padding=((0, 0),) * d, dilation=(1,) * d,
                               padding_mode="zeros")


def _interleaved(spec: ConvSpec, lengths: tuple[int, ...]) -> tuple[list[int], tuple[int, ...], tuple[int, ...]]:
    """The shape (…, L1, s1, L2, s2, …) of ``lengths`` phases interleaved, and the orders between it and
    (…, s1, s2, …, L1, L2, …), after two leading axes."""
    d = spec.ndim
    shape = [v for length, s in zip(lengths, spec.stride, strict=True) for v in (length, s)]
    to_phases = (0, 1, *range(3, 2 + 2 * d, 2), *range(2, 2 + 2 * d, 2))
    to_positions = (0, 1, *[axis for i in range(d) for axis in (2 + d + i, 2 + i)])
    return shape, to_phases, to_positions


def _overlap(spec: ConvSpec) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[int, ...]]:
    """Where the input lies among the phases' positions interleaved (``phase_lengths · stride`` per axis, from the
    padded input's first): the index of its part there, the index of that part in the input (positions past the
    phases are never read), and the interleaved lengths."""
    lengths = tuple(v * s for v, s in zip(phase_lengths(spec), spec.stride, strict=True))
    kept = [max(0, min(size, length - before)) for size, length, (before, _) in zip(spec.size, lengths, spec.padding,
                                                                                     strict=True)]
    there = trailing([slice(b, b + k) for (b, _), k in zip(spec.padding, kept, strict=True)])
    return there, trailing([slice(0, k) for k in kept]), lengths


def split_signal(xp: Any, x: Any, spec: ConvSpec) -> Any:
    """The phases (N, C·s^D, *phase_lengths) of ``x`` (N, C, *size) padded with zeros by ``spec.padding``."""
    n, c = x.shape[:2]
    lengths = phase_lengths(spec)
    shape, to_phases, _ = _interleaved(spec, lengths)
    there, here, positions = _overlap(spec)
    whole = xp.zeros((n, c, *positions), dtype=x.dtype)
    whole[there] = x[here]
    parts = whole.reshape(n, c, *shape).transpose(to_phases)  # (N, C, L1·s1, ...) -> (N, C, s1, ..., L1, ...)
    return parts.reshape(n, c * math.prod(spec.stride), *lengths)  # -> (N, C·s^D, L1, ...), a copy


def merge_signal(xp: Any, phases: Any, spec: ConvSpec) -> Any:
    """The gradient (N, C, *size) of the input from that of its phases (N, C·s^D, *phase_lengths)
    (:func:`split_signal`'s adjoint): interleaved, cropped to the input, zeros past the phases."""
    n = phases.shape[0]
    lengths = phase_lengths(spec)
    _, _, to_positions = _interleaved(spec, lengths)
    there, here, positions = _overlap(spec)
    parts = phases.reshape(n, spec.c, *spec.stride, *lengths)  # (N, C·s^D, ...) -> (N, C, s1, ..., L1, ...)
    whole = parts.transpose(to_positions).reshape(n, spec.c, *positions)  # -> (N, C, L1·s1, ...), a copy
    out = xp.zeros((n, spec.c, *spec.size), dtype=phases.dtype)
    out[here] = whole[there]
    return out


def split_kernel(xp: Any, w: Any, spec: ConvSpec) -> Any:
    """The phases (K, C/G·s^D, *taps) of the weights ``w`` (K, C/G, *kernel), dilated."""
    k, cg = w.shape[:2]
    taps = _taps(spec)
    shape, to_phases, _ = _interleaved(spec, taps)
    wd = xp.zeros((k, cg, *[q * s for q, s in zip(taps, spec.stride, strict=True)]), dtype=w.dtype)
    wd[_dilated(spec)] = w
    parts = wd.reshape(k, cg, *shape).transpose(to_phases)  # (K, C/G, Q1·s1, ...) -> (K, C/G, s1, ..., Q1, ...)
    return parts.reshape(k, cg * math.prod(spec.stride), *taps)  # -> (K, C/G·s^D, Q1, ...), a copy


def merge_kernel(xp: Any, phases: Any, spec: ConvSpec) -> Any:
    """The gradient (K, C/G, *kernel) of the weights from that of their phases (K, C/G·s^D, *taps)
    (:func:`split_kernel`'s adjoint): interleaved, read at the dilated taps."""
    k = phases.shape[0]
    taps = _taps(spec)
    _, _, to_positions = _interleaved(spec, taps)
    parts = phases.reshape(k, spec.cg, *spec.stride, *taps)  # (K, C/G·s^D, ...) -> (K, C/G, s1, ..., Q1, ...)
    whole = parts.transpose(to_positions).reshape(k, spec.cg, *[q * s for q, s in zip(taps, spec.stride,
                                                                                         strict=True)])
    return xp.ascontiguousarray(whole[_dilated(spec)])
