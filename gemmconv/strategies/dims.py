"""1-D and 3-D convolutions through a strategy written for 2-D, by two exact rewritings.

- **1-D as 2-D**: an input (N, C, L) is the image (N, C, 1, L) and a kernel (K, C/G, k) the kernel
  (K, C/G, 1, k); stride, padding and dilation act on the width alone (:func:`plane`). Views, no copy. A long
  signal is folded into rows with halos instead (:mod:`.rows`), so that the 2-D strategy has rows to split. A
  pointwise convolution of any D (1x1x1 kernel, stride 1, no padding) is likewise one row of all its
  positions (:func:`flat`).
- **3-D by depth**: output depth ``od`` is the sum over the depth taps ``kd`` of the 2-D convolution of input
  plane ``od·sd + kd·dd`` (of the input padded in depth) with the weights' plane ``kd``. For one ``kd`` the
  planes of every ``od`` form one batch of N·OD images, so a 3-D convolution is KD 2-D convolutions of
  N·OD images each (:func:`slices` is their spec), added. grad_input adds each tap's 2-D grad_input into
  every ``sd``-th plane of dL/dx; grad_weight's plane ``kd`` is the 2-D grad_weight of the same batches.
  The input is copied once into depth-major order (N, D, C, H, W) and the result back.

:func:`every_dim` gives a 2-D strategy these, in every pass; its predicate then judges the 2-D convolutions
it would run (1 x L images; the depth slices), and says so in its reasons.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ..backends.base import Backend
from ..core.prepared import Prepared, as_prepared
from ..core.registry import FORWARD, GRAD_INPUT, GRAD_WEIGHT, PrepareFn, Strategy, SupportsFn, call_supports
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from ._common import add_bias, rewritten
from .rows import Fold, fold_bytes, fold_of, folded, rows_run

__all__ = ["DIMS", "every_dim", "flat", "plane", "pointwise", "slices"]

#: the spatial dimensions :func:`every_dim` runs
DIMS = (1, 2, 3)


def plane(spec: ConvSpec) -> ConvSpec:
    """The 2-D spec of a 1-D ``spec``: its input as images of one row."""
    return dataclasses.replace(spec, size=(1, *spec.size), kernel=(1, *spec.kernel), stride=(1, *spec.stride),
                               padding=((0, 0), *spec.padding), dilation=(1, *spec.dilation))


def pointwise(spec: ConvSpec) -> bool:
    """Whether ``spec`` is a pointwise convolution (kernel, stride 1 everywhere, no padding): of any D, the 2-D one
    of a single row of all the positions (:func:`flat`)."""
    return spec.taps == 1 and not spec.strided and not spec.padded


def flat(spec: ConvSpec) -> ConvSpec:
    """The 2-D spec of a pointwise ``spec``: its positions as one row (a view of the arrays)."""
    return dataclasses.replace(spec, size=(1, math.prod(spec.size)), kernel=(1, 1), stride=(1, 1),
                               padding=((0, 0), (0, 0)), dilation=(1, 1))


def slices(spec: ConvSpec) -> ConvSpec:
    """The 2-D spec of one depth tap of a 3-D ``spec``: the N·OD input planes that tap reads, as one batch."""
    return dataclasses.replace(spec, n=spec.n * spec.out_size[0], size=spec.size[1:], kernel=spec.kernel[1:],
                               stride=spec.stride[1:], padding=spec.padding[1:], dilation=spec.dilation[1:])


def _depth_bytes(spec: ConvSpec, pass_: str) -> int:
    """Temporaries of the depth rewriting beyond the 2-D passes': the input (or dL/dx) in depth-major order and
    one batch of its planes; the sum of the taps' results and one tap's (forward), or dL/dy in depth-major order
    and one tap's result (the gradients)."""
    n, od = spec.n, spec.out_size[0]
    depth = spec.size[0] + sum(spec.padding[0])
    plane_in, plane_out = spec.c * math.prod(spec.size[1:]), spec.k * math.prod(spec.out_size[1:])
    outputs = 2 * n * od * plane_out if pass_ == FORWARD else n * od * plane_out + n * od * plane_in
    return (n * depth * plane_in + n * od * plane_in + outputs) * spec.itemsize


def _fold(spec: ConvSpec, limits: Limits, pass_: str, rows: bool) -> tuple[Fold, Limits] | None:
    """The fold of a 1-D ``spec`` into rows and the limits left to its 2-D pass, or None where the signal stays one
    row: a strategy that does not fold (``rows`` false), a signal :func:`.rows.fold_of` does not fold, or a
    workspace limit that the fold would take more than half of."""
    fold = fold_of(spec, pass_) if rows and spec.ndim == 1 and not pointwise(spec) else None
    if fold is None or limits.workspace is None:
        return None if fold is None else (fold, limits)
    need = fold_bytes(spec, fold)
    return (fold, Limits(limits.workspace - need)) if 2 * need <= limits.workspace else None


