"""The backward passes and the transposed convolution against torch on the CPU, interleaved in one process.

    python benchmarks/vs_torch_backward.py [--passes grad_input grad_weight transpose] [--batches 1 8]
                                           [--rounds 5] [--reps 5] [--layers ...] [--strategies ...]
                                           [--base CHECKOUT]

For each round, pass, batch and layer, torch's same pass alone and each gemmconv strategy that has the pass
and accepts the layer are timed back to back (median of ``--reps`` calls each, after a short pause and one
untimed call), and the ratio strategy/torch is taken per round; the table gives the median time over rounds and
the median ratio with its range. torch's passes: ``torch.ops.aten.convolution_backward`` with the output mask
of the one gradient (what autograd runs for a convolution, for that gradient alone), and
``F.conv_transpose2d``. The layers are ResNet-18's (as ``vs_torch.py``) for the gradients, and decoder-style
transposed convolutions (:data:`DECODER`: the upsampling layers of a U-Net / DCGAN generator at two sizes) for
``transpose``. With ``--base`` another checkout's gemmconv (e.g. a ``git worktree`` of an older commit) runs each
strategy too, interleaved, in columns marked "base"; per pass, the geometric mean over the cases of each case's
median per-round ratio to it is printed.
Needs torch (pip install torch==2.13.0) and rich.
"""

from __future__ import annotations

import argparse
import math
import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _packages import load_package  # benchmarks/ is on sys.path when this script runs
from _timing import geo_mean, median_time, write_times
from rich.console import Console
from rich.table import Table

import gemmconv
from gemmconv.core.args import ConvArgs
from gemmconv.planning.validate import validate
from gemmconv.strategies import auto
from gemmconv.tools.layers import LAYERS

RESNET18 = ["stem7x7s2", "conv3x3_56", "conv3x3_28", "conv3x3_14", "conv3x3_7", "conv3x3s2_56", "conv1x1s2_56",
            "dw3x3_56"]

#: transposed convolutions of decoders: (name, C_in, H, W, C_out, kernel, stride, padding, output_padding)
DECODER = {
    "up4x4s2_8": (256, 8, 8, 128, 4, 2, 1, 0),  # DCGAN generator: 8² -> 16²
    "up4x4s2_16": (128, 16, 16, 64, 4, 2, 1, 0),  # 16² -> 32²
    "up3x3s2_28": (128, 28, 28, 64, 3, 2, 1, 1),  # U-Net-style 3x3/2 with output_padding: 28² -> 56²
    "up2x2s2_28": (128, 28, 28, 64, 2, 2, 0, 0),  # U-Net up-convolution 2x2/2: 28² -> 56²
}


def _settled(fn: Callable[[], Any], reps: int) -> float:
    return median_time(fn, reps, settle=0.15)  # let the previous library's idle threads stop spinning


def gradient_cases(pass_: str, n: int, name: str, strategies: list[str],
                   packages: dict[str, Any]) -> tuple[Callable, dict[str, Callable]]:
    """torch's pass and each accepting strategy's of each package (columns ``s`` and ``s base``), as calls of no
    arguments."""
    layer = LAYERS[name]
    x, w, _ = layer.arrays(n)
    args = layer.conv_args
    spec = validate(x, w, None, ConvArgs(**args)).spec
    gy = np.random.default_rng(1).standard_normal(spec.out_shape).astype(np.float32)
    tx, tw, tgy = (torch.from_numpy(a) for a in (x, w, gy))
    mask = [pass_ == "grad_input", pass_ == "grad_weight", False]
    pairs = [args["stride"]] * 2, [args["padding"]] * 2, [1, 1]

    def ref() -> Any:
        return torch.ops.aten.convolution_backward(tgy, tx, tw, None, *pairs, False, [0, 0], args["groups"], mask)

    def call(pkg: Any, s: str) -> Callable[[], Any]:
        if pass_ == "grad_input":
            return lambda: pkg.conv2d_grad_input(x.shape, w, gy, strategy=s, **args)
        return lambda: pkg.conv2d_grad_weight(x, w.shape, gy, strategy=s, **args)

    return ref, _runnable(call, strategies, packages)


def _runnable(call: Callable[[Any, str], Callable[[], Any]], strategies: list[str],
              packages: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    """The calls of the strategies that accept the case, per package (label ``""`` or ``"base"``)."""
    ours = {}
    for label, pkg in packages.items():
        for s in strategies:
            fn = call(pkg, s)
            try:
                fn()
            except pkg.StrategyNotSupportedError:
                continue
            ours[f"{s} {label}".strip()] = fn
    return ours


def transpose_cases(n: int, name: str, strategies: list[str],
                    packages: dict[str, Any]) -> tuple[Callable, dict[str, Callable]]:
    c_in, h, wd, c_out, k, s_, p, op = DECODER[name]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c_in, h, wd)).astype(np.float32)
    w = (rng.standard_normal((c_in, c_out, k, k)) / math.sqrt(c_in * k * k)).astype(np.float32)
    b = rng.standard_normal(c_out).astype(np.float32)
    tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
    kw = dict(stride=s_, padding=p, output_padding=op)

    def ref() -> Any:
        return F.conv_transpose2d(tx, tw, tb, **kw)

    return ref, _runnable(lambda pkg, s: lambda: pkg.conv_transpose2d(x, w, b, strategy=s, **kw), strategies, packages)


