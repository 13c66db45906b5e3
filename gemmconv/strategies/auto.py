"""``auto``: pick a strategy by a documented rule.

The rule (first match wins), from the costs of each algorithm as measured on
the NumPy backend (``benchmarks/vs_torch.py``):

1. a 1×1 kernel → ``1x1`` (a plain GEMM, no workspace, no copy);
2. grouped with ≤ 4 input channels per group (depthwise included) → ``direct``
   (a GEMM of depth ≤ 4·R·S is memory-bound; the column matrix would be pure
   overhead: 2.1 ms against 7.0 ms for im2col on a 128-channel 56² depthwise layer);
3. on a backend whose Winograd wins (``Backend.auto_winograd``: CuPy), a 3×3
   stride-1 layer with ≥ 16 input and output channels per group →
   ``winograd`` (F(4×4)), or ``winograd_f2`` for float16, whose F(4×4) error
   (~1e-2) would be visible;
4. otherwise → ``im2col``.

On the CPU Winograd is not in the rule yet: its GEMM is 3.7x smaller than
im2col's on a 64-channel 56² layer, but its tile transforms still cost more than
that saves (5.3 ms against 3.6 ms at N=1). Measured selection, which picks it
where it wins, comes with the compare tool.
"""

from __future__ import annotations

from typing import Any

from ..registry import Strategy, get_strategy
from ..spec import ConvSpec
from .winograd import supports as winograd_supports


def choose(spec: ConvSpec, backend: Any = None) -> str:
    """Name of the strategy the rule picks for ``spec`` on ``backend`` (None: no backend preference)."""
    if (spec.kh, spec.kw) == (1, 1):
        return "1x1"
    if spec.groups > 1 and spec.cg <= 4:
        return "direct"
    if (getattr(backend, "auto_winograd", False) and winograd_supports(spec) is None
            and min(spec.cg, spec.kg) >= 16):
        return "winograd_f2" if spec.dtype == "float16" else "winograd"
    return "im2col"


def run(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    chosen = get_strategy(choose(spec, backend))
    if spec.padded and not chosen.pads_zeros:
        x, spec = backend.pad(x, spec), spec.without_padding()
    return chosen.run(backend, x, w, b, spec)


STRATEGY = Strategy(
    name="auto",
    run=run,
    description="picks 1x1, direct, im2col or (on the GPU) winograd by a documented rule",
)
