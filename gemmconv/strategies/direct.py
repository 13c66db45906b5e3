"""``direct``: loops over output pixels and kernel taps, compiled by the backend."""

from __future__ import annotations

from typing import Any

from ..registry import Runner, Strategy
from ..spec import NO_LIMITS, ConvSpec, Limits


def prepare(backend: Any, spec: ConvSpec, limits: Limits = NO_LIMITS) -> Runner:
    """The direct loop needs no workspace to bound (one padded plane per worker at unit stride)."""
    run = backend.direct_runner(spec)
    run.workspace_bytes = backend.direct_workspace(spec)
    return run


def run(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    return backend.direct(x, w, b, spec)


STRATEGY = Strategy(
    name="direct",
    run=run,
    prepare=prepare,
    needs=("direct",),
    description="loops over output pixels and taps (compiled); any kernel, stride, dilation, groups; no workspace",
)