def _chosen(pass_: str, n: int, name: str) -> str:
    if pass_ == "transpose":
        return ""
    layer = LAYERS[name]
    x, w, _ = layer.arrays(n)
    v = validate(x, w, None, ConvArgs(**layer.conv_args))
    return auto.choose_pass(v.spec, pass_, v.backend, v.limits)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--passes", nargs="+", default=["grad_input", "grad_weight", "transpose"],
                   choices=["grad_input", "grad_weight", "transpose"])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--layers", nargs="*", default=None, help="layer names (default: ResNet-18's, or DECODER's)")
    p.add_argument("--strategies", nargs="*", default=gemmconv.list_strategies())
    p.add_argument("--json", help="also write each case's times (s) per round here, for benchmarks/run_spread.py")
    p.add_argument("--base", help="a checkout of another commit (e.g. a git worktree): its gemmconv runs each "
                                  "strategy too, interleaved, in columns marked 'base'")
    opts = p.parse_args()
    packages = {"": gemmconv} if not opts.base else {"base": load_package(opts.base), "": gemmconv}
    columns = [f"{s} {label}".strip() for s in opts.strategies for label in packages]
    cases = {}
    for pass_ in opts.passes:
        names = opts.layers or (list(DECODER) if pass_ == "transpose" else RESNET18)
        for n in opts.batches:
            for name in names:
                if pass_ == "transpose":
                    cases[pass_, n, name] = transpose_cases(n, name, opts.strategies, packages)
                else:
                    cases[pass_, n, name] = gradient_cases(pass_, n, name, opts.strategies, packages)
    times: dict[tuple, list[float]] = {}
    ratios: dict[tuple, list[float]] = {}
    with torch.no_grad():
        for _ in range(opts.rounds):
            for key, (ref, ours) in cases.items():
                t_ref = _settled(ref, opts.reps)
                times.setdefault((*key, "torch"), []).append(t_ref)
                for s, fn in ours.items():
                    t = _settled(fn, opts.reps)
                    times.setdefault((*key, s), []).append(t)
                    ratios.setdefault((*key, s), []).append(t / t_ref)

    if opts.json:
        write_times(opts.json, "backward", times)

    console = Console(width=260)
    med = {key: statistics.median(r) for key, r in ratios.items()}
    for pass_ in opts.passes:
        table = Table(title=f"{pass_}: gemmconv / torch {torch.__version__} (convolution_backward or "
                            f"conv_transpose2d), float32, {torch.get_num_threads()} threads, median of "
                            f"{opts.rounds} interleaved rounds: ms (ratio to torch, range of ratios)")
        for col in ("N", "layer", "torch ms", *columns):
            table.add_column(col, justify="left" if col in ("N", "layer") else "right")
        for (ps, n, name), _ in cases.items():
            if ps != pass_:
                continue
            row = [str(n), name, f"{statistics.median(times[ps, n, name, 'torch']) * 1e3:.2f}"]
            for s in columns:
                if (ps, n, name, s) not in ratios:
                    row.append("-")
                    continue
                r = ratios[ps, n, name, s]
                note = f" [{_chosen(ps, n, name)}]" if s == "auto" and ps != "transpose" else ""  # this checkout's
                row.append(f"{statistics.median(times[ps, n, name, s]) * 1e3:.2f} ({med[ps, n, name, s]:.2f}x "
                           f"{min(r):.2f}-{max(r):.2f}){note}")
            table.add_row(*row)
        console.print(table)
        console.print(f"{pass_}: geometric mean of ratios: " + ", ".join(
            f"{s} {geo_mean([v for k, v in med.items() if k[0] == pass_ and k[3] == s]):.2f}x"
            f" ({sum(1 for k in med if k[0] == pass_ and k[3] == s)} cases)" for s in columns))
        for s in (c for c in columns if opts.base and not c.endswith(" base")):
            change = [statistics.median(t / tb for t, tb in zip(times[k], times[(*k[:3], f"{s} base")], strict=True))
                      for k in times if k[0] == pass_ and k[3] == s and (*k[:3], f"{s} base") in times]
            if change:
                console.print(f"{pass_}: {s} against base, median of per-round ratios: geometric mean "
                              f"{geo_mean(change):.2f} (range {min(change):.2f}-{max(change):.2f}, {len(change)} cases;"
                              f" before: {opts.base})")
        chosen = {k: v for k, v in med.items() if k[0] == pass_ and k[3] == "auto"}
        if chosen:
            worst = max(chosen, key=chosen.get)
            console.print(f"target {pass_} auto: geomean <= 1.0x, none worse than 2x: geomean "
                          f"{geo_mean(chosen.values()):.2f}x, worst {chosen[worst]:.2f}x ({worst[2]}, N={worst[1]})")


if __name__ == "__main__":
    main()
