"""``direct``: loops over output pixels and kernel taps, compiled by the backend.

Its backward passes: ``grad_input`` as the direct loops of stride-1 convolutions of ``grad_y``
(:mod:`.adjoint`), ``grad_weight`` as the backend's direct loop over taps and output pixels.
"""

from __future__ import annotations

from typing import Any

from ..backends.kernels import DirectGradKernels, DirectKernels
from ..core.prepared import Prepared
from ..core.registry import GRAD_INPUT, GRAD_WEIGHT, PassImpl, Strategy
from ..core.spec import NO_LIMITS, ConvSpec, Limits
from . import adjoint
from ._common import deliver


def prepare(backend: DirectKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    """The direct loop needs no workspace to bound (one padded plane per worker at unit stride)."""
    return backend.direct_runner(spec)


def run(backend: DirectKernels, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    return backend.direct(x, w, b, spec)


def prepare_grad_weight(backend: DirectGradKernels, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Prepared:
    def run(x: Any, gy: Any, bias: Any, out: Any) -> Any:
        return deliver(backend.direct_grad_weight(x, gy, spec), out)

    return Prepared(run, ("direct_grad_weight",), backend.direct_grad_workspace(spec))


STRATEGY = Strategy(
    name="direct",
    run=run,
    prepare=prepare,
    needs=("direct",),
    backward={GRAD_INPUT: adjoint.grad_input_pass(prepare, lambda spec: None, ("direct",)),
              GRAD_WEIGHT: PassImpl(prepare_grad_weight, needs=("direct_grad",))},
    description="loops over output pixels and taps (compiled); any kernel, stride, dilation, groups; no workspace",
)
