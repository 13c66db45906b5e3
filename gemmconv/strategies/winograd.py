"""``winograd`` (F(4×4, 3×3)) and ``winograd_f2`` (F(2×2, 3×3)).

Input tiles are transformed by the backend kernel, multiplied by the cached
filter transform in one batched GEMM over the T² tile positions, and
transformed back by the backend kernel (which also crops and adds the bias).
"""

from __future__ import annotations

from typing import Any

from ..registry import Strategy
from ..spec import ConvSpec
from .filter_cache import FilterCache
from .winograd_transforms import TRANSFORMS

#: transformed filters, shared by both tile sizes (the tile size is part of the key)
FILTER_CACHE = FilterCache()


def supports(spec: ConvSpec) -> str | None:
    if (spec.kh, spec.kw) != (3, 3):
        return f"needs a 3x3 kernel, got {spec.kh}x{spec.kw}"
    if (spec.sh, spec.sw) != (1, 1):
        return f"needs stride 1, got stride {(spec.sh, spec.sw)}"
    if (spec.dh, spec.dw) != (1, 1):
        return f"needs dilation 1, got dilation {(spec.dh, spec.dw)}"
    return None


def _filter_transform(backend: Any, w: Any, spec: ConvSpec, m: int) -> Any:
    """``U = G g G^T`` as (T², G, K/G, C/G), cached where the backend allows it."""
    work = "float32" if spec.dtype == "float16" else "float64"
    g = backend.constant(f"winograd_g{m}", TRANSFORMS[m]["g"], work)
    if not backend.caches_filters:
        return backend.winograd_filter(w, spec, g, m)
    return FILTER_CACHE.get(backend, w, ("winograd", m), lambda w_: backend.winograd_filter(w_, spec, g, m))


def _run(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec, m: int) -> Any:
    t = m + 2
    th, tw = -(-spec.oh // m), -(-spec.ow // m)
    p = spec.n * th * tw
    u = _filter_transform(backend, w, spec, m)
    v = backend.winograd_input(x, spec, m, th, tw)  # (T, T, C, P), P = N·th·tw
    v = v.reshape(t * t, spec.groups, spec.cg, p)  # -> (T², G, C/G, P)
    mt = backend.matmul(u, v, scratch=True)  # (T², G, K/G, C/G) @ (T², G, C/G, P) -> (T², G, K/G, P)
    mt = mt.reshape(t, t, spec.k, p)  # -> (T, T, K, P)
    return backend.winograd_output(mt, b, spec, m, th, tw)


def run_f4(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    return _run(backend, x, w, b, spec, 4)


def run_f2(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec) -> Any:
    return _run(backend, x, w, b, spec, 2)


STRATEGY_F4 = Strategy(
    name="winograd",
    run=run_f4,
    supports=supports,
    description="Winograd F(4x4, 3x3): 4x fewer multiplies than direct, more rounding error; "
    "3x3, stride 1, dilation 1",
)
STRATEGY_F2 = Strategy(
    name="winograd_f2",
    run=run_f2,
    supports=supports,
    description="Winograd F(2x2, 3x3): 2.25x fewer multiplies than direct, error close to direct's; "
    "3x3, stride 1, dilation 1",
)
