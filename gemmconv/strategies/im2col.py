"""``im2col``: pack the column matrix, then one GEMM per image and group.

With ``spec.workspace_limit`` the column matrix is built and multiplied in chunks (groups of images,
and bands of output rows within an image) whose columns, GEMM product and input band together fit
the limit; a chunk is at least one output row of one image.
A band of output rows is computed from the band of input rows it reads, as a convolution of its
own (its padding is the part of the original padding it touches), so the packing kernels need no
change.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..registry import Strategy
from ..spec import ConvSpec
from ._common import add_bias


def _gemm(backend: Any, x: Any, w: Any, spec: ConvSpec) -> Any:
    """The convolution of x without bias, (N, K, OH·OW), through one column matrix."""
    g, crs = spec.groups, spec.cg * spec.kh * spec.kw
    cols = backend.im2col(x, spec)  # (N, C·R·S, OH·OW)
    cols = cols.reshape(spec.n, g, crs, spec.oh * spec.ow)  # -> (N, G, C/G·R·S, OH·OW)
    wm = w.reshape(g, spec.kg, crs)  # (K, C/G, R, S) -> (G, K/G, C/G·R·S)
    y = backend.matmul(wm, cols)  # (G, K/G, C/G·R·S) @ (N, G, C/G·R·S, OH·OW) -> (N, G, K/G, OH·OW)
    return y.reshape(spec.n, spec.k, spec.oh * spec.ow)  # -> (N, K, OH·OW), no copy


def _band(x: Any, spec: ConvSpec, o0: int, o1: int) -> tuple[Any, ConvSpec]:
    """Input rows and spec of output rows [o0, o1) as a convolution of their own."""
    r0 = o0 * spec.sh - spec.pt  # first padded-input row read, in input coordinates
    r1 = (o1 - 1) * spec.sh - spec.pt + spec.ekh  # one past the last
    lo, hi = max(r0, 0), min(r1, spec.h)
    sub = dataclasses.replace(spec, h=hi - lo, pt=lo - r0, pb=r1 - hi)
    return x[:, :, lo:hi], sub  # (N, C, rows, W)


def run(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    limit = spec.workspace_limit
    itemsize = x.dtype.itemsize
    # bytes per output row of one image: its columns, its GEMM product and the input rows its band adds
    row_bytes = ((spec.c * spec.kh * spec.kw + spec.k) * spec.ow + spec.c * spec.sh * spec.w) * itemsize
    if limit is None or spec.n * spec.oh * row_bytes <= limit:
        return add_bias(_gemm(backend, x, w, spec).reshape(spec.out_shape), b)
    xp = backend.xp
    y = xp.empty(spec.out_shape, dtype=x.dtype)
    budget = limit - spec.c * spec.ekh * spec.w * itemsize  # less the kernel's halo of input rows
    images = max(1, budget // (spec.oh * row_bytes))  # whole images per chunk
    rows = spec.oh if images > 1 else max(1, budget // row_bytes)  # else bands of rows of one image
    for n0 in range(0, spec.n, images):
        n1 = min(spec.n, n0 + images)
        for o0 in range(0, spec.oh, rows):
            o1 = min(spec.oh, o0 + rows)
            xb, sub = _band(x[n0:n1], dataclasses.replace(spec, n=n1 - n0), o0, o1)
            y[n0:n1, :, o0:o1] = _gemm(backend, xb, w, sub).reshape(n1 - n0, spec.k, o1 - o0, spec.ow)
    return add_bias(y, b)


STRATEGY = Strategy(
    name="im2col",
    run=run,
    description="column matrix (C·R·S × OH·OW per image) + one GEMM per image and group; any configuration",
)
