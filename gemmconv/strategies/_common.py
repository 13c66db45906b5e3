"""Small helpers shared by the strategies."""

from __future__ import annotations

from typing import Any


def add_bias(y: Any, b: Any | None) -> Any:
    """Add the per-channel bias to a freshly computed ``y`` (N, K, OH, OW) in place."""
    if b is not None:
        y += b.reshape(1, -1, 1, 1)  # (K,) -> (1, K, 1, 1)
    return y
