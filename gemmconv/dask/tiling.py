"""The blocks of a convolution pass on Dask arrays, shared by every pass: chunks of images, cuts along each
spatial axis, and the channel pieces whose partial sums make up each block.

A :class:`Grid` is the cross product of the image chunks and the cuts along each spatial axis; in each of its
cells, the output channels fall into ranges, each the sum of the pieces of the input channels that feed it
(:class:`ChannelSplit`), added by a balanced tree of tasks (:func:`~gemmconv.dask.gather.add_sum`). The forward
pass and grad_weight cut the output where the input's chunks are (:func:`output_bounds`); grad_input and the
transposed convolution cut dL/dx in bands (:func:`gemmconv.dask.grad_input.bands`). Nothing here imports Dask.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple

from .gather import add_sum

__all__ = ["ChannelPiece", "ChannelSplit", "Grid", "channel_pieces", "extent", "output_bounds", "window"]


def output_bounds(chunks: tuple[int, ...], pad: int, stride: int, ekernel: int, out: int) -> list[int]:
    """Where the output is cut along one axis: at each boundary ``b`` between input chunks, the first output
    whose window (``ekernel`` rows from ``o·stride - pad``) is centred at or past ``b``; 0 and ``out`` at the
    ends, empty pieces dropped. Any cut is correct; this one keeps each block's reads near its own chunk."""
    cuts = [0]
    for b in itertools.accumulate(chunks[:-1]):
        o = -(-(b + pad - (ekernel - 1) // 2) // stride)
        cuts.append(min(out, max(0, o)))
    cuts.append(out)
    return sorted(set(cuts))


def extent(count: int, stride: int, ekernel: int) -> int:
    """How many positions of the padded input ``count`` adjacent outputs read along one axis."""
    return (count - 1) * stride + ekernel


def window(o0: int, o1: int, stride: int, ekernel: int) -> tuple[int, int]:
    """The positions ``lo, hi`` of the padded input that outputs ``o0:o1`` read along one axis."""
    return o0 * stride, o0 * stride + extent(o1 - o0, stride, ekernel)


class ChannelPiece(NamedTuple):
    """Input channels ``c0:c1`` give output channels ``k0:k1`` through a convolution of ``groups`` groups with the
    weights ``w[k0:k1, cw0:cw1]``."""

    c0: int
    c1: int
    k0: int
    k1: int
    groups: int
    cw0: int
    cw1: int


def channel_pieces(chunks: tuple[int, ...], groups: int, cg: int, kg: int) -> list[ChannelPiece]:
    """The input channels cut where ``x``'s chunks are and, inside a chunk, at the first and last group boundary:
    the whole groups of a chunk are one grouped convolution; a part of a group (a group split between chunks)
    is a convolution of its channels alone, a partial sum of its group's outputs, added to the other parts'."""
    pieces: list[ChannelPiece] = []
    c0 = 0
    for size in chunks:
        c1 = c0 + size
        head, tail = min(c1, -(-c0 // cg) * cg), max(c0, c1 // cg * cg)  # the first and last group boundary
        if head >= tail:  # no whole group: the chunk lies inside one group (or spans one boundary only)
            cuts = sorted({c0, head, c1})
        else:
            cuts = sorted({c0, head, tail, c1})
        for u, v in itertools.pairwise(cuts):
            g0 = u // cg
            if u % cg == 0 and v % cg == 0:  # whole groups g0 .. v/cg
                pieces.append(ChannelPiece(u, v, g0 * kg, v // cg * kg, v // cg - g0, 0, cg))
            else:  # a part of group g0
                pieces.append(ChannelPiece(u, v, g0 * kg, (g0 + 1) * kg, 1, u - g0 * cg, v - g0 * cg))
        c0 = c1
    return pieces


class ChannelSplit:
    """The channel pieces of a pass whose input has channel ``chunks`` (``groups`` groups of ``per_in`` input and
    ``per_out`` output channels each; ``total`` output channels), the output ranges they feed, and which piece of
    each range adds the bias."""

    def __init__(self, chunks: tuple[int, ...], groups: int, per_in: int, per_out: int, total: int) -> None:
        self.pieces = channel_pieces(chunks, groups, per_in, per_out) or [ChannelPiece(0, 0, 0, total, groups, 0, 0)]
        self.total = total
        #: the output channels ``(k0, k1)`` the pieces feed, in order
        self.ranges = sorted({(p.k0, p.k1) for p in self.pieces})
        self._first = {r: next(p for p in self.pieces if (p.k0, p.k1) == r) for r in self.ranges}

    def feeding(self, rng: tuple[int, int]) -> list[ChannelPiece]:
        """The pieces whose partial sums make up output channels ``rng``."""
        return [p for p in self.pieces if (p.k0, p.k1) == rng]

    def biases(self, bias: Any) -> dict[tuple[int, int], Any]:
        """``bias`` (a ``Delayed`` of all ``total`` channels, or None) sliced to each range (slices made once)."""
        return {r: None if bias is None else (bias if r == (0, self.total) else bias[r[0]:r[1]]) for r in self.ranges}

    def bias_of(self, piece: ChannelPiece, biases: dict[tuple[int, int], Any]) -> Any:
        """The bias ``piece`` adds: its range's from :meth:`biases` for the range's first piece, else None."""
        rng = (piece.k0, piece.k1)
        return biases[rng] if self._first[rng] == piece else None


#: one block of a :class:`Grid`: its grid index (image chunk, then one cut per spatial axis), its images
#: ``n0, nb`` and its cut along each spatial axis
Block = tuple[tuple[int, ...], int, int, tuple[Any, ...]]


class Grid:
    """Chunks of images ``image_chunks`` x ``cuts`` along each spatial axis (each cut an object whose first two
    entries are the positions ``lo, hi`` it gives the result), with the channels split by ``split``."""

    def __init__(self, image_chunks: tuple[int, ...], cuts: Sequence[Sequence[Any]], split: ChannelSplit) -> None:
        starts = itertools.accumulate((0, *image_chunks[:-1]))
        self.images = list(zip(starts, image_chunks, strict=True))
        self.cuts = [list(c) for c in cuts]
        self.split = split

    def blocks(self) -> Iterator[Block]:
        """Every block, image chunks outermost."""
        for a, (n0, nb) in enumerate(self.images):
            for index in itertools.product(*(range(len(c)) for c in self.cuts)):
                yield (a, *index), n0, nb, tuple(c[i] for c, i in zip(self.cuts, index, strict=True))

    def sum_into(self, layer: dict[Any, Any], name: str,
                 share: Callable[[int, int, tuple[Any, ...], ChannelPiece], Any]) -> None:
        """Put each block's output ranges into ``layer`` under ``(name, image chunk, range, *cut indices)``: the
        sum of ``share(n0, nb, cuts, piece)`` over the pieces feeding the range."""
        for (a, *index), n0, nb, parts in self.blocks():
            for r, rng in enumerate(self.split.ranges):
                add_sum(layer, [share(n0, nb, parts, p) for p in self.split.feeding(rng)], (name, a, r, *index))

    def chunks(self) -> tuple[tuple[int, ...], ...]:
        """The result's chunks: images, output channel ranges, the cuts' sizes along each spatial axis."""
        images = tuple(nb for _, nb in self.images)
        ranges = tuple(k1 - k0 for k0, k1 in self.split.ranges)
        return (images, ranges, *(tuple(c[1] - c[0] for c in cuts) for cuts in self.cuts))
