"""Differential fuzz of ``gemmconv.conv2d`` against torch in float64 (the method of the memory-safety
fixes of 2026-11-29: ``benchmarks/SAFETY_NOTES.md``).

Random configurations (every padding form and mode, dilation, groups, stride, workspace_limit at and above
im2col's smallest block, 1 or 2 BLAS threads, float32/float64, with and without bias), each run through
every strategy. A result must be within the test suite's tolerance of torch's; a refusal must be the
strategy's predicate's (StrategyNotSupportedError) or one torch makes too (ValueError); the inputs must
not change. Run it once plainly and once under ``NUMBA_BOUNDSCHECK=1`` with a cache of its own:

    python benchmarks/fuzz.py --seconds 600
    NUMBA_BOUNDSCHECK=1 NUMBA_CACHE_DIR=$(mktemp -d) python benchmarks/fuzz.py --seconds 600
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import sys
import time
import traceback

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "tests"))
from helpers import scaled_error, tolerance, torch_conv

import gemmconv
from gemmconv.core.args import ConvArgs
from gemmconv.planning.validate import validate
from gemmconv.strategies import im2col

STRATEGIES = ["direct", "im2col", "winograd", "winograd_f2", "1x1", "auto"]


def draw(rng: np.random.Generator) -> tuple[dict, dict]:
    """One random configuration: array shapes and conv2d's keyword arguments."""
    groups = int(rng.choice([1, 1, 2, 3, 4]))
    cg, kg = int(rng.integers(1, 5)), int(rng.integers(1, 4))
    kind = rng.choice(["any", "3x3", "1x1", "tall"])
    if kind == "3x3":
        kh = kw = 3
    elif kind == "1x1":
        kh = kw = 1
    elif kind == "tall":
        kh, kw = int(rng.integers(4, 9)), int(rng.integers(1, 4))
    else:
        kh, kw = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    stride = (int(rng.choice([1, 1, 2, 3, 5])), int(rng.choice([1, 1, 2, 3])))
    dilation = (int(rng.choice([1, 1, 2, 3])), int(rng.choice([1, 1, 2])))
    padding = [0, 1, 2, (int(rng.integers(0, 8)), int(rng.integers(0, 4))), "valid", "same"][rng.integers(0, 6)]
    if padding == "same" and stride != (1, 1):
        padding = 1
    mode = str(rng.choice(["zeros", "zeros", "reflect", "replicate", "circular"]))
    h, w = int(rng.integers(1, 20)), int(rng.integers(1, 30))
    n = int(rng.choice([1, 2, 3]))
    shapes = dict(x=(n, groups * cg, h, w), w=(groups * kg, cg, kh, kw), bias=bool(rng.integers(0, 2)),
                  dtype=str(rng.choice(["float32", "float64"])), threads=int(rng.choice([1, 2])),
                  limit=str(rng.choice(["none", "none", "least", "above"])))
    return shapes, dict(stride=stride, padding=padding, dilation=dilation, groups=groups, padding_mode=mode)


def run_one(rng: np.random.Generator, counts: collections.Counter, failures: list[str]) -> None:
    shapes, args = draw(rng)
    dtype = shapes["dtype"]
    x = rng.uniform(-1, 1, shapes["x"]).astype(dtype)
    w = rng.uniform(-1, 1, shapes["w"]).astype(dtype)
    b = rng.uniform(-1, 1, shapes["w"][0]).astype(dtype) if shapes["bias"] else None
    try:
        ref = torch_conv(x, w, b, **args)
    except (RuntimeError, ValueError):
        ref = None  # torch refuses: gemmconv must raise ValueError
    limit = None
    if shapes["limit"] != "none" and ref is not None:
        spec = validate(x, w, b, ConvArgs(**args, workspace_limit=1)).spec
        least = im2col.min_workspace(spec) if hasattr(im2col, "min_workspace") else 1  # (older commits: any limit)
        limit = least + (int(rng.integers(0, 5000)) if shapes["limit"] == "above" else 0)
    copies = [a.copy() for a in (x, w) + ((b,) if b is not None else ())]
    counts["configurations"] += 1
    for strategy in STRATEGIES:
        counts["calls"] += 1
        what = f"{strategy} x{shapes['x']} w{shapes['w']} bias={b is not None} {dtype} {args} limit={limit}"
        try:
            with threadpool_limits(shapes["threads"], user_api="blas"):
                y = gemmconv.conv2d(x, w, b, strategy=strategy, workspace_limit=limit, **args)
        except gemmconv.StrategyNotSupportedError:
            counts["refused by the predicate"] += 1
            continue
        except ValueError as e:
            if ref is None:
                counts["refused like torch"] += 1
                continue
            failures.append(f"{what}: ValueError torch does not raise: {e}")
            continue
        except Exception:  # noqa: BLE001 - anything else is a defect (IndexError under NUMBA_BOUNDSCHECK)
            failures.append(f"{what}: {traceback.format_exc(limit=-3)}")
            continue
        if ref is None:
            failures.append(f"{what}: ran where torch refuses")
            continue
        counts["compared"] += 1
        chosen = gemmconv.choose_strategy(x, w, b, workspace_limit=limit, **args) if strategy == "auto" else strategy
        err = scaled_error(y, x, w, b, **args)
        if not err <= tolerance(strategy, chosen, dtype):
            failures.append(f"{what}: error {err:.3e}")
    if any(not np.array_equal(a, c) for a, c in zip((x, w) + ((b,) if b is not None else ()), copies, strict=False)):
        failures.append(f"inputs modified: {shapes} {args}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--seed", type=int, default=0)
    opts = parser.parse_args()
    rng = np.random.default_rng(opts.seed)
    counts: collections.Counter = collections.Counter()
    failures: list[str] = []
    end = time.monotonic() + opts.seconds
    while time.monotonic() < end:
        run_one(rng, counts, failures)
    checks = os.environ.get("NUMBA_BOUNDSCHECK", "0") not in ("", "0")
    print(f"NUMBA_BOUNDSCHECK={int(checks)} seed={opts.seed} seconds={opts.seconds:.0f}: "
          + ", ".join(f"{v} {k}" for k, v in counts.items()) + f", {len(failures)} failures")
    for f in failures[:20]:
        print("FAIL", f)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
