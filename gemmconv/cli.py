"""The command line: ``gemmconv compare`` (also ``python -m gemmconv compare``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Literal

from .compare import PASSES, compare_layers, machine_peaks
from .layers import LAYERS, Layer
from .plot import plot_records
from .registry import list_strategies


def _ints(name: str, count: int) -> Any:
    def parse(text: str) -> tuple[int, ...]:
        try:
            dims = tuple(int(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name} must be {count} comma-separated integers, got {text!r}") from None
        if len(dims) != count or min(dims) < 1:
            raise argparse.ArgumentTypeError(f"{name} must be {count} positive integers, got {text!r}")
        return dims

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gemmconv", description="2-D convolution with a visible choice of algorithm")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="time every strategy on a layer set and print time, error and memory",
                       description="Run every strategy on the built-in layer set (or your layer) and print, per "
                                   "layer and strategy: median time and spread, effective GFLOP/s, relative error "
                                   "against float64, extra workspace memory, and the winner.")
    c.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    c.add_argument("--dtype", choices=("float16", "float32", "float64"), default="float32")
    c.add_argument("--batch", type=int, default=1, help="N (default 1)")
    c.add_argument("--layers", nargs="+", choices=list(LAYERS), metavar="NAME",
                   help=f"built-in layers (default all): {', '.join(LAYERS)}")
    c.add_argument("--shape", type=_ints("--shape", 7), metavar="N,C,H,W,K,R,S",
                   help="your own layer instead of the built-in set (N overrides --batch)")
    c.add_argument("--stride", type=int, default=1, help="with --shape")
    c.add_argument("--padding", type=int, default=0, help="with --shape")
    c.add_argument("--dilation", type=int, default=1, help="with --shape")
    c.add_argument("--groups", type=int, default=1, help="with --shape")
    c.add_argument("--pass", dest="pass_", choices=PASSES, default="forward",
                   help="what to time: the convolution (default), its gradients, or its transposed convolution")
    c.add_argument("--strategies", nargs="+", metavar="NAME", help="strategies to run (default all)")
    c.add_argument("--repeat", type=int, default=10, help="timed calls per strategy (default 10)")
    c.add_argument("--json", metavar="FILE", help="write the records as JSON")
    c.add_argument("--plot", metavar="FILE.png", help="write per-layer bars and a roofline as PNG")
    return parser


def _table(records: list[Any], title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("layer", "left"), ("strategy", "left"), ("median ms", "right"), ("spread", "right"), ("GFLOP/s", "right"),
        ("rel. error", "right"), ("workspace", "right"), ("", "left"))
    for col, just in columns:
        table.add_column(col, justify=just)
    last = None
    for r in records:
        layer = r.layer if r.layer != last else ""
        if last is not None and r.layer != last:
            table.add_section()
        last = r.layer
        if r.status != "ok":
            table.add_row(layer, r.strategy, "-", "-", "-", "-", "-", f"refused: {r.reason}", style="dim")
            continue
        note = "winner" if r.winner else (f"ran {r.chosen}" if r.chosen else "")
        table.add_row(layer, r.strategy, f"{r.median_s * 1e3:.3f}", f"±{r.spread / 2:.0%}", f"{r.gflops:.1f}",
                      f"{r.rel_error:.1e}", _bytes(r.workspace_bytes), note,
                      style="bold green" if r.winner else None)
    return table


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def compare_main(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import Progress

    console = Console()
    if not console.is_terminal:
        console = Console(width=150)  # a pipe or file gets the full table, not 80 columns
    if args.repeat < 1 or args.batch < 1:
        console.print("gemmconv compare: error: --repeat and --batch must be >= 1", style="red")
        return 2
    unknown = [s for s in args.strategies or [] if s not in list_strategies()]
    if unknown:
        console.print(f"gemmconv compare: error: unknown strategies {', '.join(unknown)}; "
                      f"registered: {', '.join(list_strategies())}", style="red")
        return 2
    if args.shape:
        n, c, h, w, k, kh, kw = args.shape
        if c % args.groups or k % args.groups:
            console.print(f"gemmconv compare: error: --groups {args.groups} must divide C={c} and K={k}", style="red")
            return 2
        layers = [Layer("custom", c, h, w, k, kh, kw, stride=args.stride, padding=args.padding, groups=args.groups)]
        batch = n
        if args.dilation != 1:
            console.print("gemmconv compare: error: --dilation other than 1 is not in the layer set yet; "
                          "use gemmconv.compare() from Python", style="red")
            return 2
    else:
        layers = [LAYERS[name] for name in (args.layers or LAYERS)]
        batch = args.batch
    try:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("comparing", total=len(layers) * len(args.strategies or list_strategies()))

            def step(label: str) -> None:
                bar.update(task, advance=1, description=label)

            records = compare_layers(layers, batch=batch, dtype=args.dtype, backend=args.backend,
                                     strategies=args.strategies, repeat=args.repeat, pass_=args.pass_,
                                     progress=step)
            peaks = machine_peaks(args.backend, args.dtype) if (args.plot or args.json) else None
    except (TypeError, ValueError) as e:
        console.print(f"gemmconv compare: error: {e}", style="red")
        return 2
    tf32 = ""
    if args.backend == "cupy":
        tf32 = ", TF32 " + ("on" if os.environ.get("CUPY_TF32", "0") not in ("", "0") else "off")
    what = "" if args.pass_ == "forward" else f" {args.pass_}"
    title = (f"gemmconv compare{what}: {args.backend}{tf32}, {args.dtype}, N={batch}, median of {args.repeat} "
             "(spread: half the min-max range); GFLOP/s by the direct count (Winograd: effective)")
    console.print(_table(records, title))
    winners = {r.layer: r.strategy for r in records if r.winner}
    console.print("winners: " + ", ".join(f"{k}: {v}" for k, v in winners.items()))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": args.backend, "pass": args.pass_, "dtype": args.dtype, "batch": batch,
                       "repeat": args.repeat,
                       "peaks": peaks, "records": [r.to_dict() for r in records]}, f, indent=1)
        console.print(f"wrote {args.json}")
    if args.plot:
        plot_records(records, args.plot, peaks or machine_peaks(args.backend, args.dtype))
        console.print(f"wrote {args.plot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        import rich  # noqa: F401
    except ImportError:
        print("gemmconv compare needs rich (and matplotlib for --plot): pip install 'gemmconv[benchmarks]'",
              file=sys.stderr)
        return 1
    return compare_main(args)
