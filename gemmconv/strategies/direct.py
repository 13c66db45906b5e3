"""``direct``: loops over output pixels and kernel taps, compiled by the backend."""

from __future__ import annotations

from typing import Any

from ..registry import Strategy
from ..spec import ConvSpec


def run(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    return backend.direct(x, w, b, spec)


STRATEGY = Strategy(
    name="direct",
    run=run,
    description="loops over output pixels and taps (compiled); any kernel, stride, dilation, groups; no workspace",
)
