"""The slab a block of a Dask convolution reads, gathered from the chunks it overlaps inside the block's own task.

A slab is a window ``rows`` x ``cols`` of the *padded* array, padded as ``padding_mode`` pads the whole array, so
a padding mode acts at the array's border only and ``circular`` wraps across it. Along each axis the window is
cut into runs of input positions (:func:`runs`): the input's own positions in order, the padding's zeros,
reflections (in reverse), the edge repeated, or the wrapped other end; each run is cut again where the chunks
end (:func:`pieces`). From each chunk the slab touches, one task slices the strip it needs (a thin one for a
neighbour's halo, the chunk itself when all of it is needed), so only strips travel between workers, and the
block's task copies them into the slab (:func:`assemble`) before it runs: the slab is never a separate result,
and nothing else is copied.

This module never imports Dask: the graphs are dicts of tasks (tuples), as Dask's custom graphs are written.
"""

from __future__ import annotations

import bisect
import itertools
import operator
from typing import Any, NamedTuple

from ..backends import get_backend

__all__ = ["ChunkPiece", "Gather", "Run", "add_sum", "assemble", "pieces", "runs"]


class Run(NamedTuple):
    """Slab positions ``dst0 + i`` copy input position ``src0 + step·i`` (``step`` 1, -1 or 0 for an edge
    repeated), ``i < length``; ``src0 = -1``: zeros."""

    dst0: int
    src0: int
    length: int
    step: int


class ChunkPiece(NamedTuple):
    """A :class:`Run` inside one chunk (``chunk`` -1: a run of zeros): ``length`` positions from ``dst0``, read from
    the chunk's positions ``local0, local0 + step, ...``."""

    dst0: int
    chunk: int
    local0: int
    length: int
    step: int


def runs(lo: int, hi: int, before: int, size: int, mode: str) -> list[Run]:
    """Positions ``lo:hi`` of an axis padded with ``before`` positions (and some after) around ``size`` input
    positions, as runs of input positions; ``mode`` is torch's padding mode (validation keeps reflect's padding
    under ``size`` and circular's at most ``size``)."""
    result: list[Run] = []
    regions = ((lo, min(hi, before)), (max(lo, before), min(hi, before + size)), (max(lo, before + size), hi))
    for region, (a, b) in enumerate(regions):
        if a >= b:
            continue
        i = a - before  # the input position of padded position a (negative before the input, >= size after it)
        if region == 1:
            result.append(Run(a - lo, i, b - a, 1))
        elif mode == "zeros":
            result.append(Run(a - lo, -1, b - a, 0))
        elif mode == "reflect":
            result.append(Run(a - lo, -i if region == 0 else 2 * size - 2 - i, b - a, -1))
        elif mode == "replicate":
            result.append(Run(a - lo, 0 if region == 0 else size - 1, b - a, 0))
        else:  # circular
            result.append(Run(a - lo, i + size if region == 0 else i - size, b - a, 1))
    return result


def pieces(axis_runs: list[Run], chunks: tuple[int, ...]) -> list[ChunkPiece]:
    """``axis_runs`` cut where the axis's ``chunks`` end: each piece's source positions lie in one chunk
    (zero runs stay whole, their chunk -1)."""
    starts = list(itertools.accumulate((0, *chunks[:-1])))
    result: list[ChunkPiece] = []
    for dst0, src0, length, step in axis_runs:
        if src0 < 0:
            result.append(ChunkPiece(dst0, -1, 0, length, 0))
            continue
        done = 0
        while done < length:
            s = src0 + step * done
            k = bisect.bisect_right(starts, s) - 1  # the chunk of source position s
            if step == 1:
                n = min(length - done, starts[k] + chunks[k] - s)
            elif step == -1:
                n = min(length - done, s - starts[k] + 1)
            else:
                n = length - done
            result.append(ChunkPiece(dst0 + done, k, s - starts[k], n, step))
            done += n
    return result


def _span(p: ChunkPiece) -> tuple[int, int]:
    """The local source positions ``lo:hi`` a piece reads in its chunk."""
    _, _, local0, length, step = p
    return (local0 - length + 1, local0 + 1) if step == -1 else (local0, local0 + (length if step == 1 else 1))


def _src(p: ChunkPiece, lo: int) -> slice:
    """A piece's source positions as a slice of a strip whose positions begin at ``lo`` (a repeated edge:
    one position, broadcast when copied)."""
    _, _, local0, length, step = p
    s = local0 - lo
    if step == 1:
        return slice(s, s + length)
    if step == -1:
        return slice(s, s - length if s - length >= 0 else None, -1)
    return slice(s, s + 1)


def cut(chunk: Any, index: tuple[slice, ...]) -> Any:
    """A strip of ``chunk``, copied: a view would keep the whole chunk alive (and be copied anyway to travel)."""
    return chunk[index].copy()


