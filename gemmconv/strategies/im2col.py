"""``im2col``: pack the column matrix, then one GEMM per group."""

from __future__ import annotations

from typing import Any

from ..registry import Strategy
from ..spec import ConvSpec
from ._common import add_bias


def run(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    xp = backend.xp
    g, crs, p = spec.groups, spec.cg * spec.kh * spec.kw, spec.n * spec.oh * spec.ow
    cols = backend.im2col(x, spec).reshape(g, crs, p)  # (C·R·S, N·OH·OW) -> (G, C/G·R·S, N·OH·OW)
    wm = w.reshape(g, spec.kg, crs)  # (K, C/G, R, S) -> (G, K/G, C/G·R·S)
    y = xp.matmul(wm, cols)  # (G, K/G, C/G·R·S) @ (G, C/G·R·S, N·OH·OW) -> (G, K/G, N·OH·OW)
    y = y.reshape(g, spec.kg, spec.n, spec.oh * spec.ow)  # -> (G, K/G, N, OH·OW)
    y = y.transpose(2, 0, 1, 3).reshape(spec.out_shape)  # -> (N, G, K/G, OH·OW) -> (N, K, OH, OW)
    return add_bias(y, b)


STRATEGY = Strategy(
    name="im2col",
    run=run,
    description="column matrix (C·R·S × N·OH·OW) + one GEMM per group; any configuration",
)
