"""Command line: ``gemmconv demo`` (also ``python -m gemmconv demo``)."""

from __future__ import annotations

import argparse
import sys


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shape must be 7 comma-separated integers N,C,H,W,K,R,S, got {text!r}")
    if len(dims) != 7 or min(dims) < 1:
        raise argparse.ArgumentTypeError(f"--shape must be 7 positive integers N,C,H,W,K,R,S, got {text!r}")
    return dims


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gemmconv", description="2-D convolution with a visible choice of algorithm")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run every strategy on one layer and print time and error")
    demo.add_argument("--shape", type=_shape, default=(1, 64, 56, 56, 64, 3, 3), help="N,C,H,W,K,R,S")
    demo.add_argument("--stride", type=int, default=1)
    demo.add_argument("--padding", type=int, default=1)
    demo.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    demo.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args(argv)

    try:
        from .demo import print_demo, run_demo

        rows = run_demo(args.shape, stride=args.stride, padding=args.padding, dtype=args.dtype, repeat=args.repeat)
    except (TypeError, ValueError) as e:
        print(f"gemmconv demo: error: {e}", file=sys.stderr)
        return 2
    n, c, h, w, k, kh, kw = args.shape
    title = (f"conv2d x=({n},{c},{h},{w}) w=({k},{c},{kh},{kw}) stride={args.stride} "
             f"padding={args.padding} {args.dtype}, NumPy backend, median of {args.repeat}")
    try:
        print_demo(rows, title)
    except ImportError:
        print("gemmconv demo needs rich for its table: pip install 'gemmconv[benchmarks]'", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
