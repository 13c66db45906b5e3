#!/usr/bin/env bash
# Record asv results for this machine: the commits of main that changed gemmconv/ or the suites and have no
# results yet under this machine's name (benchmarks/machine_name.py), then commit them.
#
#   benchmarks/record.sh            # those newer than the newest with results here (the habit: after a change
#                                   # to gemmconv/, before submitting); on a machine with none yet, the newest
#   benchmarks/record.sh --newest 3 # the 3 newest commits without results here, anywhere in the history
#   benchmarks/record.sh --all      # every commit without results here (a new machine kind: hours)
#   benchmarks/record.sh HASH...    # these commits (e.g. a backfill), whether or not they have results
#
# A commit whose benchmarks partly fail (an old commit without a strategy the suite asks for) still has its
# other results stored and committed.
#
# Needs asv and virtualenv (pip install asv virtualenv); builds each commit in its own environment under .asv/.
set -euo pipefail
cd "$(dirname "$0")/.."

name=$(python benchmarks/machine_name.py)
# register the host under its name, with its CPU, cores, OS and memory written down
python benchmarks/machine_name.py --register

list=$(mktemp)
trap 'rm -f "$list"' EXIT
has_results() { compgen -G "benchmarks/asv_results/$name/${1:0:8}-*.json" > /dev/null; }
if [[ $# -gt 0 && "$1" != --newest && "$1" != --all ]]; then
    for c in "$@"; do git rev-parse "$c^{commit}"; done > "$list"
elif [[ $# -gt 0 ]]; then
    most=$([[ "$1" == --all ]] && echo 1000000 || echo "${2:?record.sh --newest N}")
    for c in $(git rev-list main -- gemmconv benchmarks/suites); do
        has_results "$c" || echo "$c"
    done | head -n "$most" > "$list"
else  # newest first, up to the newest commit that has results here
    for c in $(git rev-list main -- gemmconv benchmarks/suites); do
        has_results "$c" && break
        echo "$c"
    done > "$list"
    if [[ $(wc -l < "$list") -eq $(git rev-list --count main -- gemmconv benchmarks/suites) ]]; then
        head -n 1 "$list" > "$list.1" && mv "$list.1" "$list"
        echo "record.sh: $name has no results yet: the newest commit only (--newest N or --all to backfill)"
    fi
fi
if [[ ! -s "$list" ]]; then
    echo "record.sh: every commit of main that changed gemmconv/ or the suites has results for $name"
    exit 0
fi
echo "record.sh: benchmarking $(wc -l < "$list") commit(s) as $name"
status=0
asv run --machine "$name" --show-stderr "HASHFILE:$list" || status=$?
if [[ $status -ne 0 && $status -ne 2 ]]; then  # 2: some benchmarks failed, the rest are stored
    exit "$status"
fi
git add "benchmarks/asv_results/$name" benchmarks/asv_results/benchmarks.json
git commit -q -m "asv: results on $name for $(wc -l < "$list") commit(s) ($(head -c 8 "$list")...)" \
    -- "benchmarks/asv_results/$name" benchmarks/asv_results/benchmarks.json
echo "record.sh: committed the results under benchmarks/asv_results/$name"
