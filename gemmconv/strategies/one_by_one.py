"""``1x1``: a 1×1 convolution is a matmul over channels; stride by slicing, no column matrix."""

from __future__ import annotations

from typing import Any

from ..registry import Strategy
from ..spec import ConvSpec
from ._common import add_bias


def supports(spec: ConvSpec) -> str | None:
    if (spec.kh, spec.kw) != (1, 1):
        return f"needs a 1x1 kernel, got {spec.kh}x{spec.kw}"
    return None


def run(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    if (spec.sh, spec.sw) != (1, 1):
        x = x[:, :, : spec.oh * spec.sh : spec.sh, : spec.ow * spec.sw : spec.sw]  # -> (N, C, OH, OW)
    xs = x.reshape(spec.n, spec.groups, spec.cg, spec.oh * spec.ow)  # (N, C, OH, OW) -> (N, G, C/G, OH·OW)
    wm = w.reshape(spec.groups, spec.kg, spec.cg)  # (K, C/G, 1, 1) -> (G, K/G, C/G)
    y = backend.matmul(wm, xs)  # (G, K/G, C/G) @ (N, G, C/G, OH·OW) -> (N, G, K/G, OH·OW)
    return add_bias(y.reshape(spec.out_shape), b)  # -> (N, K, OH, OW)


STRATEGY = Strategy(
    name="1x1",
    run=run,
    supports=supports,
    description="reshape + batched matmul over channels, stride by slicing; 1x1 kernels only",
    pads_zeros=False,
)