def _supports(inner: SupportsFn, pass_: str, rows: bool) -> SupportsFn:
    """The predicate of ``inner`` (a 2-D predicate) for a spec of any D."""

    def supports(spec: ConvSpec, limits: Limits = NO_LIMITS) -> str | None:
        if spec.ndim == 2:
            return call_supports(inner, spec, limits)
        fold = _fold(spec, limits, pass_, rows)
        if fold is not None:
            reason = call_supports(inner, folded(spec, fold[0]), fold[1])
            return None if reason is None else (f"it runs a long 1-D convolution as rows of {fold[0].outputs} "
                                                f"outputs, and there: {reason}")
        if spec.ndim == 1 or pointwise(spec):
            reason = call_supports(inner, plane(spec) if spec.ndim == 1 else flat(spec), limits)
            return None if reason is None else (f"it runs a {spec.ndim}-D convolution as images of one row, and "
                                                f"there: {reason}")
        reason = call_supports(inner, slices(spec), limits)
        if reason is not None:
            return f"it runs a 3-D convolution as 2-D convolutions of its depth planes, and there: {reason}"
        need = _depth_bytes(spec, pass_)
        if limits.workspace is not None and need > limits.workspace:
            return (f"its depth planes in depth-major order need {need} bytes, above "
                    f"workspace_limit={limits.workspace}")
        return None

    return supports


def _one_row(x: Any) -> Any:
    """(N, C, *positions) -> (N, C, 1, all positions): a view (a copy where the positions are not adjacent)."""
    return None if x is None else x.reshape(x.shape[0], x.shape[1], 1, -1)


