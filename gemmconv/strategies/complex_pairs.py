"""Complex convolutions through a real strategy: each complex channel as a pair of real ones.

A complex convolution ``y = w ⋆ x`` is real-linear in the real and imaginary parts: ``y.real = w.real ⋆ x.real -
w.imag ⋆ x.imag`` and ``y.imag = w.imag ⋆ x.real + w.real ⋆ x.imag``. So it is one real convolution of twice the
channels (:func:`pairs`): each group's input channels become its real parts followed by its imaginary parts
(:func:`to_pairs`), and each group's weights the real 2x2 block matrix ``[[w.real, -w.imag], [w.imag, w.real]]``
(:func:`pair_weights`); the output comes back the same way (:func:`from_pairs`). One real GEMM of twice the rows
and columns does the work of one complex GEMM, which measured as fast as BLAS's complex GEMM and faster than
three real GEMMs (Gauss's trick, what torch runs): ``benchmarks/CPU_NOTES.md``.

The backward passes follow from the same real convolution, with torch autograd's convention for complex
arguments (the gradient is ``dL/d(real) + i dL/d(imag)``): the real convolution's grad_input of the paired
dL/dy is the pair of ``dL/dx`` (the adjoint with the conjugated weights); its grad_weight, a (2K, 2C/G) block
matrix per group, folds back into ``dL/dw`` (:func:`fold_weights`).

:func:`every_dtype` gives a real strategy this, in every pass: its predicate then judges the real convolution
of channel pairs it would run, and says so in its reasons.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..backends.base import Backend
from ..core.prepared import Prepared, as_prepared
from ..core.registry import FORWARD, GRAD_INPUT, GRAD_WEIGHT, PrepareFn, Strategy, SupportsFn, call_supports
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from ._common import rewritten

__all__ = ["REAL", "every_dtype", "fold_weights", "from_pairs", "is_complex", "pair_weights", "pairs", "to_pairs"]

#: each complex dtype and the real dtype of its parts
REAL = {"complex64": "float32", "complex128": "float64"}


def is_complex(spec: ConvSpec) -> bool:
    """Whether ``spec`` is a complex convolution."""
    return spec.dtype in REAL


def pairs(spec: ConvSpec) -> ConvSpec:
    """The real convolution of channel pairs that computes complex ``spec``."""
    return dataclasses.replace(spec, c=2 * spec.c, k=2 * spec.k, dtype=REAL[spec.dtype])


def to_pairs(backend: Backend, a: Any, groups: int) -> Any:
    """Complex ``a`` (N, C, ...) as real (N, 2C, ...): in each of the ``groups`` groups of channels, their real
    parts, then their imaginary parts. A fresh C-contiguous array."""
    n, c, *rest = a.shape
    parts = a.reshape(n, groups, c // groups, *rest)  # (N, C, ...) -> (N, G, C/G, ...)
    out = backend.xp.empty((n, groups, 2, c // groups, *rest), dtype=parts.real.dtype)
    out[:, :, 0] = parts.real
    out[:, :, 1] = parts.imag
    return out.reshape(n, 2 * c, *rest)  # (N, G, 2, C/G, ...) -> (N, 2C, ...)


def from_pairs(backend: Backend, r: Any, groups: int, dtype: str, out: Any = None) -> Any:
    """The complex (N, K, ...) of real ``r`` (N, 2K, ...) in :func:`to_pairs`' layout, written into ``out`` (a
    C-contiguous array of that shape and ``dtype``) when given."""
    n, k2, *rest = r.shape
    k = k2 // 2
    if out is None:
        out = backend.xp.empty((n, k, *rest), dtype=dtype)
    parts = r.reshape(n, groups, 2, k // groups, *rest)  # (N, 2K, ...) -> (N, G, 2, K/G, ...)
    target = out.reshape(n, groups, k // groups, *rest)  # (N, K, ...) -> (N, G, K/G, ...), a view
    target.real[...] = parts[:, :, 0]
    target.imag[...] = parts[:, :, 1]
    return out


def pair_weights(backend: Backend, w: Any, groups: int) -> Any:
    """Complex weights ``w`` (K, C/G, *kernel) as the real (2K, 2C/G, *kernel) of :func:`pairs`: per group, the
    block matrix ``[[w.real, -w.imag], [w.imag, w.real]]`` (output part by input part)."""
    k, cg, *kernel = w.shape
    parts = w.reshape(groups, k // groups, cg, *kernel)  # (K, C/G, ...) -> (G, K/G, C/G, ...)
    xp = backend.xp
    r = xp.empty((groups, 2, k // groups, 2, cg, *kernel), dtype=parts.real.dtype)
    r[:, 0, :, 0] = parts.real
    xp.negative(parts.imag, out=r[:, 0, :, 1])
    r[:, 1, :, 0] = parts.imag
    r[:, 1, :, 1] = parts.real
    return r.reshape(2 * k, 2 * cg, *kernel)  # (G, 2, K/G, 2, C/G, ...) -> (2K, 2C/G, ...)


def fold_weights(backend: Backend, g: Any, groups: int, dtype: str, out: Any = None) -> Any:
    """``dL/dw`` (K, C/G, *kernel) from the real convolution's ``g`` (2K, 2C/G, *kernel), the gradient with respect
    to :func:`pair_weights`: ``w.real`` appears in two blocks and ``w.imag`` in two (once negated)."""
    k2, cg2, *kernel = g.shape
    k, cg = k2 // 2, cg2 // 2
    blocks = g.reshape(groups, 2, k // groups, 2, cg, *kernel)  # (2K, 2C/G, ...) -> (G, 2, K/G, 2, C/G, ...)
    if out is None:
        out = backend.xp.empty((k, cg, *kernel), dtype=dtype)
    target = out.reshape(groups, k // groups, cg, *kernel)  # (K, C/G, ...) -> (G, K/G, C/G, ...), a view
    backend.xp.add(blocks[:, 0, :, 0], blocks[:, 1, :, 1], out=target.real)
    backend.xp.subtract(blocks[:, 1, :, 0], blocks[:, 0, :, 1], out=target.imag)
    return out


def _pair_bytes(spec: ConvSpec) -> int:
    """Temporaries of the rewriting beyond the real passes': the pass's two operands and its result in pairs
    (the weights' pairs take twice the complex weights' bytes)."""
    x, y = spec.n * spec.c * math.prod(spec.size), spec.n * spec.k * math.prod(spec.out_size)
    w = spec.k * spec.cg * spec.taps
    # forward: x, pair weights, y; grad_input: dL/dy, pair weights, dL/dx; grad_weight: x, dL/dy, dL/dw in pairs
    return (x + y + 2 * w) * spec.itemsize


def _supports(inner: SupportsFn, pass_: str) -> SupportsFn:
    """The predicate of real ``inner`` for a spec of any dtype."""

    def supports(spec: ConvSpec, limits: Limits = NO_LIMITS) -> str | None:
        if not is_complex(spec):
            return call_supports(inner, spec, limits)
        reason = call_supports(inner, pairs(spec), limits)
        if reason is not None:
            return f"it runs a complex convolution as a real one of channel pairs, and there: {reason}"
        need = _pair_bytes(spec)
        if limits.workspace is not None and need > limits.workspace:
            return f"its channel pairs need {need} bytes, above workspace_limit={limits.workspace}"
        return None

    return supports


def _prepare(inner: PrepareFn, pass_: str) -> PrepareFn:
    """``prepare`` of pass ``pass_`` for a spec of any dtype, from the real ``inner``."""

    def prepare(backend: Backend, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
        if not is_complex(spec):
            return as_prepared(inner(backend, spec, limits))
        real = as_prepared(inner(backend, pairs(spec), limits))
        run = {FORWARD: _paired, GRAD_INPUT: _paired, GRAD_WEIGHT: _grad_weight}[pass_](backend, spec, real)
        return real.then(run, before=("to_pairs",), after=("from_pairs",), workspace_bytes=_pair_bytes(spec))

    return prepare


def _paired(backend: Backend, spec: ConvSpec, real: Prepared) -> Any:
    """The forward pass ``(x, w, b) -> y``, or grad_input ``(dL/dy, w, bias) -> dL/dx``: both take an array of
    channels, the weights and a per-channel vector (the bias; for grad_input, the input channels' bias of the
    transposed convolution), and give an array of channels."""
    g, dtype = spec.groups, spec.dtype

    def run(a: Any, w: Any, c: Any, out: Any) -> Any:
        vector = None if c is None else to_pairs(backend, c[None], g)[0]  # (K,) -> (2K,)
        r = real.run(to_pairs(backend, a, g), pair_weights(backend, w, g), vector, None)
        return from_pairs(backend, r, g, dtype, out)

    return run


def _grad_weight(backend: Backend, spec: ConvSpec, real: Prepared) -> Any:
    g, dtype = spec.groups, spec.dtype

    def run(x: Any, gy: Any, _: Any, out: Any) -> Any:
        blocks = real.run(to_pairs(backend, x, g), to_pairs(backend, gy, g), None, None)  # (2K, 2C/G, *kernel)
        return fold_weights(backend, blocks, g, dtype, out)

    return run


def every_dtype(strategy: Strategy) -> Strategy:
    """``strategy`` (written for real dtypes, with a ``prepare``) for complex ones too, in every pass it has."""
    return rewritten(strategy, _supports, _prepare)
