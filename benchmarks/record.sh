#!/usr/bin/env bash
# Record asv results for this machine: the commits of main that changed gemmconv/ or the suites and have no
# results yet under this machine's name (benchmarks/machine_name.py), newest first, then commit them.
#
#   benchmarks/record.sh            # every such commit (the habit: after a change to gemmconv/, before submitting)
#   benchmarks/record.sh 3          # at most the 3 newest of them
#   benchmarks/record.sh HASH...    # these commits (e.g. a backfill), whether or not they have results
#
# Needs asv and virtualenv (pip install asv virtualenv); builds each commit in its own environment under .asv/.
set -euo pipefail
cd "$(dirname "$0")/.."

name=$(python benchmarks/machine_name.py)
# register the host under its name, with its CPU, cores, OS and memory written down
eval "$(python benchmarks/machine_name.py --describe | python -c '
import json, shlex, sys
d = json.load(sys.stdin)
print(" ".join(f"{k}={shlex.quote(v)}" for k, v in d.items() if k != "machine"))')"
asv machine --machine "$name" --cpu "$cpu" --arch "$arch" --num_cpu "$num_cpu" --os "$os" --ram "$ram" --yes \
    > /dev/null

list=$(mktemp)
trap 'rm -f "$list"' EXIT
if [[ $# -gt 0 && ! "$1" =~ ^[0-9]+$ ]]; then
    for c in "$@"; do git rev-parse "$c^{commit}"; done > "$list"
else
    most=${1:-1000000}
    for c in $(git rev-list main -- gemmconv benchmarks/suites); do
        compgen -G "benchmarks/asv_results/$name/${c:0:8}-*.json" > /dev/null || echo "$c"
    done | head -n "$most" > "$list"
fi
if [[ ! -s "$list" ]]; then
    echo "record.sh: every commit of main that changed gemmconv/ or the suites has results for $name"
    exit 0
fi
echo "record.sh: benchmarking $(wc -l < "$list") commit(s) as $name"
asv run --machine "$name" --show-stderr "HASHFILE:$list"
git add "benchmarks/asv_results/$name" benchmarks/asv_results/benchmarks.json
git commit -q -m "asv: results on $name for $(wc -l < "$list") commit(s) ($(head -c 8 "$list")...)" \
    -- "benchmarks/asv_results/$name" benchmarks/asv_results/benchmarks.json
echo "record.sh: committed the results under benchmarks/asv_results/$name"