def _prepare(inner: PrepareFn, pass_: str, rows: bool) -> PrepareFn:
    """``prepare`` of pass ``pass_`` for a spec of any D, from the 2-D ``inner``."""

    def prepare(backend: Backend, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
        if spec.ndim == 2:
            return as_prepared(inner(backend, spec, limits))
        fold = _fold(spec, limits, pass_, rows)
        if fold is not None:  # (N, C, L) as (N, C, rows, width)
            inner2 = as_prepared(inner(backend, folded(spec, fold[0]), fold[1]))
            return inner2.then(rows_run(backend, spec, fold[0], inner2, pass_), before=("fold_rows",),
                               workspace_bytes=fold_bytes(spec, fold[0]))
        if spec.ndim == 1 or pointwise(spec):  # views: (N, C, L) or (N, C, D, H, W) as (N, C, 1, positions)
            inner2 = as_prepared(inner(backend, plane(spec) if spec.ndim == 1 else flat(spec), limits))
            shape = {FORWARD: spec.out_shape, GRAD_INPUT: spec.in_shape, GRAD_WEIGHT: spec.weight_shape}[pass_]
            return inner2.then(_lifted(inner2, shape))
        sliced = as_prepared(inner(backend, slices(spec), limits))
        run = {FORWARD: _forward, GRAD_INPUT: _grad_input, GRAD_WEIGHT: _grad_weight}[pass_](backend, spec, sliced)
        return sliced.then(run, workspace_bytes=_depth_bytes(spec, pass_))

    return prepare


def _lifted(rows: Prepared, shape: tuple[int, ...]) -> Any:
    """The run of a pass (whose result has the batched ``shape``) through ``rows``, its 2-D pass on images of one
    row."""
    run2 = rows.run

    def run(a: Any, b: Any, c: Any, out: Any) -> Any:
        # forward (x, w, b) -> y (N, K, 1, OL); grad_input (grad_y, w, bias) -> dL/dx (N, C, 1, L);
        # grad_weight (x, grad_y, None) -> dL/dw (K, C/G, 1, k): the two arrays as rows, the bias as it is
        args = (_one_row(a), _one_row(b), c)
        if out is not None:
            run2(*args, _one_row(out))
            return out
        return run2(*args, None).reshape(shape)  # (N, K, 1, positions) -> (N, K, *positions), a view

    return run


def _depth_major(backend: Backend, x: Any, before: int = 0, after: int = 0) -> Any:
    """``x`` (N, C, D, H, W) as a C-contiguous (N, before + D + after, C, H, W), the planes added zeros."""
    n, c, depth, h, w = x.shape
    xt = backend.xp.empty((n, before + depth + after, c, h, w), dtype=x.dtype)
    xt[:, :before] = 0  # only the padding planes: the others are written next
    xt[:, before + depth:] = 0
    xt[:, before:before + depth] = x.transpose(0, 2, 1, 3, 4)  # (N, C, D, H, W) -> (N, D, C, H, W)
    return xt


def _output_batch(backend: Backend, gy: Any) -> Any:
    """dL/dy (N, K, OD, OH, OW) as one batch of its depth planes (N·OD, K, OH, OW)."""
    gt = _depth_major(backend, gy)
    return gt.reshape(-1, *gt.shape[2:])  # (N, OD, K, OH, OW) -> (N·OD, K, OH, OW), a view


def _taps(spec: ConvSpec) -> list[slice]:
    """For each depth tap, the planes of the depth-padded input it reads, one per output plane."""
    od, sd, dd = spec.out_size[0], spec.stride[0], spec.dilation[0]
    return [slice(kd * dd, kd * dd + (od - 1) * sd + 1, sd) for kd in range(spec.kernel[0])]


def _batch(backend: Backend, xt: Any, taps: slice) -> Any:
    """The planes ``taps`` of ``xt`` (N, D', C, H, W) as one batch (N·OD, C, H, W) (a view where they are
    adjacent already)."""
    part = backend.xp.ascontiguousarray(xt[:, taps])  # (N, OD, C, H, W)
    return part.reshape(-1, *part.shape[2:])  # -> (N·OD, C, H, W)


def _forward(backend: Backend, spec: ConvSpec, sliced: Prepared) -> Any:
    xp, n, k, od = backend.xp, spec.n, spec.k, spec.out_size[0]

    def run(x: Any, w: Any, b: Any, out: Any) -> Any:
        xt = _depth_major(backend, x, *spec.padding[0])
        first, *rest = _taps(spec)
        total = sliced.run(_batch(backend, xt, first), xp.ascontiguousarray(w[:, :, 0]), None, None)  # (N·OD, K, ...)
        for kd, taps in enumerate(rest, start=1):
            total += sliced.run(_batch(backend, xt, taps), xp.ascontiguousarray(w[:, :, kd]), None, None)
        y5 = total.reshape(n, od, k, *spec.out_size[1:]).transpose(0, 2, 1, 3, 4)  # -> (N, K, OD, OH, OW)
        if out is None:
            return add_bias(xp.ascontiguousarray(y5), b)
        out[...] = y5
        return add_bias(out, b)

    return run


def _grad_input(backend: Backend, spec: ConvSpec, sliced: Prepared) -> Any:
    xp, n, c = backend.xp, spec.n, spec.c
    before, after = spec.padding[0]
    depth = spec.size[0]

    def run(gy: Any, w: Any, bias: Any, out: Any) -> Any:
        gt = _output_batch(backend, gy)
        dx = xp.zeros((n, depth + before + after, c, *spec.size[1:]), dtype=gy.dtype)  # depth-major, padded
        for kd, taps in enumerate(_taps(spec)):
            part = sliced.run(gt, xp.ascontiguousarray(w[:, :, kd]), None, None)  # (N·OD, C, H, W)
            dx[:, taps] += part.reshape(n, -1, c, *spec.size[1:])  # -> (N, OD, C, H, W)
        d5 = dx[:, before:before + depth].transpose(0, 2, 1, 3, 4)  # -> (N, C, D, H, W)
        if out is None:
            out = xp.ascontiguousarray(d5)
        else:
            out[...] = d5
        if bias is not None:
            out += bias.reshape(1, -1, 1, 1, 1)  # (C,) -> (1, C, 1, 1, 1)
        return out

    return run


def _grad_weight(backend: Backend, spec: ConvSpec, sliced: Prepared) -> Any:
    xp = backend.xp

    def run(x: Any, gy: Any, _: Any, out: Any) -> Any:
        xt = _depth_major(backend, x, *spec.padding[0])
        gt = _output_batch(backend, gy)
        dw = xp.empty(spec.weight_shape, dtype=x.dtype) if out is None else out
        for kd, taps in enumerate(_taps(spec)):
            dw[:, :, kd] = sliced.run(_batch(backend, xt, taps), gt, None, None)  # (K, C/G, KH, KW)
        return dw

    return run


def every_dim(strategy: Strategy, rows: bool = False) -> Strategy:
    """``strategy`` (written for 2-D, with a ``prepare``) for 1-D, 2-D and 3-D convolutions, in every pass it
    has; with ``rows``, long 1-D signals folded into rows (:mod:`.rows`: for a strategy whose work is a column
    matrix, which the rows cut into blocks)."""
    return rewritten(strategy, lambda inner, pass_: _supports(inner, pass_, rows),
                     lambda inner, pass_: _prepare(inner, pass_, rows), dims=DIMS)
