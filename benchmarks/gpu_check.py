"""GPU check: run the GPU tests, then time every strategy against cuDNN on one GPU.

    python benchmarks/gpu_check.py [--batch 32] [--reps 30] [--skip-tests] [--out DIR]

For each layer of ``gemmconv.tools.layers.LAYERS`` at N=32 and each dtype (float32, float16):
every strategy's median time over ``--reps`` calls (CUDA events around each call, after
warm-up), TFLOP/s (direct-convolution flop count), error max|y - ref| / max|ref| against
cuDNN in float64, and ``torch.nn.functional.conv2d`` (cuDNN, ``cudnn.benchmark`` on, TF32
off) timed the same way before and after the strategies, with the ratio strategy / cuDNN.
Then a breakdown of im2col and Winograd F(4x4) into kernels and GEMM, and the targets.
Writes gpu_check.txt and gpu_check.json to --out (default $OUT or ./gpu_check_out).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import cupy
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.table import Table

import gemmconv
from gemmconv.core.args import ConvArgs
from gemmconv.planning.validate import validate
from gemmconv.strategies.winograd import _filter_transform
from gemmconv.tools.layers import LAYERS

torch.backends.cudnn.allow_tf32 = False
torch.backends.cuda.matmul.allow_tf32 = False
torch.backends.cudnn.benchmark = True


def _torch_event():
    return torch.cuda.Event(enable_timing=True)


def median_ms(fn, reps: int, events=cupy.cuda.Event, warmup: int = 3) -> float:
    """Median over ``reps`` calls of the GPU time between events recorded around each call."""
    for _ in range(warmup):
        fn()
    pairs = []
    for _ in range(reps):
        e0, e1 = events(), events()
        e0.record()
        fn()
        e1.record()
        pairs.append((e0, e1))
    pairs[-1][1].synchronize()
    if events is cupy.cuda.Event:
        times = [cupy.cuda.get_elapsed_time(a, b) for a, b in pairs]
    else:
        times = [a.elapsed_time(b) for a, b in pairs]
    return statistics.median(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--skip-tests", action="store_true")
    p.add_argument("--out", default=os.environ.get("OUT", "gpu_check_out"))
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    console = Console(width=220, record=True)
    dev = cupy.cuda.Device()
    props = cupy.cuda.runtime.getDeviceProperties(dev.id)
    tf32 = os.environ.get("CUPY_TF32", "0")
    console.print(f"device: {props['name'].decode()} | cupy {cupy.__version__} | torch {torch.__version__} | "
                  f"cuDNN {torch.backends.cudnn.version()} | gemmconv TF32: {'on' if tf32 == '1' else 'off'} "
                  f"(CUPY_TF32={tf32}) | cuDNN TF32 off | N={args.batch}")
    report: dict = {"device": props["name"].decode(), "batch": args.batch, "tf32": tf32 == "1", "rows": []}

    if not args.skip_tests:
        t0 = time.time()
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "tests/test_gpu.py", "-q", "-p", "no:cacheprovider", "-W", "default",
             "--hypothesis-show-statistics", "-rs"],
            capture_output=True, text=True,
        )
        with open(os.path.join(args.out, "gpu_tests.log"), "w") as f:
            f.write(proc.stdout + proc.stderr)
        tail = [ln for ln in proc.stdout.splitlines() if ln.strip()][-20:]
        console.print(f"GPU tests (exit {proc.returncode}, {time.time() - t0:.0f} s):")
        for ln in tail:
            console.print("  " + ln, markup=False)
        report["tests_exit"] = proc.returncode

    strategies = gemmconv.list_strategies()
    for dtype in ("float32", "float16"):
        table = Table(title=f"{dtype}, N={args.batch}: ms (ratio to cuDNN) TFLOP/s, error vs float64")
        table.add_column("layer")
        table.add_column("cuDNN ms", justify="right")
        for s in strategies:
            table.add_column(s, justify="right")
        for name, layer in LAYERS.items():
            xh, wh, bh = layer.arrays(args.batch, "float32")
            x, w, b = (cupy.asarray(a).astype(dtype) for a in (xh, wh, bh))
            tx, tw, tb = (torch.from_dlpack(a) for a in (x, w, b))
            ref = F.conv2d(tx.double(), tw.double(), tb.double(), **layer.conv_args)
            ref_cp = cupy.from_dlpack(ref)
            ref_max = float(cupy.abs(ref_cp).max())
            flops = layer.flops(args.batch)
            t_torch = [median_ms(lambda: F.conv2d(tx, tw, tb, **layer.conv_args), args.reps,  # noqa: F821 - called here
                                 _torch_event)]
            cells = {}
            for s in strategies:
                try:
                    y = gemmconv.conv2d(x, w, b, strategy=s, **layer.conv_args)
                except gemmconv.StrategyNotSupportedError:
                    continue
                except Exception as e:  # noqa: BLE001 - report and go on: one broken kernel must not hide the rest
                    console.print(f"{dtype} {name} {s}: {type(e).__name__}: {e}", markup=False)
                    continue
                err = float(cupy.abs(y.astype(cupy.float64) - ref_cp).max()) / ref_max
                ms = median_ms(lambda: gemmconv.conv2d(x, w, b, strategy=s, **layer.conv_args), args.reps)
                cells[s] = (ms, err)
            t_torch.append(median_ms(lambda: F.conv2d(tx, tw, tb, **layer.conv_args), args.reps,  # noqa: F821
                                     _torch_event))
            t_cudnn = statistics.median(t_torch)
            row = [name, f"{t_cudnn:.3f}"]
            for s in strategies:
                if s not in cells:
                    row.append("-")
                    continue
                ms, err = cells[s]
                row.append(f"{ms:.3f} ({ms / t_cudnn:.2f}x) {flops / ms / 1e9:.1f} {err:.1e}")
                report["rows"].append(dict(dtype=dtype, layer=name, strategy=s, ms=ms, cudnn_ms=t_cudnn,
                                           ratio=ms / t_cudnn, tflops=flops / ms / 1e9, rel_error=err))
            report["rows"].append(dict(dtype=dtype, layer=name, strategy="cudnn", ms=t_cudnn,
                                       tflops=flops / t_cudnn / 1e9, cudnn_runs=t_torch))
            table.add_row(*row)
            del x, w, b, tx, tw, tb, ref, ref_cp
            cupy.get_default_memory_pool().free_all_blocks()
        console.print(table)

    # Where the time goes: im2col = pack + GEMM, winograd = filter + input + GEMM + output
    for dtype in ("float32", "float16"):
        parts = Table(title=f"{dtype} breakdown, ms: im2col (pack | GEMM | same GEMM by cupy.matmul) and "
                            "winograd F(4x4) (filter | in | GEMM | out)")
        for col in ("layer", "im2col pack", "im2col GEMM", "cupy.matmul", "wino filter", "wino in", "wino GEMM",
                    "wino out"):
            parts.add_column(col, justify="right")
        for name, layer in LAYERS.items():
            xh, wh, bh = layer.arrays(args.batch, "float32")
            x, w, b = (cupy.asarray(a).astype(dtype) for a in (xh, wh, bh))
            be, x4, w4, b4, spec, *_ = validate(x, w, b, ConvArgs(**layer.conv_args))
            cols = be.im2col(x4, spec).reshape(spec.n, spec.groups, -1, spec.oh * spec.ow)
            wm = w4.reshape(spec.groups, spec.kg, -1)
            row = [name, f"{median_ms(lambda: be.im2col(x4, spec), args.reps):.3f}",
                   f"{median_ms(lambda: be.matmul(wm, cols), args.reps):.3f}",  # noqa: F821 - called here
                   f"{median_ms(lambda: cupy.matmul(wm, cols), args.reps):.3f}"]  # noqa: F821
            del cols
            if gemmconv.get_strategy("winograd").supports(spec) is None:
                m = 4
                th, tw = -(-spec.oh // m), -(-spec.ow // m)
                u = _filter_transform(be, w4, spec, m)
                v = be.winograd_input(x4, spec, m, th, tw)
                mt = be.winograd_multiply(u, v, spec, m, 0, spec.k)
                row += [f"{median_ms(lambda: _filter_transform(be, w4, spec, m), args.reps):.3f}",
                        f"{median_ms(lambda: be.winograd_input(x4, spec, m, th, tw), args.reps):.3f}",
                        f"{median_ms(lambda: be.winograd_multiply(u, v, spec, m, 0, spec.k), args.reps):.3f}",
                        f"{median_ms(lambda: be.winograd_output(mt, b4, spec, m, th, tw), args.reps):.3f}"]
                del u, v, mt
            else:
                row += ["-"] * 4
            parts.add_row(*row)
            cupy.get_default_memory_pool().free_all_blocks()
        console.print(parts)

    # Host time per call: when the GPU work is shorter than the Python launching it, the host is the limit
    import cProfile
    import pstats

    layer = LAYERS["conv3x3_28"]
    x, w, b = (cupy.asarray(a) for a in layer.arrays(args.batch, "float32"))
    for s in ("winograd", "im2col", "direct"):
        call = lambda: gemmconv.conv2d(x, w, b, strategy=s, **layer.conv_args)  # noqa: E731
        call()
        cupy.cuda.Device().synchronize()
        t0 = time.perf_counter()
        for _ in range(200):
            call()
        t_host = (time.perf_counter() - t0) / 200
        cupy.cuda.Device().synchronize()
        console.print(f"host time per conv2d call (conv3x3_28, {s}): {t_host * 1e6:.0f} us; "
                      f"GPU median {median_ms(call, args.reps) * 1e3:.0f} us")
        planned = gemmconv.plan(x, w, b, strategy=s, **layer.conv_args)
        planned(x, w, b)
        cupy.cuda.Device().synchronize()
        t0 = time.perf_counter()
        for _ in range(200):
            planned(x, w, b)
        t_plan = (time.perf_counter() - t0) / 200
        cupy.cuda.Device().synchronize()
        console.print(f"host time per planned call (conv3x3_28, {s}): {t_plan * 1e6:.0f} us")
        report.setdefault("host_us", {})[s] = {"conv2d": t_host * 1e6, "plan": t_plan * 1e6}
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(200):
        gemmconv.conv2d(x, w, b, strategy="winograd", **layer.conv_args)
    prof.disable()
    cupy.cuda.Device().synchronize()
    with open(os.path.join(args.out, "host_profile.txt"), "w") as f:
        pstats.Stats(prof, stream=f).sort_stats("tottime").print_stats(25)

    # Targets (GPU_NOTES.md, "Targets"): ratios to cuDNN fp32 in this run
    def ratios(dtype, strategy, layers):
        return {r["layer"]: r["ratio"] for r in report["rows"]
                if r["dtype"] == dtype and r["strategy"] == strategy and r["layer"] in layers}

    s1 = [n for n, lay in LAYERS.items() if lay.kh == 3 and lay.stride == 1 and lay.groups == 1]
    lines = [
        ("winograd F(4x4) <= 0.7x on 3x3 stride-1", ratios("float32", "winograd", s1), 0.7),
        ("im2col <= 1.5x", ratios("float32", "im2col", list(LAYERS)), 1.5),
        ("1x1 <= 1.1x", ratios("float32", "1x1", list(LAYERS)), 1.1),
        ("direct on depthwise <= 1.5x", ratios("float32", "direct", ["dw3x3_56"]), 1.5),
    ]
    best16 = {}
    for r in report["rows"]:
        if r["dtype"] == "float16" and r["strategy"] not in ("cudnn", "auto"):
            best16[r["layer"]] = min(best16.get(r["layer"], 1e9), r["ratio"])
    lines.append(("float16 (best strategy) within 1.5x of cuDNN float16", best16, 1.5))
    for label, rs, limit in lines:
        worst = max(rs.values()) if rs else float("nan")
        met = all(v <= limit for v in rs.values())
        console.print(f"target {label}: {'MET' if met else 'missed'}; "
                      + ", ".join(f"{k} {v:.2f}x" for k, v in rs.items()) + f" (worst {worst:.2f}x)")
    with open(os.path.join(args.out, "gpu_check.json"), "w") as f:
        json.dump(report, f, indent=1)
    console.save_text(os.path.join(args.out, "gpu_check.txt"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
