"""Every strategy against torch.nn.functional.conv2d on the CPU, interleaved in one process.

    python benchmarks/vs_torch.py [--batches 1 8] [--rounds 5] [--reps 5] [--layers ...] [--strategies ...]
                                  [--variants spin_us=0 spin_us=150,pin=1 ...] [--base CHECKOUT]

For each round, batch and layer, torch and each strategy are timed back to back (median of
``--reps`` calls each, after a short pause and one untimed call, so that no library's idle
threads are still spinning), and the ratio strategy/torch is taken per round. The table shows
the median time over rounds and the median ratio with its range over rounds: single absolute
times on a shared machine are noise, ratios of interleaved runs are not. Then: the geometric
mean of each strategy's ratios (with ``--variants``, of each strategy under each of the given
``gemmconv.set_threads`` keyword settings, also interleaved), im2col's GEMM rate against a plain
SGEMM of the same shape, and the CPU targets. The default layer set is ResNet-18's (its 3x3 layers,
stride-2 3x3 and 1x1, the stem) plus a depthwise 3x3: 8 layers x 2 batches = 16 cases. Needs torch (pip install
torch==2.13.0) and rich.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics

import numpy as np
import torch
import torch.nn.functional as F
from _packages import load_package  # benchmarks/ is on sys.path when this script runs
from _timing import geo_mean, median_time, runnable, write_times
from rich.console import Console
from rich.table import Table

import gemmconv
from gemmconv.core.args import ConvArgs
from gemmconv.planning.validate import validate
from gemmconv.strategies import im2col
from gemmconv.tools.layers import LAYERS

RESNET18 = ["stem7x7s2", "conv3x3_56", "conv3x3_28", "conv3x3_14", "conv3x3_7", "conv3x3s2_56", "conv1x1s2_56",
            "dw3x3_56"]


def _median_time(fn, reps: int) -> float:
    # Let the previous library's idle worker threads stop spinning first: OpenBLAS's spin for
    # about 0.1 s after a GEMM (OPENBLAS_THREAD_TIMEOUT), torch's OpenMP threads too, and on a
    # 2-core machine a spinning pool of one library slows the other one down.
    return median_time(fn, reps, settle=0.15)


def _gemm_share(layer, n: int, reps: int) -> float:
    """Rate of im2col's GEMMs, run as the strategy runs them, over one plain SGEMM of the whole size, in %.

    The strategy's blocks (as planned for this layer) run on the backend's workers with their
    column matrices packed beforehand, so only the GEMMs (and their writes into the output) are
    timed; the plain SGEMM is (K/G, C/G·R·S) @ (C/G·R·S, N·OH·OW) on NumPy's BLAS threads, per group.
    """
    x, w, b = layer.arrays(n)
    be, x4, w4, _, spec, *_ = validate(x, w, b, ConvArgs(**layer.conv_args))
    crs = spec.cg * spec.kh * spec.kw
    blocks = im2col.plan(spec, be.scheduler.block_budget(spec), be.scheduler.workers(), x4.dtype.itemsize)
    packed = {part[:4]: be.im2col_part(x4, spec, *part[:4]).copy() for part in blocks}
    if len(blocks) == 1:  # one block: the strategy's unblocked GEMM
        cols = packed[blocks[0][:4]].reshape(spec.n, spec.groups, crs, spec.oh * spec.ow)
        wm = w4.reshape(spec.groups, spec.kg, crs)
        ours = _median_time(lambda: be.matmul(wm, cols), reps)
    else:
        ours = _median_time(lambda: im2col.gemm_blocks(be, x4, w4, None, spec, blocks,
                                                       lambda *part: packed[part]), reps)
    a = np.ascontiguousarray(np.random.default_rng(0).standard_normal((spec.kg, crs)).astype(np.float32))
    bb = np.ascontiguousarray(np.random.default_rng(1).standard_normal((crs, spec.n * spec.oh * spec.ow)).astype(
        np.float32))
    plain = _median_time(lambda: a @ bb, reps) * spec.groups
    return 100 * plain / ours


def _variant(text: str) -> dict:
    """``"spin_us=150,pin=1"`` -> ``{"spin_us": 150.0, "pin": True}``: keyword settings of ``gemmconv.set_threads``."""
    kinds = {"threads": int, "spin_us": float, "pin": lambda v: v not in ("0", "false", "False"),
             "keep_blas": lambda v: v not in ("0", "false", "False")}
    out = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key not in kinds:
            raise SystemExit(f"--variants: unknown setting {key!r} in {text!r}; use {', '.join(kinds)}")
        out[key] = kinds[key](value)
    return out


def _settings(t) -> dict:
    """The keyword arguments of ``gemmconv.set_threads`` that give back the settings ``t``."""
    return dataclasses.asdict(t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    p.add_argument("--layers", nargs="*", default=RESNET18, choices=list(LAYERS))
    p.add_argument("--strategies", nargs="+", default=gemmconv.list_strategies(), choices=gemmconv.list_strategies())
    p.add_argument("--variants", nargs="+", default=[],
                   help="set_threads keyword settings to interleave, e.g. spin_us=0 spin_us=150,pin=1")
    p.add_argument("--json", help="also write each case's times (s) per round here, for benchmarks/run_spread.py")
    p.add_argument("--base", help="a checkout of another commit (e.g. a git worktree): its gemmconv runs each "
                                  "strategy too, interleaved, in columns marked 'base'")
    args = p.parse_args()
    variants = {v: _variant(v) for v in args.variants} or {"": {}}
    packages = {"": gemmconv} if not args.base else {"base": load_package(args.base), "": gemmconv}
    columns = [f"{s} {v} {who}".strip().replace("  ", " ") for s in args.strategies for v in variants
               for who in packages]
    strategies = args.strategies
    times: dict[tuple, list[float]] = {}
    ratios: dict[tuple, list[float]] = {}
    chosen: dict[tuple, str] = {}
    cases = {}
    for n in args.batches:
        for name in args.layers:
            layer = LAYERS[name]
            x, w, b = layer.arrays(n, args.dtype)
            tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
            ok = runnable(strategies, x, w, b, layer.conv_args)
            chosen[n, name] = gemmconv.choose_strategy(x, w, b, **layer.conv_args)
            cases[n, name] = (layer, x, w, b, tx, tw, tb, ok)

    for r in range(args.rounds):
        order = list(packages.items()) if r % 2 == 0 else list(packages.items())[::-1]  # who goes first alternates
        for (n, name), (layer, x, w, b, tx, tw, tb, ok) in cases.items():
            t_torch = _median_time(lambda: F.conv2d(tx, tw, tb, **layer.conv_args), args.reps)
            times.setdefault((n, name, "torch"), []).append(t_torch)
            for s in ok:
                for v, kwargs in variants.items():
                    for who, mod in order:
                        col = f"{s} {v} {who}".strip().replace("  ", " ")
                        old = mod.set_threads(**{**_settings(mod.get_threads()), **kwargs}) if kwargs else None
                        try:
                            t = _median_time(lambda mod=mod: mod.conv2d(x, w, b, strategy=s, **layer.conv_args),
                                             args.reps)
                        finally:
                            if old is not None:
                                mod.set_threads(**_settings(old))
                        times.setdefault((n, name, col), []).append(t)
                        ratios.setdefault((n, name, col), []).append(t / t_torch)

    if args.json:
        write_times(args.json, "forward", times)
    console = Console(width=260)
    table = Table(title=f"gemmconv / torch {torch.__version__} conv2d, {args.dtype}, {torch.get_num_threads()} "
                        f"threads, median of {args.rounds} interleaved rounds: ms (ratio to torch, range of ratios)")
    table.add_column("N")
    table.add_column("layer")
    table.add_column("torch ms", justify="right")
    for s in columns:
        table.add_column(s, justify="right")
    med = {key: statistics.median(r) for key, r in ratios.items()}
    for (n, name) in cases:
        row = [str(n), name, f"{statistics.median(times[n, name, 'torch']) * 1e3:.2f}"]
        for s in columns:
            if (n, name, s) not in ratios:
                row.append("-")
                continue
            r = ratios[n, name, s]
            note = f" [{chosen[n, name]}]" if s.startswith("auto") else ""
            row.append(f"{statistics.median(times[n, name, s]) * 1e3:.2f} ({med[n, name, s]:.2f}x "
                       f"{min(r):.2f}-{max(r):.2f}){note}")
        table.add_row(*row)
    console.print(table)

    console.print("geometric mean of ratios: " + ", ".join(
        f"{s} {geo_mean([v for (_, _, t), v in med.items() if t == s]):.2f}x"
        f" ({sum(1 for (_, _, t) in med if t == s)} cases)" for s in columns))
    if args.base:
        for col in (c for c in columns if not c.endswith(" base")):
            base = f"{col} base"
            change = [statistics.median(t / tb for t, tb in zip(times[k], times[(*k[:2], base)], strict=True))
                      for k in times if k[2] == col and (*k[:2], base) in times]
            console.print(f"after / before, {col}: geometric mean over cases {geo_mean(change):.2f}x "
                          f"(range {min(change):.2f}-{max(change):.2f}, {len(change)} cases; before: {args.base})")
    for col in (c for c in columns if c.split(" ")[0] == "auto"):
        auto = {k: v for k, v in med.items() if k[2] == col}
        worst = max(auto, key=auto.get)
        console.print(f"target {col}: geomean <= 0.85x, none worse than 1.3x: geomean {geo_mean(auto.values()):.2f}x, "
                      f"worst {auto[worst]:.2f}x ({worst[1]}, N={worst[0]})")
    ones = {k: v for k, v in med.items() if k[2] == "1x1"}
    console.print("target 1x1 <= 0.9x: " + ", ".join(f"{k[1]} N={k[0]} {v:.2f}x" for k, v in ones.items()))
    wino = {k: v for k, v in med.items() if k[2] == "winograd" and k[0] == 8 and LAYERS[k[1]].c >= 64
            and LAYERS[k[1]].groups == 1}
    console.print("target winograd <= 0.8x on 3x3 stride-1, >= 64 channels, N=8: "
                  + ", ".join(f"{k[1]} {v:.2f}x" for k, v in wino.items()))
    dw = {k: v for k, v in med.items() if k[2] == "direct" and LAYERS[k[1]].groups > 1}
    console.print("target direct on depthwise <= 1.2x: " + ", ".join(f"N={k[0]} {v:.2f}x" for k, v in dw.items()))
    if "im2col" not in strategies:
        return
    share = [f"{name} N={n} {_gemm_share(LAYERS[name], n, args.reps):.0f}%"
             for n in args.batches for name in args.layers if LAYERS[name].groups == 1]
    console.print("target im2col's GEMM >= 80% of the same-size SGEMM rate: " + ", ".join(share))


if __name__ == "__main__":
    main()
