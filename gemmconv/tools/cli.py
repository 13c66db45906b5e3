"""The command line: ``gemmconv compare`` (also ``python -m gemmconv compare``)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Literal

from ..core.registry import list_strategies
from ..core.spec import PADDING_MODES
from ..strategies.measure import DISTURBED
from .compare import PASSES, compare_layers, machine_peaks
from .layers import LAYERS, LAYERS_LARGE, LAYERS_ND, SWEEP_SIZES, Layer, LayerND, kernel_sweep
from .plot import plot_records, plot_sweep

#: the options that describe your layer, so apply with --shape only (the built-in layers have their own)
SHAPE_OPTIONS = ("stride", "padding", "dilation", "groups", "padding_mode")


@dataclass(frozen=True)
class Ints:
    """An argparse type: ``count`` comma-separated integers (any number of them for ``count=0``), each ``>= least``,
    as a tuple."""

    option: str
    count: int
    least: int = 1

    def __call__(self, text: str) -> tuple[int, ...]:
        try:
            dims = tuple(int(v) for v in text.split(","))
        except ValueError:
            dims = ()
        if not dims or (self.count and len(dims) != self.count) or min(dims) < self.least:
            raise argparse.ArgumentTypeError(f"{self.option} takes {self.count or 'some'} comma-separated integers >= "
                                             f"{self.least}, got {text!r}")
        return dims


@dataclass(frozen=True)
class Pair:
    """An argparse type: an int ``V`` or a pair ``H,W`` (each ``>= least``), or one of ``words``, as conv2d
    takes them: an int, a tuple of two ints, or the word itself."""

    option: str
    least: int
    words: tuple[str, ...] = ()

    def __call__(self, text: str) -> int | tuple[int, int] | str:
        if text in self.words:
            return text
        try:
            values = tuple(int(v) for v in text.split(","))
        except ValueError:
            values = ()
        if len(values) not in (1, 2) or min(values) < self.least:
            words = "".join(f" or {w!r}" for w in self.words)
            raise argparse.ArgumentTypeError(
                f"{self.option} takes an integer V or a pair H,W of integers >= {self.least}{words}; got {text!r}")
        return values[0] if len(values) == 1 else (values[0], values[1])


@dataclass(frozen=True)
class Count:
    """An argparse type: an int ``>= least``."""

    option: str
    least: int

    def __call__(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = self.least - 1
        if value < self.least:
            raise argparse.ArgumentTypeError(f"{self.option} takes an integer >= {self.least}, got {text!r}")
        return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"--warmup-s takes a number of seconds >= 0, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The ``gemmconv`` argument parser (its ``compare`` command)."""
    parser = argparse.ArgumentParser(prog="gemmconv", description="2-D convolution with a visible choice of algorithm")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser(
        "compare", help="time every strategy on a layer set and print time, error and memory",
        description="Run every strategy on the built-in layer set (or your layer, --shape) and print, per layer and "
                    "strategy: the median time of the timed calls after warm-up and their interquartile range, "
                    "effective GFLOP/s, relative error against float64, extra workspace memory, and the winner.")
    c.add_argument("--backend", choices=("numpy", "cupy"), default="numpy",
                   help="where the arrays live: numpy (CPU) or cupy (GPU) (default: numpy)")
    c.add_argument("--dtype", choices=("float16", "float32", "float64", "complex64", "complex128"), default="float32",
                   help="element type of x, w and b; float16 on cupy only (default: float32)")
    c.add_argument("--batch", type=Count("--batch", 1), metavar="N",
                   help="images per call for the built-in layers; --shape gives its own N (default: 1)")
    c.add_argument("--layers", nargs="+", choices=[*LAYERS, *LAYERS_ND, *LAYERS_LARGE], metavar="NAME",
                   help=f"built-in layers to run: the 2-D {', '.join(LAYERS)} (default: all of these); the 1-D and "
                        f"3-D {', '.join(LAYERS_ND)}; the large kernels {', '.join(LAYERS_LARGE)}")
    c.add_argument("--shape", type=Ints("--shape", 7), metavar="N,C,H,W,K,R,S",
                   help="your own layer instead of the built-in ones: x of N×C×H×W, w of K×(C/groups)×R×S "
                        "(default: none, the built-in layers)")
    shape = c.add_argument_group("your layer's convolution (with --shape only; the built-in layers have their own)")
    shape.add_argument("--stride", type=Pair("--stride", 1), metavar="S|SH,SW",
                       help="step of the kernel over the input, or a step per dimension (default: 1)")
    shape.add_argument("--padding", type=Pair("--padding", 0, ("same", "valid")), metavar="P|PH,PW|same|valid",
                       help="zeros (or --padding-mode values) added on each side; 'same' needs stride 1 (default: 0)")
    shape.add_argument("--dilation", type=Pair("--dilation", 1), metavar="D|DH,DW",
                       help="spacing of the kernel's taps, or a spacing per dimension (default: 1)")
    shape.add_argument("--groups", type=Count("--groups", 1), metavar="G",
                       help="must divide C and K; C for depthwise (default: 1)")
    shape.add_argument("--padding-mode", choices=PADDING_MODES, help="what the padding holds (default: zeros)")
    c.add_argument("--pass", dest="pass_", choices=PASSES, default="forward",
                   help="what to time: the convolution, its gradients, or its transposed convolution (default: "
                        "forward)")
    c.add_argument("--strategies", nargs="+", metavar="NAME",
                   help=f"strategies to run: {', '.join(list_strategies())} (default: all)")
    c.add_argument("--repeat", type=Count("--repeat", 1), default=10, metavar="R",
                   help="timed calls per strategy, after its warm-up (default: 10)")
    c.add_argument("--warmup-s", type=_seconds, default=1.0, metavar="SECONDS",
                   help="warm-up per strategy at most: rounds of calls until they stop getting faster; 0 for "
                        "one untimed call only (default: 1.0)")
    c.add_argument("--retries", type=Count("--retries", 0), default=2, metavar="T",
                   help=f"times a disturbed measurement (IQR above {DISTURBED * 100:.0f}%% of the median) is timed "
                        "again; the least disturbed is kept (default: 2)")
    c.add_argument("--sweep", choices=("kernel",),
                   help="run each layer with kernels of every --sizes instead (padding size // 2); --plot then draws "
                        "time against kernel size, one line per strategy: where each wins (default: no sweep)")
    c.add_argument("--sizes", type=Ints("--sizes", 0), metavar="K1,K2,...",
                   help=f"kernel sizes of --sweep kernel (default: {','.join(map(str, SWEEP_SIZES))})")
    c.add_argument("--json", metavar="FILE", help="write the records as JSON (default: none)")
    c.add_argument("--plot", metavar="FILE.png", help="write per-layer bars and a roofline as PNG (default: none)")
    c.set_defaults(error=c.error)
    return parser


