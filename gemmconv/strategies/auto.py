"""``auto``: pick a strategy by a documented rule.

The rule (first match wins), from the costs of each algorithm:

1. a 1×1 kernel → ``1x1`` (a plain GEMM, no workspace);
2. grouped with ≤ 4 input channels per group (depthwise included) → ``direct``
   (a GEMM of depth ≤ 4·R·S is memory-bound; the column matrix would be pure overhead);
3. a 3×3 kernel, stride 1, dilation 1, ≥ 16 input and output channels per
   group and an output of at least 8×8 → ``winograd`` (F(4×4): 4× fewer multiplies);
4. otherwise → ``im2col``.

Measured selection comes with the compare tool.
"""

from __future__ import annotations

from typing import Any

from ..registry import Strategy, get_strategy
from ..spec import ConvSpec
from .winograd import supports as winograd_supports


def choose(spec: ConvSpec) -> str:
    """Name of the strategy the rule picks for ``spec``."""
    if (spec.kh, spec.kw) == (1, 1):
        return "1x1"
    if spec.groups > 1 and spec.cg <= 4:
        return "direct"
    if winograd_supports(spec) is None and min(spec.cg, spec.kg) >= 16 and min(spec.oh, spec.ow) >= 8:
        return "winograd"
    return "im2col"


def run(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    chosen = get_strategy(choose(spec))
    if spec.padded and not chosen.pads_zeros:
        x, spec = backend.pad(x, spec), spec.without_padding()
    return chosen.run(backend, x, w, b, spec)


STRATEGY = Strategy(
    name="auto",
    run=run,
    description="picks 1x1, direct, winograd or im2col by a documented rule",
)
