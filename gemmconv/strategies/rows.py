"""A long 1-D convolution folded into rows with halos, so that a 2-D strategy's blocks (rows of the output) have
rows to split.

Run as an image of one row, a 1-D convolution of a long signal gives a 2-D strategy a single row of output: one
block, one worker, and a column matrix too large for the caches. Folding cuts the output into ``rows`` rows of
``outputs`` positions each. Row ``r`` reads the ``width`` input positions from ``r·step`` on (``step =
outputs·stride``) of the padded signal, its last ``width - step`` (the halo: the kernel's extent less one stride)
shared with row ``r + 1``. The folded input (N, C, rows, width) is then one 2-D convolution with a 1 x k kernel and
no padding, whose output (N, K, rows, outputs) is the 1-D output, padded at its end to ``rows·outputs``. An exact
rewriting:

- **forward**: fold the padded input, run, cut the output to its length;
- **grad_weight**: fold the input and dL/dy (zeros past its end: those outputs add nothing), run.

grad_input is not folded: its rows' dL/dx would have to be added back into the signal (the halos overlap), and on the
layers measured that cost more than the rows saved. Nor is a signal whose column matrix (C·k x OL) fits the caches
(:data:`FOLD_BYTES`): there the fold's copies cost more than they save. :func:`fold_of` decides whether and how to
fold (:data:`OUTPUTS` per row); the measurements are in ``benchmarks/CPU_NOTES.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..backends.base import Backend
from ..core.prepared import Prepared
from ..core.registry import FORWARD, GRAD_WEIGHT
from ..core.spec import ConvSpec

__all__ = ["FOLD_BYTES", "OUTPUTS", "ROW_BYTES", "Fold", "fold_bytes", "fold_of", "folded", "rows_run"]

#: bytes of one row's column matrix (C·k x outputs): the rows are as long as that allows, at least :data:`OUTPUTS`
ROW_BYTES = 2 << 20
#: output positions per row: the least
OUTPUTS = 128
#: the column matrix (C·k x OL) of one image, in bytes, from which a signal is folded
FOLD_BYTES = 24 << 20
#: a row reads at least this many times its halo, so that the halos copied twice stay a small part of the input
HALO_SHARE = 8


@dataclass(frozen=True)
class Fold:
    """How a 1-D convolution is folded: ``rows`` rows of ``outputs`` output positions, each reading ``width``
    positions of the padded input from ``step`` times its index on."""

    rows: int
    outputs: int
    step: int
    width: int

    @property
    def halo(self) -> int:
        """Input positions a row shares with the next (0 where rows do not overlap)."""
        return max(0, self.width - self.step)

    @property
    def padded(self) -> int:
        """Length of the padded input buffer the rows are cut from: one step more than the rows, so that the
        halos of the last row are a plain slice too."""
        return (self.rows + 1) * self.step


def fold_of(spec: ConvSpec, pass_: str) -> Fold | None:
    """The fold of pass ``pass_`` of a 1-D ``spec``, or None: grad_input, a column matrix under :data:`FOLD_BYTES`,
    or a signal too short for two rows of :data:`ROW_BYTES` of columns (:data:`OUTPUTS` or :data:`HALO_SHARE` times
    the kernel's extent at least)."""
    (ol,), (k,), (s,), (d,) = spec.out_size, spec.kernel, spec.stride, spec.dilation
    extent = (k - 1) * d + 1
    least = max(OUTPUTS, ROW_BYTES // (spec.c * k * spec.itemsize), -(-HALO_SHARE * extent // s))
    if pass_ not in (FORWARD, GRAD_WEIGHT) or spec.c * k * ol * spec.itemsize < FOLD_BYTES or ol < 2 * least:
        return None
    outputs = -(-ol // (ol // least))  # rows of near-equal length (at least `least`)...
    rows = -(-ol // outputs)  # ...as many as cover the output, the last less than one row short
    step = outputs * s
    return Fold(rows, outputs, step, (outputs - 1) * s + extent)


def folded(spec: ConvSpec, fold: Fold) -> ConvSpec:
    """The 2-D spec of the folded ``spec``: N images of ``rows`` x ``width``, a 1 x k kernel, no padding."""
    return dataclasses.replace(spec, size=(fold.rows, fold.width), kernel=(1, *spec.kernel), stride=(1, *spec.stride),
                               padding=((0, 0), (0, 0)), dilation=(1, *spec.dilation))


def fold_bytes(spec: ConvSpec, fold: Fold) -> int:
    """Temporaries of the fold beyond the 2-D pass's: the padded buffer and the folded rows of the input; the
    folded output (forward) or dL/dy (grad_weight)."""
    n, c, k = spec.n, spec.c, spec.k
    inputs = n * c * (fold.padded + fold.rows * fold.width)
    outputs = n * k * fold.rows * fold.outputs
    return (inputs + outputs) * spec.itemsize


def _rows(xp: Any, buf: Any, fold: Fold) -> Any:
    """The rows of ``buf`` (N, C, padded) as a C-contiguous (N, C, rows, width) (each with its halo)."""
    n, c, _ = buf.shape
    r, t, w = fold.rows, fold.step, fold.width
    main = buf[:, :, :r * t].reshape(n, c, r, t)  # (N, C, rows·step) -> (N, C, rows, step), a view
    if not fold.halo:
        return xp.ascontiguousarray(main[..., :w])
    out = xp.empty((n, c, r, w), dtype=buf.dtype)
    out[..., :t] = main
    out[..., t:] = buf[:, :, t:(r + 1) * t].reshape(n, c, r, t)[..., :fold.halo]  # each next row's start
    return out


def _fold_input(xp: Any, x: Any, spec: ConvSpec, fold: Fold) -> Any:
    """``x`` (N, C, L), padded with zeros, as its rows (N, C, rows, width)."""
    n, c, length = x.shape
    before = spec.padding[0][0]
    used = min(length, fold.padded - before)  # positions past the last row's reach are never read
    buf = xp.empty((n, c, fold.padded), dtype=x.dtype)
    buf[:, :, :before] = 0
    buf[:, :, before + used:] = 0
    buf[:, :, before:before + used] = x[:, :, :used]
    return _rows(xp, buf, fold)


def _fold_output(xp: Any, gy: Any, fold: Fold) -> Any:
    """``gy`` (N, K, OL) as (N, K, rows, outputs), zeros past its end (a view where it fills the rows)."""
    n, k, ol = gy.shape
    if ol == fold.rows * fold.outputs:
        return xp.ascontiguousarray(gy).reshape(n, k, fold.rows, fold.outputs)  # (N, K, OL) -> (N, K, rows, S)
    out = xp.empty((n, k, fold.rows * fold.outputs), dtype=gy.dtype)
    out[:, :, :ol] = gy
    out[:, :, ol:] = 0
    return out.reshape(n, k, fold.rows, fold.outputs)  # (N, K, rows·S) -> (N, K, rows, S)


def rows_run(backend: Backend, spec: ConvSpec, fold: Fold, inner: Prepared, pass_: str) -> Any:
    """The run of pass ``pass_`` (forward or grad_weight) of the 1-D ``spec`` through ``inner``, the 2-D pass of
    :func:`folded`."""
    xp, run2 = backend.xp, inner.run
    ol = spec.out_size[0]

    def forward(x: Any, w: Any, b: Any, out: Any) -> Any:
        y = run2(_fold_input(xp, x, spec, fold), w[:, :, None], b, None)  # (N, K, rows, S)
        y = y.reshape(y.shape[0], y.shape[1], -1)[:, :, :ol]  # -> (N, K, rows·S), cut to (N, K, OL)
        if out is None:
            return xp.ascontiguousarray(y)
        out[...] = y
        return out

    def grad_weight(x: Any, gy: Any, _: Any, out: Any) -> Any:
        dw = run2(_fold_input(xp, x, spec, fold), _fold_output(xp, gy, fold), None, None)  # (K, C/G, 1, k)
        dw = dw.reshape(spec.weight_shape)  # -> (K, C/G, k)
        if out is None:
            return dw
        out[...] = dw
        return out

    return forward if pass_ == FORWARD else grad_weight