def assemble(shape: tuple[int, ...], copies: tuple[Any, ...], *strips: Any) -> Any:
    """The slab of ``shape`` (a task's argument, computed inside the block's task): ``copies`` are
    ``(strip, dst, src)``, ``dst`` and ``src`` tuples of slices, a strip of -1 filling ``dst`` with zeros; they
    cover the slab."""
    ref = strips[0]
    slab = get_backend(ref, "x").xp.empty(shape, dtype=ref.dtype)
    for k, dst, src in copies:
        if k < 0:
            slab[dst] = 0
        else:
            slab[dst] = strips[k][src]
    return slab


class Gather:
    """Slab tasks over the Dask array ``x`` padded by ``pads`` (``(before, after)`` per axis) in ``mode``.

    :meth:`task` returns a task that assembles one slab; the strip tasks it reads accumulate in
    :attr:`layer`, one per (chunk, strip), shared between the slabs that read the same strip.
    """

    def __init__(self, x: Any, pads: tuple[tuple[int, int], ...], mode: str, name: str) -> None:
        self.x, self.pads, self.mode, self.name = x, pads, mode, name
        self.layer: dict[Any, Any] = {}

    def _strip(self, chunk: tuple[int, ...], box: tuple[tuple[int, int], ...]) -> Any:
        """The key of the strip ``box`` (local positions per axis) of ``chunk`` (the chunk's own key when it is
        all of it)."""
        shape = tuple(c[i] for c, i in zip(self.x.chunks, chunk, strict=True))
        if all(lo == 0 and hi == n for (lo, hi), n in zip(box, shape, strict=True)):
            return (self.x.name, *chunk)
        key = (f"{self.name}-strip-" + "-".join(f"{lo}:{hi}" for lo, hi in box), *chunk)
        self.layer.setdefault(key, (cut, (self.x.name, *chunk), tuple(slice(lo, hi) for lo, hi in box)))
        return key

    def task(self, window: tuple[tuple[int, int], ...]) -> tuple[Any, ...]:
        """A task assembling the slab of the padded positions ``window`` (``(lo, hi)`` per axis)."""
        x = self.x
        axes = [pieces(runs(lo, hi, before, size, self.mode), chunks)
                for (lo, hi), (before, _), size, chunks in zip(window, self.pads, x.shape, x.chunks, strict=True)]
        boxes: dict[tuple[int, ...], list[tuple[int, int]]] = {}
        for combo in itertools.product(*axes):  # the bounding box each chunk gives
            if all(p.chunk >= 0 for p in combo):
                box = boxes.setdefault(tuple(p.chunk for p in combo), [_span(p) for p in combo])
                for d, p in enumerate(combo):
                    lo, hi = _span(p)
                    box[d] = (min(box[d][0], lo), max(box[d][1], hi))
        if not boxes:  # all padding: an empty strip says the library and dtype
            boxes[(0,) * x.ndim] = [(0, 0)] * x.ndim
        keys: list[Any] = []
        copies: list[tuple[int, tuple[slice, ...], tuple[slice, ...] | None]] = []
        for k, (chunk, box) in enumerate(boxes.items()):
            keys.append(self._strip(chunk, tuple(box)))
            for combo in itertools.product(*axes):
                if tuple(p.chunk for p in combo) == chunk:
                    copies.append((k, tuple(slice(p.dst0, p.dst0 + p.length) for p in combo),
                                   tuple(_src(p, lo) for p, (lo, _) in zip(combo, box, strict=True))))
        copies += [(-1, tuple(slice(p.dst0, p.dst0 + p.length) for p in combo), None)
                   for combo in itertools.product(*axes) if any(p.chunk < 0 for p in combo)]  # the zeros
        shape = tuple(hi - lo for lo, hi in window)
        return (assemble, shape, tuple(copies), *keys)


def add_sum(layer: dict[Any, Any], tasks: list[Any], key: tuple[Any, ...]) -> None:
    """Put the sum of ``tasks`` under ``key`` in ``layer``: one task as it is, more as tasks of their own
    added by a balanced tree (depth log2 of their number), so that they can run on different workers."""
    if len(tasks) == 1:
        layer[key] = tasks[0]
        return
    name, index = key[0], key[1:]
    keys = []
    for i, t in enumerate(tasks):
        keys.append((f"{name}-part", *index, i))
        layer[keys[-1]] = t
    level = 0
    while len(keys) > 2:
        pairs = [keys[i:i + 2] for i in range(0, len(keys), 2)]
        keys = []
        for i, pair in enumerate(pairs):
            if len(pair) == 1:
                keys.append(pair[0])
            else:
                keys.append((f"{name}-sum{level}", *index, i))
                layer[keys[-1]] = (operator.add, *pair)
        level += 1
    layer[key] = (operator.add, *keys)
