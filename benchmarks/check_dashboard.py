"""Check the built asv dashboard: enough history, and a series for every strategy.

    python benchmarks/check_dashboard.py [.asv/html] [--min-commits 5]

Reads the ``index.json`` that ``asv publish`` writes and the graph files of
``conv.TimeConv2d.time_conv2d``; exits 1 (with the reason) if the CPU machine has
fewer than ``--min-commits`` commits with results, or a strategy has no series.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

STRATEGIES = ["direct", "im2col", "winograd", "winograd_f2", "1x1", "auto"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("html", nargs="?", default=".asv/html")
    p.add_argument("--min-commits", type=int, default=5)
    args = p.parse_args()
    html = pathlib.Path(args.html)
    index = json.loads((html / "index.json").read_text())
    bench = "conv.TimeConv2d.time_conv2d"
    if bench not in index["benchmarks"]:
        print(f"dashboard: {bench} missing; benchmarks: {sorted(index['benchmarks'])}")
        return 1
    problems, summary = [], []
    for strategy in STRATEGIES:
        files = sorted(html.glob(f"graphs/**/{bench}.json"))
        files = [f for f in files if f"strategy-{strategy}" in str(f) and "backend-numpy" in str(f)]
        # a series: a list of [revision, value or list of values per parameter]
        commits = set()
        for f in files:
            for revision, value in json.loads(f.read_text()):
                values = value if isinstance(value, list) else [value]
                if any(v is not None for v in values):
                    commits.add(revision)
        summary.append(f"{strategy}: {len(commits)} commits")
        if len(commits) < args.min_commits:
            problems.append(f"{strategy} has results for {len(commits)} commits (< {args.min_commits})")
    print("dashboard: " + ", ".join(summary))
    for msg in problems:
        print("dashboard: " + msg)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
