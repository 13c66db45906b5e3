"""1-D and 3-D convolution (and the large kernels of every D) against torch on the CPU, every pass, interleaved in
one process.

    python benchmarks/vs_torch_nd.py [--passes forward grad_input grad_weight] [--batches 1 4] [--rounds 5]
                                     [--reps 3] [--set nd|large] [--layers ...] [--strategies ...] [--dtype float32]
                                     [--errors]

For each round, pass, batch and layer, torch's pass (``F.conv1d`` / ``F.conv3d``, or
``torch.ops.aten.convolution_backward`` with the mask of the one gradient; for complex dtypes, which that does not
take, the transposed convolution with the conjugated weights for grad_input, and autograd, its forward pass
included, for grad_weight) and each gemmconv strategy that accepts the case are timed back to back (median of
``--reps`` calls, after a pause and one untimed call); the
table gives the median time over rounds and the median ratio to torch with its range; then the geometric mean
per pass and strategy and the worst case of ``auto``. The layers are :data:`gemmconv.tools.layers.LAYERS_ND`
(``--set nd``) or :data:`~gemmconv.tools.layers.LAYERS_LARGE` (``--set large``). With ``--errors``, a second table
gives each strategy's error: max|got - torch's in float64 (complex128)| / max|torch's|, relative to the largest
magnitude (an FFT's error is not per element). A strategy named ``name:MiB`` (``fft:16``) runs with that
``workspace_limit``.
Needs torch (pip install torch==2.13.0) and rich.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _timing import geo_mean, median_time  # benchmarks/ is on sys.path when this script runs
from rich.console import Console
from rich.table import Table

import gemmconv
from gemmconv.tools.layers import LAYERS_LARGE, LAYERS_ND

LAYERS = {**LAYERS_ND, **LAYERS_LARGE}
TORCH = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
TRANSPOSED = {1: F.conv_transpose1d, 2: F.conv_transpose2d, 3: F.conv_transpose3d}
WIDE = {"float32": "float64", "float64": "float64", "complex64": "complex128", "complex128": "complex128"}
PASSES = ("forward", "grad_input", "grad_weight")


def cases(pass_: str, n: int, name: str, strategies: list[str], dtype: str,
          wide: bool = False) -> tuple[Callable, dict[str, Callable]]:
    """torch's pass and each accepting strategy's, as calls of no arguments (with ``wide``, torch's on the same
    values in float64 or complex128)."""
    layer = LAYERS[name]
    d = layer.ndim
    x, w, b = layer.arrays(n, dtype)
    if wide:
        x, w, b = (a.astype(WIDE[dtype]) for a in (x, w, b))
    args = layer.conv_args
    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
    y = TORCH[d](tx, tw, tb, **args)
    rng = np.random.default_rng(1)
    gy = rng.standard_normal(tuple(y.shape))
    if np.dtype(dtype).kind == "c":
        gy = gy + 1j * rng.standard_normal(tuple(y.shape))
    gy = gy.astype(dtype).astype(WIDE[dtype] if wide else dtype)
    tgy = torch.from_numpy(gy)
    mask = [pass_ == "grad_input", pass_ == "grad_weight", False]
    ones, zeros = [1] * d, [0] * d
    complex_ = np.dtype(dtype).kind == "c"
    tw_conj, tw_leaf = tw.conj().resolve_conj(), tw.clone().requires_grad_()

    def ref() -> Any:
        if pass_ == "forward":
            return TORCH[d](tx, tw, tb, **args)
        if complex_ and pass_ == "grad_input":  # what autograd computes for complex: the transposed convolution
            return TRANSPOSED[d](tgy, tw_conj, None, layer.stride, layer.padding, groups=layer.groups)
        if complex_:  # torch has no complex grad_weight of its own: autograd, its forward pass included
            with torch.enable_grad():
                return torch.autograd.grad(TORCH[d](tx, tw_leaf, None, **args), tw_leaf, tgy)
        return torch.ops.aten.convolution_backward(tgy, tx, tw, None, [layer.stride] * d, [layer.padding] * d, ones,
                                                   False, zeros, layer.groups, mask)

    fn = {"forward": getattr(gemmconv, f"conv{d}d"), "grad_input": getattr(gemmconv, f"conv{d}d_grad_input"),
          "grad_weight": getattr(gemmconv, f"conv{d}d_grad_weight")}[pass_]

    def call(name: str) -> Callable[[], Any]:
        s, _, mib = name.partition(":")  # "fft:16": strategy fft with workspace_limit=16 MiB
        kw = dict(args, strategy=s, workspace_limit=int(float(mib) * 2**20) if mib else None)
        if pass_ == "forward":
            return lambda: fn(x, w, b, **kw)
        if pass_ == "grad_input":
            return lambda: fn(x.shape, w, gy, **kw)
        return lambda: fn(x, w.shape, gy, **kw)

    ours = {}
    for s in strategies:
        try:
            call(s)()
        except gemmconv.StrategyNotSupportedError:
            continue
        ours[s] = call(s)
    return ref, ours


def _first(result: Any) -> np.ndarray:
    """The array of a pass's result (torch returns tuples for the gradients)."""
    if isinstance(result, tuple):
        result = next(r for r in result if r is not None)
    return result.detach().numpy() if isinstance(result, torch.Tensor) else np.asarray(result)


