"""gemmconv and torch on a busy machine: each case idle, then beside one and two CPU-bound processes.

    python benchmarks/under_load.py [--loads 0 1 2] [--rounds 3] [--reps 5] [--strategies auto] [--out FILE]

For each load (0: idle; k: k processes spinning ``while True: pass`` started beside this one), every case of
``benchmarks/vs_torch.py`` (ResNet-18's layers and a depthwise 3x3, N=1 and N=8, float32) is timed with torch's
``F.conv2d`` and gemmconv's strategies interleaved in this process (median of ``--reps`` calls after a pause and
one untimed call, the median over ``--rounds`` rounds), and ``examples/train_digits.py`` is run once as a
process of its own (its wall time). The slowdown of a case is its time under load over its idle time, for each
library. The targets: under load no case slows down more than 3x or more than torch does on it, whichever is
larger; the geometric mean of the slowdowns at most torch's, or 2x.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _timing import geo_mean, median_time, runnable  # benchmarks/ is on sys.path when this script runs

import gemmconv
from gemmconv.tools.layers import LAYERS

ROOT = Path(__file__).resolve().parents[1]
RESNET18 = ["stem7x7s2", "conv3x3_56", "conv3x3_28", "conv3x3_14", "conv3x3_7", "conv3x3s2_56", "conv1x1s2_56",
            "dw3x3_56"]


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _spinners(count: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def _train_seconds() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "examples" / "train_digits.py")], check=True, capture_output=True)
    return time.perf_counter() - t0



def measure(loads: list[int], rounds: int, reps: int, strategies: list[str]) -> dict:
    cases = []
    for n in (1, 8):
        for name in RESNET18:
            layer = LAYERS[name]
            x, w, b = layer.arrays(n)
            tx, tw, tb = (torch.from_numpy(a) for a in (x, w, b))
            ok = runnable(strategies, x, w, b, layer.conv_args)
            cases.append((f"{name} N={n}", layer, x, w, b, tx, tw, tb, ok))
    results: dict = {"loads": {}}
    for load in loads:
        procs = _spinners(load)
        try:
            time.sleep(1.0)  # the spinners running, and one interval of them seen by gemmconv's monitor
            times: dict[str, dict[str, list[float]]] = {}
            for _ in range(rounds):
                for label, layer, x, w, b, tx, tw, tb, ok in cases:
                    row = times.setdefault(label, {})
                    row.setdefault("torch", []).append(
                        median_time(lambda: F.conv2d(tx, tw, tb, **layer.conv_args), reps, settle=0.15))
                    for s in ok:
                        row.setdefault(s, []).append(median_time(
                            lambda: gemmconv.conv2d(x, w, b, strategy=s, **layer.conv_args), reps, settle=0.15))
            train = _train_seconds()
        finally:
            for p in procs:
                p.kill()
                p.wait()
        results["loads"][load] = {"cases": {label: {k: statistics.median(v) for k, v in row.items()}
                                            for label, row in times.items()}, "train_digits_s": train}
        print(f"load {load}: done (train_digits {train:.2f} s)", flush=True)
    return results


def report(results: dict, strategies: list[str]) -> str:
    loads = sorted(results["loads"], key=int)
    idle = results["loads"][loads[0]]
    lines = [f"# gemmconv {gemmconv.__version__} and torch {torch.__version__} ({torch.get_num_threads()} threads) "
             f"under load, float32; {results['cpu']}; {results['date']}; commit {results['commit']}",
             "# ms: median over rounds of the median of reps; (x): slowdown against idle", ""]
    for s in strategies:
        header = f"{'case':20s}" + "".join(f" | load {k}: torch ms (x), {s} ms (x)" for k in loads)
        lines += [f"## {s}", header]
        slow: dict[int, dict[str, list[float]]] = {k: {"torch": [], s: []} for k in loads}
        worst_ok = True
        for label, base in idle["cases"].items():
            if s not in base:
                continue
            cells = []
            for k in loads:
                row = results["loads"][k]["cases"][label]
                rt, rg = row["torch"] / base["torch"], row[s] / base[s]
                slow[k]["torch"].append(rt)
                slow[k][s].append(rg)
                if k != loads[0] and rg > max(3.0, rt):
                    worst_ok = False
                cells.append(f"{row['torch'] * 1e3:8.2f} ({rt:5.2f}x), {row[s] * 1e3:8.2f} ({rg:5.2f}x)")
            lines.append(f"{label:20s} | " + " | ".join(cells))
        for k in loads[1:]:
            gt, gg = geo_mean(slow[k]["torch"]), geo_mean(slow[k][s])
            worst = max(zip(slow[k][s], slow[k]["torch"], strict=True), key=lambda p: p[0] / max(3.0, p[1]))
            lines.append(f"load {k}: geometric mean slowdown torch {gt:.2f}x, {s} {gg:.2f}x "
                         f"(target <= {max(gt, 2.0):.2f}x: {'met' if gg <= max(gt, 2.0) else 'NOT met'}); "
                         f"worst {s} case {worst[0]:.2f}x against torch's {worst[1]:.2f}x there")
        lines.append(f"every case within max(3x, torch's slowdown): {'met' if worst_ok else 'NOT met'}")
        lines.append("")
    lines.append("examples/train_digits.py, wall time of the process: " + ", ".join(
        f"load {k}: {results['loads'][k]['train_digits_s']:.2f} s" for k in loads))
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--loads", type=int, nargs="+", default=[0, 1, 2], help="competing processes (0 first)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--strategies", nargs="+", default=["auto"])
    p.add_argument("--out", help="also write the report (and a .json of the times) here")
    args = p.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=Path(gemmconv.__file__).parent).stdout.strip() or "unknown"
    results = measure(args.loads, args.rounds, args.reps, args.strategies)
    results.update(cpu=_cpu_model(), date=time.strftime("%Y-%m-%d"), commit=commit)
    text = report(results, args.strategies)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
