"""``im2col``: pack the column matrix, then one GEMM per group."""

from __future__ import annotations

from typing import Any

from ..registry import Strategy
from ..spec import ConvSpec
from ._common import add_bias


def run(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    g, crs = spec.groups, spec.cg * spec.kh * spec.kw
    cols = backend.im2col(x, spec)  # (N, C·R·S, OH·OW)
    cols = cols.reshape(spec.n, g, crs, spec.oh * spec.ow)  # -> (N, G, C/G·R·S, OH·OW)
    wm = w.reshape(g, spec.kg, crs)  # (K, C/G, R, S) -> (G, K/G, C/G·R·S)
    y = backend.matmul(wm, cols)  # (G, K/G, C/G·R·S) @ (N, G, C/G·R·S, OH·OW) -> (N, G, K/G, OH·OW)
    return add_bias(y.reshape(spec.out_shape), b)  # -> (N, K, OH, OW), no copy


STRATEGY = Strategy(
    name="im2col",
    run=run,
    description="column matrix (C·R·S × OH·OW per image) + one GEMM per image and group; any configuration",
)
