"""``auto``: pick a strategy by a documented rule.

The rule (first match wins), from the costs of each algorithm as measured (``benchmarks/vs_torch.py``
and ``benchmarks/overhead.py`` on the CPU, ``benchmarks/gpu_check.py`` on the GPU; the figures are in
``benchmarks/CPU_NOTES.md`` and ``GPU_NOTES.md``):

1. a 1×1 kernel → ``1x1`` (a plain GEMM, no workspace, no copy), unless it is both padded and
   strided (``1x1`` pads the input explicitly: a copy that follows the padding, not the output);
2. under 500 kFLOP (2·N·K·OH·OW·C/G·R·S) → ``direct``: one compiled loop and no GEMM, the smallest
   cost per call (a GEMM's blocks, column matrix and bias pass cost more than such a layer's work);
3. grouped with ≤ 4 input channels per group (depthwise included) → ``direct`` (a GEMM of depth
   ≤ 4·R·S is memory-bound; the column matrix would be pure overhead);
4. a 3×3 stride-1 layer with ≥ 16 input and output channels per group and at least 16 output
   tiles of 4×4 over the batch → ``winograd`` (F(4×4)), or ``winograd_f2`` for float16, whose
   F(4×4) error (~1e-2) would be visible; with fewer tiles its GEMMs are too narrow to pay for its
   larger filter transform;
5. otherwise → ``im2col`` (also instead of Winograd when a ``workspace_limit`` is given: im2col
   honours it, Winograd's workspace is not bounded yet);
6. a ``workspace_limit`` below im2col's smallest block (one output row) → ``direct``, whose only
   workspace is one padded input plane at unit stride (none when strided);
7. then, for a kernel of at least :data:`FFT_MIN_TAPS` taps, on a backend with Fourier transforms, within the
   ``workspace_limit`` (in chunks): ``fft`` where its cost model (:func:`.fft_tiling.cut`, fitted)
   predicts less time than the choice above takes for its work at :data:`RULE_FLOPS` (per pass, in every D and
   dtype: the FFT runs them natively).

Every choice is one whose predicate accepts the configuration. The rule is applied once, when a
plan is made (:func:`gemmconv.plan`; ``conv2d`` makes and caches plans).

Measured selection (:mod:`gemmconv.strategies.tuning`, off by default) replaces the rule
with timings of the candidates on the user's machine.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ..backends.base import Backend
from ..backends.kernels import FFTKernels
from ..core.errors import StrategyNotSupportedError
from ..core.registry import FORWARD, GRAD_INPUT, GRAD_WEIGHT, Runner, Strategy, get_strategy, missing_kernels, unable
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from . import im2col, one_by_one
from .complex_pairs import is_complex, pairs
from .dims import DIMS, plane, slices
from .fft_tiling import cut
from .tuning import CANDIDATES, get_autotune, tuned_choice
from .winograd import supports as winograd_supports

#: below this many flops, ``direct`` (rule 2)
SMALL_FLOPS = 500_000


#: from this many taps (the kernel's product of sizes) on, ``fft`` is weighed against the rule's choice (rule 7)
FFT_MIN_TAPS = 25
#: flops per second of each choice on large kernels, against which ``fft``'s predicted time is weighed: the GEMM
#: strategies (im2col's rate on the large-kernel layers; Winograd counted at the multiplies of direct it saves), the
#: direct loop (depthwise); the measurements are in benchmarks/CPU_NOTES.md
RULE_FLOPS = {"im2col": 1.0e11, "winograd": 2.5e11, "winograd_f2": 1.8e11, "direct": 4.0e10, "1x1": 1.5e11}


def _fft_wins(spec: ConvSpec, backend: Backend | None, limits: Limits, chosen: str, pass_: str = FORWARD) -> bool:
    """Rule 7: whether ``fft``'s predicted time for pass ``pass_`` is below ``chosen``'s (its work, complex counted
    as the real pairs it runs, at :data:`RULE_FLOPS`)."""
    if not isinstance(backend, FFTKernels) or spec.taps < FFT_MIN_TAPS:
        return False
    fft = get_strategy("fft")
    left = limits.padding_explicitly(spec, fft.pads_zeros)  # what its prepare sees (the refusal checks the same)
    if isinstance(left, str) or fft.refusal(spec, limits, pass_) is not None:
        return False
    work = (pairs(spec) if is_complex(spec) else spec).flops
    return cut(backend, spec, pass_, left).seconds < work / RULE_FLOPS.get(chosen, RULE_FLOPS["im2col"])


def choose(spec: ConvSpec, backend: Backend | None = None, limits: Limits = NO_LIMITS) -> str:
    """Name of the strategy the rule picks for ``spec`` within ``limits`` (the rule is the same on every
    backend, but ``fft`` only where the backend has Fourier transforms). A complex convolution runs as a real one
    of channel pairs (:mod:`.complex_pairs`), a 1-D or 3-D one as 2-D ones (:mod:`.dims`): rules 1-6 judge those."""
    chosen = _rule(spec, limits)
    if _fft_wins(spec, backend, limits, chosen):
        return "fft"
    # rules 1-6 judged a 2-D convolution of real numbers; the layer's own buffers (its depth planes, its channel
    # pairs, a padded copy) may not fit where that did: then the first of PASS_FALLBACK that accepts it, else the
    # choice (whose refusal then names the reason)
    return next((name for name in dict.fromkeys((chosen, *PASS_FALLBACK))
                 if _reason(name, spec, backend, limits) is None), chosen)


def _reason(name: str, spec: ConvSpec, backend: Backend | None, limits: Limits, pass_: str = FORWARD) -> str | None:
    """Why strategy ``name`` cannot run pass ``pass_`` of ``spec`` (on ``backend``, where given), or None."""
    strategy = get_strategy(name)
    return strategy.refusal(spec, limits, pass_) if backend is None else unable(strategy, spec, backend, limits,
                                                                                pass_)


def _rule(spec: ConvSpec, limits: Limits) -> str:
    """Rules 1-6 (the module's docstring)."""
    if is_complex(spec):
        spec = pairs(spec)
    if spec.ndim == 1:
        spec = plane(spec)
    elif spec.ndim == 3:
        spec = slices(spec)
    padded_strided = spec.padded and spec.strided
    if spec.taps == 1 and not padded_strided and one_by_one.STRATEGY.refusal(spec, limits) is None:
        return "1x1"
    if spec.flops < SMALL_FLOPS or (spec.groups > 1 and spec.cg <= 4):
        return "direct"
    tiles = _tiles(spec, 4)
    if (winograd_supports(spec) is None and min(spec.cg, spec.kg) >= 16 and tiles >= 16
            and limits.workspace is None):
        return "winograd_f2" if spec.dtype == "float16" else "winograd"
    return "im2col" if im2col.STRATEGY.refusal(spec, limits) is None else "direct"


#: where the forward rule's choice has no such backward pass or refuses it, ``auto`` tries these in this order
PASS_FALLBACK = ("im2col", "direct")


#: Winograd's grad_input transforms the filters afresh on every call (a backward pass's weights are new each
#: step): it pays from this many 4x4 output tiles over the batch on (the crossover's measurements:
#: benchmarks/CPU_NOTES.md, "Figures from code comments")
GRAD_INPUT_WINOGRAD_TILES = 160


#: Winograd's grad_weight adds T²·K·C/G products per tile into one sum: it pays where the tiles over the batch
#: are many against the channels (the larger of C/G and K/G): F(4x4) from 0.35 tiles of 4x4 per channel, else
#: F(2x2) from 0.15 tiles of 2x2 per channel (measured on ResNet-18's 3x3 layers: benchmarks/CPU_NOTES.md,
#: "Figures from code comments")
GRAD_WEIGHT_WINOGRAD_TILES = {"winograd": 0.35, "winograd_f2": 0.15}
#: ...and where the channels (the smaller of C/G and K/G) are at least this many: with fewer, its per-position
#: GEMMs (K/G x tiles x C/G, 36 of them) are too thin, and im2col's one GEMM of C/G·9 is faster (32 channels: 1.4-2x,
#: in 2-D and 3-D; benchmarks/CPU_NOTES.md, 2026-12-06, Zen 4)
GRAD_WEIGHT_WINOGRAD_CHANNELS = 64


def _tiles(spec: ConvSpec, m: int) -> int:
    """Output tiles of m along every spatial axis, over the batch."""
    return spec.n * math.prod(-(-o // m) for o in spec.out_size)


def _grad_weight_winograd(spec: ConvSpec, first: str) -> str:
    """The forward rule's Winograd choice ``first`` kept for grad_weight by :data:`GRAD_WEIGHT_WINOGRAD_TILES`
    and :data:`GRAD_WEIGHT_WINOGRAD_CHANNELS`: F(4x4) (not for float16), else F(2x2), else ``im2col``."""
    if min(spec.cg, spec.kg) < GRAD_WEIGHT_WINOGRAD_CHANNELS:
        return "im2col"
    channels = max(spec.cg, spec.kg)
    if first == "winograd" and _tiles(spec, 4) >= GRAD_WEIGHT_WINOGRAD_TILES["winograd"] * channels:
        return "winograd"
    if _tiles(spec, 2) >= GRAD_WEIGHT_WINOGRAD_TILES["winograd_f2"] * channels:
        return "winograd_f2"
    return "im2col"


def choose_pass(spec: ConvSpec, pass_: str, backend: Backend, limits: Limits = NO_LIMITS) -> str:
    """The strategy ``auto`` runs for backward pass ``pass_``: the forward rule's choice for ``spec`` (its
    grad_input is a forward convolution of the same shape when the stride is 1), but Winograd's grad_input only
    from :data:`GRAD_INPUT_WINOGRAD_TILES` tiles on, and its grad_weight by :data:`GRAD_WEIGHT_WINOGRAD_TILES`;
    else the first of :data:`PASS_FALLBACK` that has the pass, accepts the convolution and whose kernels the
    backend provides."""
    first = _rule(spec, limits)
    if first.startswith("winograd") and pass_ == GRAD_INPUT and _tiles(spec, 4) < GRAD_INPUT_WINOGRAD_TILES:
        first = "im2col"
    elif first.startswith("winograd") and pass_ == GRAD_WEIGHT:
        first = _grad_weight_winograd(spec, first)
    if _fft_wins(spec, backend, limits, first, pass_):
        first = "fft"
    reasons = []
    for name in dict.fromkeys((first, *PASS_FALLBACK)):
        reason = _reason(name, spec, backend, limits, pass_)
        if reason is None:
            return name
        reasons.append(f"{name} {reason}")
    raise StrategyNotSupportedError("auto", f"no built-in strategy runs the {pass_} pass here: {'; '.join(reasons)}",
                                    ())


def candidates(spec: ConvSpec, backend: Backend, limits: Limits = NO_LIMITS, pass_: str = FORWARD) -> list[str]:
    """The built-in strategies that can run pass ``pass_`` of ``spec`` within ``limits``, the rule's choice first
    (what measured selection times)."""
    first = choose(spec, backend, limits) if pass_ == FORWARD else choose_pass(spec, pass_, backend, limits)
    others = [s for s in CANDIDATES if s != first and _reason(s, spec, backend, limits, pass_) is None]
    if _reason(first, spec, backend, limits, pass_) is not None:  # nothing else either: its refusal
        return others or [first]
    return [first, *others]


def yardstick(backend: Backend, pass_: str = FORWARD) -> str:
    """The strategy whose pass in float64 errors are measured against: im2col's, or direct's where the backend
    has no im2col kernels for the pass (CuPy's grad_input: no col2im)."""
    return "im2col" if missing_kernels(get_strategy("im2col"), backend, pass_) is None else "direct"


def select_pass(backend: Backend, a: Any, b: Any, spec: ConvSpec, pass_: str, limits: Limits,
                runner_for: Callable[[str], Runner]) -> str:
    """The strategy ``auto`` runs for backward pass ``pass_``: measured when autotuning is on, on the pass's
    operands ``a`` and ``b`` (``runner_for(name)`` prepares a candidate's pass; errors against
    :func:`yardstick`'s), else the rule."""
    if not get_autotune().enabled:
        return choose_pass(spec, pass_, backend, limits)
    found = candidates(spec, backend, limits, pass_)
    if len(found) == 1:  # nothing to compare (a refused one: resolving it names why)
        return found[0]
    return tuned_choice(backend, a, b, None, spec, limits, found, runner_for, pass_, yardstick(backend, pass_))


def select(backend: Backend, x: Any, w: Any, b: Any, spec: ConvSpec, limits: Limits,
           runner_for: Callable[[str], Runner], pass_: str = FORWARD) -> str:
    """The strategy ``auto`` runs for pass ``pass_``: measured when autotuning is on (see
    :mod:`gemmconv.strategies.tuning`), else the rule. Called once, when a plan is made; for a backward pass ``x``
    and ``w`` are the pass's operands (:func:`select_pass`)."""
    if pass_ != FORWARD:
        return select_pass(backend, x, w, spec, pass_, limits, runner_for)
    if get_autotune().enabled:
        found = candidates(spec, backend, limits)
        if len(found) == 1:  # nothing to compare (a refused one: resolving it names why)
            return found[0]
        return tuned_choice(backend, x, w, b, spec, limits, found, runner_for)
    return choose(spec, backend, limits)


def run(backend: Backend, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    raise TypeError("'auto' is resolved to another strategy when a plan is made and is never run itself; "
                    "call gemmconv.conv2d(..., strategy='auto') or gemmconv.plan(...)")


STRATEGY = Strategy(
    name="auto",
    run=run,
    select=select,
    description="picks 1x1, direct, winograd, im2col or fft by a documented rule",
    dims=DIMS,
)
