"""Small helpers shared by the strategies."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Any

from ..core.prepared import as_prepared
from ..core.registry import FORWARD, PassImpl, PrepareFn, Strategy, SupportsFn
from ..core.spec import NO_LIMITS, ConvSpec


def add_bias(y: Any, b: Any | None) -> Any:
    """Add the per-channel bias to a freshly computed ``y`` (N, K, *out_size) in place."""
    if b is not None:
        y += b.reshape(1, -1, *(1,) * (y.ndim - 2))  # (K,) -> (1, K, 1, ...)
    return y


def trailing(slices: list[slice]) -> tuple[Any, ...]:
    """An index of the trailing (spatial) axes: ``(..., *slices)``."""
    return (Ellipsis, *slices)


def deliver(y: Any, out: Any | None) -> Any:
    """``y``, or ``out`` holding a copy of it (for the paths that cannot write into ``out`` directly)."""
    if out is None:
        return y
    out[...] = y
    return out


def split(total: int, unit_bytes: int, budget: int, parts: int) -> list[tuple[int, int]]:
    """``[0, total)`` cut into near-equal ranges of at most ``budget`` bytes (``unit_bytes`` per unit,
    at least one unit each), as many as a multiple of ``parts`` (one per worker) where there are
    enough units, so that the workers finish together; one range if all of it is under 1/16 of
    the budget (then a hand-out to workers costs more than it saves)."""
    parts = max(parts, 1)
    if total * unit_bytes <= budget // 16:  # too little work to be worth handing out
        return [(0, total)]
    count = -(-total // max(1, budget // max(unit_bytes, 1)))  # blocks that fit the budget
    count = min(total, -(-count // parts) * parts)  # rounded up to a multiple of parts
    bounds = [total * i // count for i in range(count + 1)]  # sizes differ by at most one
    return list(itertools.pairwise(bounds))


def channel_slices(k: int, workers: int) -> list[tuple[int, int]]:
    """``[0, k)`` output channels cut into one slice per worker, in multiples of 16 (whole SIMD rows)."""
    chunk = -(-k // (max(workers, 1) * 16)) * 16
    return [(k0, min(k, k0 + chunk)) for k0 in range(0, k, chunk)]


def rewritten(strategy: Strategy, supports: Callable[[SupportsFn, str], SupportsFn],
              prepare: Callable[[PrepareFn, str], PrepareFn], **changes: Any) -> Strategy:
    """``strategy`` run through a rewriting of the convolution: each pass's predicate becomes ``supports(inner,
    pass)`` and its prepare ``prepare(inner, pass)`` (``inner``: the strategy's own); ``run`` prepares the forward
    pass and runs it; ``changes`` replace other fields (``dims``)."""
    if strategy.prepare is None:
        raise ValueError(f"a rewriting needs a strategy with prepare; {strategy.name!r} has run only")
    backward = {name: PassImpl(prepare(impl.prepare, name), supports(impl.supports, name), impl.needs)
                for name, impl in strategy.backward.items()}
    forward = prepare(strategy.prepare, FORWARD)

    def run(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
        return as_prepared(forward(backend, spec, NO_LIMITS)).run(x, w, b, None)

    return dataclasses.replace(strategy, run=run, prepare=forward, supports=supports(strategy.supports, FORWARD),
                               backward=backward, **changes)