def print_errors(found: dict, dtype: str) -> None:
    """Each case's error per strategy, relative to the largest magnitude of torch's result in float64."""
    table = Table(title=f"{dtype}: max|got - torch {WIDE[dtype]}| / max|torch {WIDE[dtype]}|")
    strategies = sorted({s for _, ours in found.values() for s in ours})
    for col in ("pass", "N", "layer", *strategies):
        table.add_column(col, justify="right")
    for (pass_, n, name), (_, ours) in found.items():
        with torch.no_grad():
            want = _first(cases(pass_, n, name, [], dtype, wide=True)[0]())
        scale = float(np.max(np.abs(want)))
        table.add_row(pass_, str(n), name, *(f"{np.max(np.abs(_first(ours[s]()) - want)) / scale:.1e}" if s in ours
                                               else "-" for s in strategies))
    Console(width=240).print(table)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--passes", nargs="+", default=list(PASSES), choices=PASSES)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--set", default="nd", choices=("nd", "large"), help="the default layers")
    p.add_argument("--layers", nargs="*", choices=list(LAYERS))
    p.add_argument("--strategies", nargs="+", default=["direct", "im2col", "winograd", "1x1", "auto"])
    p.add_argument("--dtype", default="float32", choices=("float32", "float64", "complex64", "complex128"))
    p.add_argument("--errors", action="store_true", help="print each strategy's error against torch in float64")
    opts = p.parse_args()
    layers = opts.layers or list(LAYERS_ND if opts.set == "nd" else LAYERS_LARGE)
    found = {(pass_, n, name): cases(pass_, n, name, opts.strategies, opts.dtype)
             for pass_ in opts.passes for n in opts.batches for name in layers}
    if opts.errors:
        print_errors(found, opts.dtype)
    times: dict[tuple, list[float]] = {}
    ratios: dict[tuple, list[float]] = {}
    with torch.no_grad():
        for _ in range(opts.rounds):
            for key, (ref, ours) in found.items():
                t_ref = median_time(ref, opts.reps, settle=0.15)
                times.setdefault((*key, "torch"), []).append(t_ref)
                for s, fn in ours.items():
                    t = median_time(fn, opts.reps, settle=0.15)
                    times.setdefault((*key, s), []).append(t)
                    ratios.setdefault((*key, s), []).append(t / t_ref)
    console = Console(width=240)
    table = Table(title=f"gemmconv / torch {torch.__version__}, {opts.dtype}, {torch.get_num_threads()} threads, "
                        f"median of {opts.rounds} interleaved rounds: ms (ratio to torch, range)")
    for col in ("pass", "N", "layer", "torch ms", *opts.strategies):
        table.add_column(col, justify="right")
    for pass_, n, name in found:
        row = [pass_, str(n), name, f"{statistics.median(times[pass_, n, name, 'torch']) * 1e3:.2f}"]
        for s in opts.strategies:
            r = ratios.get((pass_, n, name, s))
            row.append("-" if r is None else f"{statistics.median(times[pass_, n, name, s]) * 1e3:.2f} "
                       f"({statistics.median(r):.2f}x {min(r):.2f}-{max(r):.2f})")
        table.add_row(*row)
    console.print(table)
    med = {key: statistics.median(r) for key, r in ratios.items()}
    for pass_ in opts.passes:
        parts = []
        for s in opts.strategies:
            values = [v for k, v in med.items() if k[0] == pass_ and k[3] == s]
            if values:
                parts.append(f"{s} {geo_mean(values):.2f}x ({len(values)} cases)")
        auto = {k: v for k, v in med.items() if k[0] == pass_ and k[3] == "auto"}
        worst = max(auto, key=auto.get) if auto else None
        console.print(f"{pass_}: geometric mean " + ", ".join(parts)
                      + (f"; auto worst {auto[worst]:.2f}x ({worst[2]}, N={worst[1]})" if worst else ""))


if __name__ == "__main__":
    main()
