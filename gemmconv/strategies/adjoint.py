"""``grad_input`` (and so the transposed convolution) as forward convolutions of ``grad_y``.

For stride 1, dL/dx is the stride-1 convolution of dL/dy with the kernel flipped and the input and output
channels swapped within each group, padded by the dilated kernel's extent less one less the padding (a
negative amount crops ``grad_y``). For stride ``s``, the input rows fall into ``s`` phases by
``(row + top padding) mod s``: a phase's rows are reached by the taps ``r`` with ``r·d ≡ phase (mod s)``
alone, at rows of dL/dy that step by one, so each phase is a stride-1 convolution with the sub-kernel of
those taps and dilation ``d / gcd(s, d)`` (polyphase). Every spatial axis splits so, and dL/dx is at most
the product of the strides' stride-1 forward convolutions (``sh·sw`` in 2-D), each written into its
positions of the result; positions that no tap reaches stay zero.

Any forward strategy whose predicate accepts every phase runs the pass this way
(:func:`grad_input_pass`): Winograd on 3x3 stride-1 layers, ``direct`` everywhere, ``1x1`` on 1x1 kernels.
A phase keeps only the rows some tap reaches, so a one-tap phase never needs padding.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Any

from ..backends.base import Backend
from ..core.prepared import Prepared, as_prepared
from ..core.registry import PassImpl, PrepareFn, SupportsFn, call_supports
from ..core.spec import NO_LIMITS, ConvSpec, Limits

__all__ = ["AxisPhase", "StridePhase", "grad_input_pass", "phases"]


@dataclass(frozen=True)
class AxisPhase:
    """One phase of the stride along one axis (rows or columns).

    The phase holds the input positions ``first, first + s, ...`` (``count`` of them); they are reached by
    the taps ``taps`` (a range, in the forward kernel's order) from positions ``lo:hi`` of ``grad_y``, which
    the phase's stride-1 convolution pads by ``before`` and ``after`` with dilation ``dilation``.
    """

    first: int
    count: int
    taps: range
    lo: int
    hi: int
    before: int
    after: int
    dilation: int

    @property
    def flipped(self) -> slice:
        """The phase's taps in reverse order, as a slice of the kernel's axis."""
        last = self.taps[-1]
        stop = self.taps.start - self.taps.step
        return slice(last, stop if stop >= 0 else None, -self.taps.step)

    def positions(self, stride: int) -> slice:
        """The input positions of the phase, as a slice of the input's axis."""
        return slice(self.first, self.first + (self.count - 1) * stride + 1, stride)


def axis_phases(size: int, out: int, k: int, s: int, d: int, p: int) -> tuple[AxisPhase, ...]:
    """The phases of one axis: input ``size``, output ``out``, kernel ``k``, stride ``s``, dilation ``d``,
    padding ``p`` before; phases no tap or no output reaches are left out (their rows get no gradient)."""
    step, spacing = d // math.gcd(s, d), s // math.gcd(s, d)  # a phase's sub-kernel: its dilation, its taps' spacing
    found = []
    for rho in range(s):
        taps = [r for r in range(k) if (r * d - rho) % s == 0]  # spaced s / gcd(s, d) apart
        if not taps:
            continue
        j0 = (taps[0] * d - rho) // s  # output offset of the first tap: input m·s + rho - p <- output m - j
        span = (len(taps) - 1) * step
        # the phase's rows m·s + rho - p inside the input and reached by an output: m - j0 - span .. m - j0
        m0 = max(-((rho - p) // s), j0)
        m1 = min((size - 1 + p - rho) // s, j0 + span + out - 1)
        if m1 < m0:
            continue
        count = m1 - m0 + 1
        before = j0 + span - m0  # grad_y's padding before; negative: rows of grad_y cropped
        after = count + span - out - before
        lo, hi = max(0, -before), out - max(0, -after)
        found.append(AxisPhase(m0 * s + rho - p, count, range(taps[0], taps[-1] + 1, spacing), lo, hi,
                               max(before, 0), max(after, 0), step if len(taps) > 1 else 1))
    return tuple(found)


@dataclass(frozen=True)
class StridePhase:
    """One stride-1 forward convolution of ``grad_y``: its positions along each spatial axis, and its spec."""

    axes: tuple[AxisPhase, ...]
    spec: ConvSpec

    @property
    def rows(self) -> AxisPhase:
        """The phase along the first spatial axis (rows, in 2-D)."""
        return self.axes[0]

    @property
    def cols(self) -> AxisPhase:
        """The phase along the last spatial axis (columns, in 2-D)."""
        return self.axes[-1]

    def covers(self, spec: ConvSpec) -> bool:
        """Whether the phase is the whole of dL/dx of ``spec`` (one phase of every position)."""
        return all((a.first, a.count) == (0, size) for a, size in zip(self.axes, spec.size, strict=True))

    def reached(self) -> tuple[slice, ...]:
        """The part of ``grad_y`` the phase convolves: every batch and channel, positions ``lo:hi`` per axis."""
        return (slice(None), slice(None), *(slice(a.lo, a.hi) for a in self.axes))

    def flipped(self) -> tuple[slice, ...]:
        """The phase's sub-kernel, reversed, as an index of the transposed weights."""
        return (slice(None), slice(None), *(a.flipped for a in self.axes))

    def positions(self, spec: ConvSpec) -> tuple[slice, ...]:
        """Where the phase's result goes in dL/dx: every batch and channel, every stride-th position per axis."""
        return (slice(None), slice(None), *(a.positions(s) for a, s in zip(self.axes, spec.stride, strict=True)))


@functools.lru_cache(maxsize=256)
def phases(spec: ConvSpec) -> tuple[StridePhase, ...]:
    """The stride-1 forward convolutions whose results make up dL/dx of ``spec`` (the forward convolution's)."""
    per_axis = [axis_phases(size, out, r, s, d, lo) for size, out, r, s, d, (lo, _) in
                zip(spec.size, spec.out_size, spec.kernel, spec.stride, spec.dilation, spec.padding, strict=True)]
    return tuple(
        StridePhase(axes, ConvSpec(n=spec.n, c=spec.k, k=spec.c, size=tuple(a.hi - a.lo for a in axes),
                                   kernel=tuple(len(a.taps) for a in axes), stride=(1,) * spec.ndim,
                                   padding=tuple((a.before, a.after) for a in axes),
                                   dilation=tuple(a.dilation for a in axes), groups=spec.groups,
                                   padding_mode="zeros", dtype=spec.dtype))
        for axes in itertools.product(*per_axis))


def _transposed(w: Any, spec: ConvSpec) -> Any:
    """The weights with input and output channels swapped within each group."""
    g, kg, cg, d = spec.groups, spec.kg, spec.cg, spec.ndim
    wg = w.reshape(g, kg, cg, *spec.kernel)  # (K, C/G, *kernel) -> (G, K/G, C/G, *kernel)
    swapped = wg.transpose(0, 2, 1, *range(3, 3 + d))  # -> (G, C/G, K/G, *kernel)
    return swapped.reshape(spec.c, kg, *spec.kernel)  # -> (C, K/G, *kernel)


def _phase_bytes(spec: ConvSpec) -> int:
    """Temporaries besides the forward runs': the flipped weights of every phase, and each phase's result
    where there are several (they are written into dL/dx afterwards)."""
    found = phases(spec)
    weights = spec.k * spec.cg * spec.taps
    results = 0 if len(found) == 1 and found[0].covers(spec) else max(
        (spec.n * spec.c * math.prod(a.count for a in p.axes) for p in found), default=0)
    return (weights + results) * spec.itemsize


def grad_input_pass(forward: PrepareFn, forward_supports: SupportsFn, needs: tuple[str, ...],
                    pads_zeros: bool = True) -> PassImpl:
    """The ``grad_input`` pass of a forward strategy (its ``prepare``, predicate, kernel families and whether
    it pads with zeros itself) through :func:`phases`."""

    def supports(spec: ConvSpec, limits: Limits = NO_LIMITS) -> str | None:
        if spec.pads_explicitly(pads_zeros):  # the pass then runs on the explicitly padded input
            spec = spec.without_padding()
        found = phases(spec)
        if not found:  # no output reaches the input: nothing runs, but the layer must still be one it takes
            return call_supports(forward_supports, spec, limits)
        for p in found:
            s = p.spec
            reason = call_supports(forward_supports, s, limits)
            if reason is None and s.padded and not pads_zeros:
                reason = "it does not pad with zeros"
            if reason is not None:
                return (f"its grad_input runs as stride-1 convolutions of grad_y (one per phase of the stride), and "
                        f"for the {'x'.join(map(str, s.kernel))} one of dilation {s.dilation}: {reason}")
        if limits.workspace is not None and _phase_bytes(spec) > limits.workspace:
            return (f"its flipped weights and phase results need {_phase_bytes(spec)} bytes, above "
                    f"workspace_limit={limits.workspace}")
        return None

    def prepare(backend: Backend, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
        found = phases(spec)
        runners = [as_prepared(forward(backend, p.spec, limits)) for p in found]
        runs = [r.run for r in runners]  # called directly: one frame less than through Prepared.__call__
        whole = len(found) == 1 and found[0].covers(spec)
        xp = backend.xp

        def run(gy: Any, w: Any, bias: Any, out: Any) -> Any:
            wt = _transposed(w, spec)
            if whole:
                p = found[0]
                flipped = xp.ascontiguousarray(wt[p.flipped()])
                return runs[0](xp.ascontiguousarray(gy[p.reached()]), flipped, bias, out)
            if out is None:
                dx = xp.zeros(spec.in_shape, dtype=gy.dtype)
            else:  # the positions no phase reaches stay zero
                dx = out
                dx[...] = 0
            for p, run_phase in zip(found, runs, strict=True):
                part = xp.ascontiguousarray(gy[p.reached()])
                flipped = xp.ascontiguousarray(wt[p.flipped()])
                # (N, C, the phase's positions) into every stride-th position of dL/dx along each axis
                dx[p.positions(spec)] = run_phase(part, flipped, None, None)
            if bias is not None:
                dx += bias.reshape(1, -1, *(1,) * spec.ndim)  # (C,) -> (1, C, 1, ...)
            return dx

        kernels = tuple(dict.fromkeys(k for r in runners for k in r.kernels))  # each once, in order
        return Prepared(run, kernels, _phase_bytes(spec) + max((r.workspace_bytes for r in runners), default=0))

    return PassImpl(prepare, supports, needs)