def shape_layer(args: argparse.Namespace) -> tuple[Layer, int]:
    """The layer ``--shape`` and the layer options describe, and its batch N."""
    n, c, h, w, k, kh, kw = args.shape
    given = {name: getattr(args, name) for name in SHAPE_OPTIONS if getattr(args, name) is not None}
    return Layer("custom", c, h, w, k, kh, kw, **given), n


def layer_option_error(args: argparse.Namespace) -> str:
    """What is wrong with the combination of options (empty if nothing): the layer options and ``--batch``
    without ``--shape``, or ``--shape`` with ``--layers``."""
    if args.shape is None:
        given = [f"--{name.replace('_', '-')}" for name in SHAPE_OPTIONS if getattr(args, name) is not None]
        if given:
            return (f"{', '.join(given)}: for your layer only, with --shape N,C,H,W,K,R,S; the built-in layers have "
                    "their own stride, padding, dilation and groups (gemmconv.tools.layers.LAYERS)")
        return ""
    if args.layers:
        return "--shape runs your layer instead of the built-in ones: drop --layers or --shape"
    if args.batch is not None:
        return f"--shape gives N ({args.shape[0]}): drop --batch {args.batch}"
    c, k = args.shape[1], args.shape[4]
    if args.groups is not None and (c % args.groups or k % args.groups):
        return f"--groups {args.groups} must divide C={c} and K={k} of --shape"
    return ""


def _table(records: list[Any], title: str, warmup_s: float) -> Any:
    from rich.table import Table

    table = Table(title=title)
    columns: tuple[tuple[str, Literal["left", "right"]], ...] = (
        ("layer", "left"), ("strategy", "left"), ("median ms", "right"), ("IQR/median", "right"),
        ("GFLOP/s", "right"), ("rel. error", "right"), ("workspace", "right"), ("warm-up calls", "right"),
        ("note", "left"))
    for col, just in columns:
        table.add_column(col, justify=just)
    last = None
    for r in records:
        layer = r.layer if r.layer != last else ""
        if last is not None and r.layer != last:
            table.add_section()
        last = r.layer
        if r.status != "ok":
            table.add_row(layer, r.strategy, "-", "-", "-", "-", "-", "-", f"refused: {r.reason}", style="dim")
            continue
        table.add_row(layer, r.strategy, f"{r.median_s * 1e3:.3f}", f"{r.rel_iqr:.0%}", f"{r.gflops:.1f}",
                      f"{r.rel_error:.1e}", _bytes(r.workspace_bytes), str(r.warmup_calls), note(r, warmup_s),
                      style="bold green" if r.winner else ("yellow" if r.disturbed else None))
    return table


