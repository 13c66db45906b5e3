"""Side-by-side comparison of every strategy on a layer: time, accuracy, workspace.

``gemmconv.compare(x, w, b, **conv_args)`` measures one convolution, or one of its other passes
(``pass_="grad_input"``, ``"grad_weight"``, ``"transpose"``: the transposed convolution of the layer's
output shape back to its input's); :func:`compare_layers` runs the named layer set (``gemmconv compare
[--pass ...]`` on the command line). Each strategy is warmed up until its calls stop getting faster (or a
time budget is spent), then timed ``repeat`` times (median and interquartile range), and timed again while
that range says the measurement was disturbed (:func:`gemmconv.strategies.measure.measure_settled`); its error is
max|y - ref| / max|ref| against the same pass in float64; its workspace is the peak memory it held beyond
its result.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from ..api.backward import grad_input, grad_weight, transpose
from ..backends import get_backend
from ..core.args import ConvArgs
from ..core.errors import StrategyNotSupportedError
from ..core.registry import FORWARD, GRAD_INPUT, GRAD_WEIGHT, get_strategy, list_strategies
from ..planning.plan import make_plan, runner_for, spatial_dims
from ..planning.validate import Validated, validate
from ..strategies import auto
from ..strategies.measure import Settings, measure_settled, reference, relative_error
from ..strategies.measure import wide as measure_wide
from .layers import Layer, LayerND

__all__ = ["PASSES", "Record", "compare", "compare_layers", "machine_peaks"]

#: what :func:`compare` can measure: the convolution, its two gradients, and its transposed convolution
PASSES = (FORWARD, GRAD_INPUT, GRAD_WEIGHT, "transpose")


@dataclass
class Record:
    """One strategy on one layer.

    Times are seconds per call of the timed calls, warm-up excluded: ``median_s`` with the quartiles
    ``q1_s`` and ``q3_s`` (``iqr_s = q3_s - q1_s``, ``rel_iqr = iqr_s / median_s``); ``spread`` is the
    older (max - min) / median, which a single stall sets. ``disturbed`` is True when ``rel_iqr`` stayed
    above :data:`gemmconv.strategies.measure.DISTURBED` after ``attempts`` timings (the least disturbed is kept).
    """

    layer: str
    strategy: str
    backend: str
    pass_: str
    dtype: str
    batch: int
    x_shape: tuple[int, ...]
    w_shape: tuple[int, ...]
    conv_args: dict[str, Any]
    flops: int  # direct-convolution count (2 per multiply-add); Winograd's rate is "effective"
    min_bytes: int  # x, w, b and y each moved once: the floor of memory traffic
    status: str = "ok"  # "ok" or "refused"
    reason: str = ""  # why a strategy refused
    median_s: float | None = None
    min_s: float | None = None
    max_s: float | None = None
    spread: float | None = None  # (max - min) / median
    q1_s: float | None = None
    q3_s: float | None = None
    iqr_s: float | None = None  # q3_s - q1_s
    rel_iqr: float | None = None  # iqr_s / median_s
    warmup_calls: int = 0  # untimed calls before the timed ones
    warmup_settled: bool = False  # the warm-up ended because the calls stopped getting faster, not on its budget
    attempts: int = 0  # timings made (more than 1: the earlier ones were disturbed)
    disturbed: bool = False  # rel_iqr above DISTURBED even in the kept attempt
    gflops: float | None = None
    rel_error: float | None = None
    workspace_bytes: int | None = None
    chosen: str = ""  # for auto: the strategy it ran
    winner: bool = False  # fastest strategy of its layer (auto excluded)
    times_s: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(x: Any, w: Any, b: Any | None = None, *, pass_: str = FORWARD, strategies: Sequence[str] | None = None,
            repeat: int = 10, warmup: int = 1, warmup_s: float = 1.0, retries: int = 2, layer: str = "custom",
            progress: Callable[[str], None] | None = None, **conv_args: Any) -> list[Record]:
    """Run every strategy (or ``strategies``) on one convolution, or one of its other passes, and measure it.

    Parameters
    ----------
    x, w, b : arrays
        As in :func:`gemmconv.conv2d` (NumPy or CuPy): the convolution whose pass is measured.
    pass_ : str
        ``"forward"`` (the convolution), ``"grad_input"`` and ``"grad_weight"`` (its gradients, for an upstream
        gradient of random values), or ``"transpose"`` (:func:`gemmconv.conv_transpose2d` of an array of the
        convolution's output shape with ``w``, and a bias of the input's channels if ``b`` is given).
    strategies : sequence of str, optional
        Names to compare; default every registered strategy.
    repeat : int
        Timed calls per strategy (their median and quartiles are reported).
    warmup : int
        Untimed calls always made first (compilation, caches).
    warmup_s : float
        Seconds of further warm-up at most per strategy: rounds of calls until one is no faster than the
        ones before it (:data:`gemmconv.strategies.measure.SETTLED`). 0 for ``warmup`` calls only.
    retries : int
        Times a disturbed measurement (interquartile range above :data:`gemmconv.strategies.measure.DISTURBED` of
        the median) is timed again at most; the least disturbed one is kept.
    layer : str
        Name put in the records.
    progress : callable, optional
        Called with the strategy name before each measurement.
    **conv_args
        ``stride``, ``padding``, ``dilation``, ``groups``, ``padding_mode``.

    Returns
    -------
    list of Record
        One per strategy, in order; refused ones carry the reason. The fastest
        (``auto`` aside) has ``winner=True``.
    """
    settings = Settings(repeat=repeat, warmup=warmup, warmup_s=warmup_s, retries=retries)
    names = list(strategies) if strategies is not None else list_strategies()
    for name in names:
        get_strategy(name)  # unknown names fail before any work
    if "strategy" in conv_args:
        raise TypeError("compare() takes strategies=[...], not strategy=")
    if pass_ not in PASSES:
        raise ValueError(f"pass_ must be one of {', '.join(map(repr, PASSES))}, got {pass_!r}")
    args = ConvArgs.from_kwargs("compare", conv_args)
    v = validate(x, w, b, args, ndim=spatial_dims(w))
    backend, x4, spec = v.backend, v.x, v.spec
    xp = backend.xp
    itemsize = x4.dtype.itemsize
    min_bytes = (x4.size + w.size + (0 if b is None else b.size) + math.prod(spec.out_shape)) * itemsize
    common: dict[str, Any] = dict(
        layer=layer, backend=backend.name, pass_=pass_, dtype=spec.dtype, batch=spec.n, x_shape=tuple(x4.shape),
        w_shape=tuple(w.shape), conv_args=args.as_dict(), flops=spec.flops, min_bytes=int(min_bytes))
    records = []
    if pass_ == FORWARD:
        with backend.device_context(x4):
            ref = reference(backend, v.x, v.w, v.b, lambda s: runner_for(backend, spec, get_strategy(s)))  # unbounded
        calls = _forward_calls(x, w, b, args)
    else:
        calls, ref = _pass_calls(pass_, v, args)
    for name in names:
        if progress is not None:
            progress(name)
        try:
            call, chosen = calls(name)
        except StrategyNotSupportedError as e:
            records.append(Record(strategy=name, status="refused", reason=e.reason, **common))
            continue
        y, m = measure_settled(call, backend, settings)
        _, workspace = backend.profiler.peak_memory(call)
        if v.unbatched and pass_ != GRAD_WEIGHT:
            y = y[None]  # (K, OH, OW) -> (1, K, OH, OW)
        records.append(Record(
            strategy=name, median_s=m.median, min_s=min(m.times), max_s=max(m.times), spread=m.spread,
            q1_s=m.q1, q3_s=m.q3, iqr_s=m.iqr, rel_iqr=m.rel_iqr, warmup_calls=m.warmup_calls,
            warmup_settled=m.warmup_settled, attempts=m.attempts, disturbed=m.disturbed,
            gflops=spec.flops / m.median / 1e9 if m.median > 0 else None,
            rel_error=relative_error(y, ref, xp), workspace_bytes=workspace,
            chosen=chosen if name == "auto" else "", times_s=list(m.times), **common,
        ))
    ok = [r for r in records if r.status == "ok" and r.strategy != "auto"]
    if ok:
        min(ok, key=lambda r: float(r.median_s or 0.0)).winner = True
    return records


Calls = Callable[[str], tuple[Callable[[], Any], str]]


def _forward_calls(x: Any, w: Any, b: Any, args: ConvArgs) -> Calls:
    """``calls(name) -> (call, what it runs)``: a plan of strategy ``name`` (StrategyNotSupportedError if it
    refuses)."""
    def calls(name: str) -> tuple[Callable[[], Any], str]:
        p = make_plan(x, w, b, replace(args, strategy=name))
        return functools.partial(p, x, w, b), p.strategy

    return calls


def _pass_calls(pass_: str, v: Validated, args: ConvArgs) -> tuple[Calls, Any]:
    """The calls of backward pass (or transposed convolution) ``pass_`` of the validated convolution ``v``, and
    its result in float64 (by :func:`gemmconv.strategies.auto.yardstick`'s strategy), batched."""
    spec, backend = v.spec, v.backend
    xp = backend.xp
    rng = np.random.default_rng(0)
    gy = _uniform(xp, rng, spec.out_shape, v.x.dtype)  # (N, K, *out_size)
    ndim = spec.ndim
    if pass_ == "transpose":
        if isinstance(args.padding, str):
            raise ValueError(f"padding={args.padding!r}: the transposed convolution takes int or pair paddings")
        if spec.padding_mode != "zeros" or args.workspace_limit is not None:
            raise ValueError("the transposed convolution has padding_mode 'zeros' and no workspace_limit")
        bt = None if v.b is None else _uniform(xp, rng, (spec.c,), v.x.dtype)

        def run(s: str, a: Any, w: Any, c: Any) -> Any:
            return transpose(ndim, a, w, c, replace(args, strategy=s), 0, None)
        operands: tuple[Any, Any, Any] = (gy, v.w, bt)
    elif pass_ == GRAD_INPUT:
        shape = tuple(v.x.shape)

        def run(s: str, a: Any, w: Any, c: Any) -> Any:
            return grad_input(ndim, shape, w, a, replace(args, strategy=s), None)
        operands = (gy, v.w, None)
    else:
        wshape = tuple(v.w.shape)

        def run(s: str, a: Any, w: Any, c: Any) -> Any:
            return grad_weight(ndim, a, wshape, w, replace(args, strategy=s), None)
        operands = (v.x, gy, None)
    refusal_pass = GRAD_INPUT if pass_ == "transpose" else pass_
    wide = tuple(None if a is None else a.astype(measure_wide(a.dtype)) for a in operands)
    with backend.device_context(v.x):
        ref = run(auto.yardstick(backend, refusal_pass), *wide)

    def calls(name: str) -> tuple[Callable[[], Any], str]:
        run(name, *operands)  # a refusal is raised here, before any timing
        chosen = auto.choose_pass(spec, refusal_pass, backend, v.limits) if name == "auto" else name
        return functools.partial(run, name, *operands), chosen

    return calls, ref


def _uniform(xp: Any, rng: np.random.Generator, shape: tuple[int, ...], dtype: Any) -> Any:
    """Uniform values in [-1, 1) (in each part, for a complex ``dtype``) as an array of ``xp``."""
    a = rng.uniform(-1, 1, shape)
    if np.dtype(dtype).kind == "c":
        a = a + 1j * rng.uniform(-1, 1, shape)
    return xp.asarray(a).astype(dtype)


def compare_layers(layers: Sequence[Layer | LayerND], *, batch: int = 1, dtype: str = "float32", backend: str = "numpy",
                   strategies: Sequence[str] | None = None, repeat: int = 10, pass_: str = FORWARD,
                   progress: Callable[[str], None] | None = None, warmup: int = 1, warmup_s: float = 1.0,
                   retries: int = 2) -> list[Record]:
    """:func:`compare` over named layers (see :data:`gemmconv.tools.layers.LAYERS`), arrays made on ``backend``.

    ``repeat``, ``warmup``, ``warmup_s`` and ``retries`` are :func:`compare`'s, for each layer.
    """
    xp = _namespace(backend)
    records = []
    for layer in layers:
        made: tuple[Any, ...] = layer.arrays(batch, "float32")
        if np.dtype(dtype).kind == "c":  # random imaginary parts too
            made = tuple(a + 1j * i for a, i in zip(made, layer.arrays(batch, "float32", seed=1), strict=True))
        x, w, b = (xp.asarray(a).astype(dtype) for a in made)
        cb = None if progress is None else (lambda s, name=layer.name: progress(f"{name}: {s}"))
        records += compare(x, w, b, pass_=pass_, strategies=strategies, repeat=repeat, warmup=warmup,
                           warmup_s=warmup_s, retries=retries, layer=layer.name, progress=cb, **layer.conv_args)
    return records


def _namespace(backend: str) -> Any:
    if backend == "numpy":
        return np
    if backend == "cupy":
        try:
            import cupy
        except ImportError as e:
            raise ValueError(f"backend='cupy' needs CuPy: pip install 'gemmconv[cupy]' ({e})") from None
        return cupy
    raise ValueError(f"backend must be 'numpy' or 'cupy', got {backend!r}")


def machine_peaks(backend: str = "numpy", dtype: str = "float32", repeat: int = 5) -> dict[str, float]:
    """GEMM rate (GFLOP/s, a square matmul) and copy bandwidth (GB/s, read + write) measured now."""
    xp = _namespace(backend)
    probe = xp.zeros(1, dtype=dtype)
    be = get_backend(probe)
    nn = be.profiler.peak_gemm_size
    a = xp.ones((nn, nn), dtype=dtype)
    b = xp.ones((nn, nn), dtype=dtype)
    be.matmul(a, b)
    t_gemm = min(be.profiler.time_calls(lambda: be.matmul(a, b), repeat))
    big = xp.ones(32 * 2**20 // probe.itemsize, dtype=dtype)  # 32 MiB, beyond the caches
    big.copy()
    t_copy = min(be.profiler.time_calls(big.copy, repeat))
    return {"gemm_gflops": 2 * nn**3 / t_gemm / 1e9, "bandwidth_gbs": 2 * big.nbytes / t_copy / 1e9,
            "gemm_size": nn}
