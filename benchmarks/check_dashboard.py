"""Check the built asv dashboard: enough history, and a series for every strategy.

    python benchmarks/check_dashboard.py [.asv/html] [--min-commits 5] [--machine NAME]

Reads the ``index.json`` that ``asv publish`` writes and the graph files of
``conv.TimeConv2d.time_conv2d``; prints, per machine name, how many commits have CPU results, and exits 1
(with the reason) if a strategy has CPU results for fewer than ``--min-commits`` commits (on ``--machine``
alone, if given), or has no series, or if a machine's results are split into more than one series (asv draws
one per combination of the machine's fields, so a field that differs between recordings cuts the history).
"""

from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import sys

STRATEGIES = ["direct", "im2col", "winograd", "winograd_f2", "1x1", "auto"]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("html", nargs="?", default=".asv/html")
    p.add_argument("--min-commits", type=int, default=5)
    p.add_argument("--machine", help="count only this machine's results")
    args = p.parse_args()
    html = pathlib.Path(args.html)
    index = json.loads((html / "index.json").read_text())
    problems, summary = [], []
    benches = ("conv.TimeConv2d.time_conv2d", "conv.PeakMemConv2d.peakmem_conv2d", "conv.TrackError.track_rel_error")
    for bench in benches:
        if bench not in index["benchmarks"]:
            problems.append(f"{bench} is missing")
    bench = "conv.TimeConv2d.time_conv2d"
    if not problems:
        info = index["benchmarks"][bench]
        combos = list(itertools.product(*info["params"]))  # the order of the values in each point
        col = {name: i for i, name in enumerate(info["param_names"])}
        files = [f for f in html.glob(f"graphs/**/{bench}.json") if "branch-main" in f.parts]
        per_machine: dict[str, set[str]] = {}
        series: dict[str, list[pathlib.Path]] = {}
        for f in files:  # asv puts each machine's graphs under .../machine-NAME/...
            machine = next((part[len("machine-"):] for part in f.parts if part.startswith("machine-")), "?")
            revisions = {r for r, v in json.loads(f.read_text()) if v is not None and v != [None] * len(v or [])}
            per_machine.setdefault(machine, set()).update(revisions)
            series.setdefault(machine, []).append(f.relative_to(html / "graphs"))
        for machine, paths in sorted(series.items()):
            if len(paths) > 1:
                differ = sorted({part for path in paths for part in path.parts
                                 if not all(part in other.parts for other in paths)})
                problems.append(f"{machine}'s results are split into {len(paths)} series by its fields: "
                                + ", ".join(differ))
        summary.append("; ".join(f"{m}: {len(r)} commits" for m, r in sorted(per_machine.items())))
        if args.machine is not None:
            files = [f for f in files if f"machine-{args.machine}" in f.parts]
        if not files:
            problems.append(f"no graph of {bench} on branch main" + (f" for {args.machine}" if args.machine else ""))
        for strategy in STRATEGIES:
            wanted = [i for i, c in enumerate(combos)
                      if c[col["strategy"]] == repr(strategy) and c[col["backend"]] == "'numpy'"]
            commits = set()
            for f in files:
                for revision, stored in json.loads(f.read_text()):
                    values = stored if isinstance(stored, list) else [stored]
                    if any(values[i] is not None for i in wanted if i < len(values)):
                        commits.add(revision)
            summary.append(f"{strategy}: {len(commits)} commits")
            if len(commits) < args.min_commits:
                problems.append(f"{strategy} has CPU results for {len(commits)} commits (< {args.min_commits})")
    print("dashboard: " + ", ".join(summary))
    for msg in problems:
        print("dashboard: " + msg)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
