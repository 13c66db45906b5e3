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
    """``U = G g G^T`` laid out as (T², G, K/G, C/G); computed in float64 for float32/float64."""
    xp = backend.xp
    t = m + 2
    work = "float64" if spec.dtype in ("float32", "float64") else "float32"
    g = backend.constant(TRANSFORMS[m]["g"], work)
    u = xp.matmul(xp.matmul(g, w.astype(work)), g.T)  # (T, 3) @ (K, C/G, 3, 3) @ (3, T) -> (K, C/G, T, T)
    u = u.transpose(2, 3, 0, 1)  # -> (T, T, K, C/G)
    u = u.reshape(t * t, spec.groups, spec.kg, spec.cg)  # -> (T², G, K/G, C/G)
    return xp.ascontiguousarray(u.astype(spec.dtype))


def _run(backend: Any, x: Any, w: Any, b: Any, spec: ConvSpec, m: int) -> Any:
    xp = backend.xp
    t = m + 2
    th, tw = -(-spec.oh // m), -(-spec.ow // m)
    p = spec.n * th * tw
    bt = backend.constant(TRANSFORMS[m]["bt"], spec.dtype)
    at = backend.constant(TRANSFORMS[m]["at"], spec.dtype)
    u = FILTER_CACHE.get(backend, w, ("winograd", m), lambda w_: _filter_transform(backend, w_, spec, m))
    v = backend.winograd_input(x, spec, bt, m, th, tw)  # (T, T, C, P), P = N·th·tw
    v = v.reshape(t * t, spec.groups, spec.cg, p)  # -> (T², G, C/G, P)
    mt = xp.matmul(u, v)  # (T², G, K/G, C/G) @ (T², G, C/G, P) -> (T², G, K/G, P)
    mt = mt.reshape(t, t, spec.k, p)  # -> (T, T, K, P)
    return backend.winograd_output(mt, b, spec, at, m, th, tw)


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
