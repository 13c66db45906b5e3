"""Several runs of ``vs_torch.py`` / ``vs_torch_backward.py`` (each with ``--json``) side by side.

    python benchmarks/run_spread.py RUN1.json RUN2.json RUN3.json [--who auto]

For each run: the geometric mean and the worst of the ratios to torch (median over rounds), per pass; for each
case: the ratio in every run and the spread of gemmconv's own time between runs (the largest median time over
the smallest), the figure that shows whether a case depends on luck.
"""

from __future__ import annotations

import argparse
import json
import statistics

from _timing import geo_mean  # benchmarks/ is on sys.path when this script runs


def _group(case: tuple) -> str:
    """The pass of a case: backward keys are (pass, N, layer), forward keys (N, layer)."""
    return case[0] if len(case) == 3 else "forward"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", nargs="+")
    p.add_argument("--who", default="auto", help="the strategy to compare with torch (default: auto)")
    opts = p.parse_args()
    runs = []
    for path in opts.runs:
        with open(path) as f:
            runs.append(json.load(f))
    print(f"CPU: {runs[0]['cpu']}; {len(runs)} runs; {opts.who} / torch, median over rounds")
    # per run: case -> (ratio, own median seconds)
    per_run: list[dict[tuple, tuple[float, float]]] = []
    for run in runs:
        by = {(tuple(r["case"]), r["who"]): r["seconds"] for r in run["times"]}
        found = {}
        for (case, who), ts in by.items():
            if who == opts.who and (case, "torch") in by:
                ratios = [t / r for t, r in zip(ts, by[case, "torch"], strict=True)]
                found[case] = (statistics.median(ratios), statistics.median(ts))
        per_run.append(found)
    cases = [c for c in per_run[0] if all(c in r for r in per_run)]
    for g in sorted({_group(c) for c in cases}):
        mine = [c for c in cases if _group(c) == g]
        line = []
        for i, r in enumerate(per_run):
            vals = [r[c][0] for c in mine]
            worst = max(mine, key=lambda c: r[c][0])
            line.append(f"run {i + 1}: geomean {geo_mean(vals):.2f}x, worst {r[worst][0]:.2f}x ({' '.join(worst)})")
        print(f"{g} ({len(mine)} cases): " + "; ".join(line))
    print(f"{'case':40s} " + " ".join(f"{'run ' + str(i + 1):>8s}" for i in range(len(runs))) + "   spread of own time")
    spreads = []
    for c in cases:
        own = [r[c][1] for r in per_run]
        spreads.append(max(own) / min(own))
        print(f"{' '.join(c):40s} " + " ".join(f"{r[c][0]:7.2f}x" for r in per_run) + f"   {spreads[-1]:.2f}")
    if spreads:
        print(f"largest spread: {max(spreads):.2f}")


if __name__ == "__main__":
    main()
