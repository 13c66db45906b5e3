"""``auto``: pick a strategy by a documented rule.

The rule (first match wins), from the costs of each algorithm as measured
(``benchmarks/vs_torch.py`` on the CPU, ``benchmarks/gpu_check.py`` on the GPU):

1. a 1×1 kernel → ``1x1`` (a plain GEMM, no workspace, no copy), unless it is
   both padded and strided (``1x1`` pads the input explicitly: a copy that
   follows the padding, not the output);
2. grouped with ≤ 4 input channels per group (depthwise included) → ``direct``
   (a GEMM of depth ≤ 4·R·S is memory-bound; the column matrix would be pure
   overhead: 0.35 ms against 1.6 ms for im2col on a 128-channel 56² depthwise layer);
3. a 3×3 stride-1 layer with ≥ 16 input and output channels per group and at
   least 16 output tiles of 4×4 over the batch → ``winograd`` (F(4×4)), or
   ``winograd_f2`` for float16, whose F(4×4) error (~1e-2) would be visible.
   Measured on 2 CPU cores it beats im2col on every ResNet-18 3×3 layer from
   16 tiles on (N=8: 0.50–1.01x torch's time against 1.23–1.59x; 14² at N=1,
   16 tiles: 1.20–1.41x against 1.53–1.56x); with 4 tiles (7² at N=1) its
   GEMMs of 4 columns and its 4x larger filter transform do not pay off (2.2x
   against 1.1x).
   On an H200 at N=32 it is 0.44–0.91x cuDNN;
4. otherwise → ``im2col`` (also instead of Winograd when a ``workspace_limit``
   is given: im2col honours it, Winograd's workspace is not bounded yet);
5. a ``workspace_limit`` below im2col's smallest block (one output row) →
   ``direct``, whose only workspace is one padded input plane at unit stride
   (none when strided).

Every choice is one whose predicate accepts the configuration.

Measured selection (:mod:`gemmconv.tuning`, off by default) replaces the rule
with timings of the candidates on the user's machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import Runner, Strategy, get_strategy
from ..spec import ConvSpec
from ..tuning import CANDIDATES, get_autotune, tuned_choice
from . import im2col, one_by_one
from .winograd import supports as winograd_supports

#: the strategies ``auto`` chooses among (third-party strategies are run only when asked for by name)
BUILTIN = CANDIDATES


def choose(spec: ConvSpec, backend: Any = None) -> str:
    """Name of the strategy the rule picks for ``spec`` (the rule is the same on every backend)."""
    padded_strided = spec.padded and (spec.sh, spec.sw) != (1, 1)
    if (spec.kh, spec.kw) == (1, 1) and not padded_strided and one_by_one.supports(spec) is None:
        return "1x1"
    if spec.groups > 1 and spec.cg <= 4:
        return "direct"
    tiles = spec.n * -(-spec.oh // 4) * -(-spec.ow // 4)
    if (winograd_supports(spec) is None and min(spec.cg, spec.kg) >= 16 and tiles >= 16
            and spec.workspace_limit is None):
        return "winograd_f2" if spec.dtype == "float16" else "winograd"
    return "im2col" if im2col.supports(spec) is None else "direct"


def candidates(spec: ConvSpec, backend: Any) -> list[str]:
    """The built-in strategies that can run ``spec``, the rule's choice first (what measured selection times)."""
    first = choose(spec, backend)
    others = [s for s in BUILTIN if s != first and get_strategy(s).supports(spec) is None]
    return [first, *others]


def select(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec, runner_for: Callable[[str], Runner]) -> str:
    """The strategy ``auto`` runs: measured when autotuning is on (see :mod:`gemmconv.tuning`), else the rule.
    Called once, when a plan is made."""
    if get_autotune().enabled:
        return tuned_choice(backend, x, w, b, spec, candidates(spec, backend), runner_for)
    return choose(spec, backend)


def run(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    raise TypeError("'auto' is resolved to another strategy when a plan is made and is never run itself; "
                    "call gemmconv.conv2d(..., strategy='auto') or gemmconv.plan(...)")


STRATEGY = Strategy(
    name="auto",
    run=run,
    select=select,
    description="picks 1x1, direct, winograd or im2col by a documented rule",
)