def note(r: Any, warmup_s: float) -> str:
    """The table's last column for a measured record: winner, what auto ran, and what went wrong."""
    parts = []
    if r.winner:
        parts.append("winner")
    if r.chosen:
        parts.append(f"ran {r.chosen}")
    if r.disturbed:
        parts.append(f"disturbed: IQR above {DISTURBED:.0%} in {r.attempts} timings")
    elif r.attempts > 1:
        parts.append(f"timed {r.attempts}x (disturbed before)")
    if warmup_s > 0 and not r.warmup_settled:
        parts.append(f"still warming up after {warmup_s:g} s")
    return "; ".join(parts)


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def compare_main(args: argparse.Namespace) -> int:
    """Run ``gemmconv compare`` with parsed ``args``: print the table, write ``--json`` and ``--plot``."""
    from rich.console import Console
    from rich.progress import Progress

    console = Console()
    if not console.is_terminal:
        console = Console(width=170)  # a pipe or file gets the full table, not 80 columns
    unknown = [s for s in args.strategies or [] if s not in list_strategies()]
    if unknown:
        console.print(f"gemmconv compare: error: unknown strategies {', '.join(unknown)}; "
                      f"registered: {', '.join(list_strategies())}", style="red")
        return 2
    layers: list[Layer | LayerND]
    if args.shape:
        layer, batch = shape_layer(args)
        layers = [layer]
    else:
        named: dict[str, Layer | LayerND] = {**LAYERS, **LAYERS_ND, **LAYERS_LARGE}
        layers = [named[name] for name in (args.layers or (["k11_56"] if args.sweep else LAYERS))]
        batch = args.batch or 1
    if args.sweep:
        layers = [swept for layer in layers for swept in kernel_sweep(layer, args.sizes or SWEEP_SIZES)]
    try:
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("comparing", total=len(layers) * len(args.strategies or list_strategies()))

            def step(label: str) -> None:
                bar.update(task, advance=1, description=label)

            records = compare_layers(layers, batch=batch, dtype=args.dtype, backend=args.backend,
                                     strategies=args.strategies, repeat=args.repeat, pass_=args.pass_,
                                     progress=step, warmup_s=args.warmup_s, retries=args.retries)
            peaks = machine_peaks(args.backend, args.dtype) if (args.plot or args.json) else None
    except (TypeError, ValueError) as e:
        console.print(f"gemmconv compare: error: {e}", style="red")
        return 2
    tf32 = ""
    if args.backend == "cupy":
        tf32 = ", TF32 " + ("on" if os.environ.get("CUPY_TF32", "0") not in ("", "0") else "off")
    warm = f"a warm-up of up to {args.warmup_s:g} s" if args.warmup_s > 0 else "one untimed call"
    title = (f"gemmconv compare, {args.pass_} pass: {args.backend}{tf32}, {args.dtype}, N={batch}. Median of "
             f"{args.repeat} timed calls after {warm}; IQR/median: their "
             f"interquartile range over the median (disturbed above {DISTURBED:.0%}: timed again up to "
             f"{args.retries}x). GFLOP/s by the direct count (Winograd: effective)")
    console.print(_table(records, title, args.warmup_s))
    winners = {r.layer: r.strategy for r in records if r.winner}
    console.print("winners: " + ", ".join(f"{k}: {v}" for k, v in winners.items()))
    disturbed = [f"{r.layer}/{r.strategy}" for r in records if r.disturbed]
    if disturbed:
        console.print(f"disturbed (busy machine?), rerun or raise --repeat: {', '.join(disturbed)}", style="yellow")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"backend": args.backend, "pass": args.pass_, "dtype": args.dtype, "batch": batch,
                       "repeat": args.repeat, "warmup_s": args.warmup_s, "retries": args.retries,
                       "disturbed_above": DISTURBED, "peaks": peaks, "records": [r.to_dict() for r in records]},
                      f, indent=1)
        console.print(f"wrote {args.json}")
    if args.plot and args.sweep:
        plot_sweep(records, args.plot)
    elif args.plot:
        plot_records(records, args.plot, peaks or machine_peaks(args.backend, args.dtype))
        console.print(f"wrote {args.plot}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """The ``gemmconv`` command: parse ``argv`` (default ``sys.argv[1:]``) and run it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    problem = layer_option_error(args)
    if problem:
        args.error(problem)  # the compare parser's: usage and the message, exit status 2
    try:
        import rich  # noqa: F401
    except ImportError:
        print("gemmconv compare needs rich (and matplotlib for --plot): pip install 'gemmconv[benchmarks]'",
              file=sys.stderr)
        return 1
    return compare_main(args)
