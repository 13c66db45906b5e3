"""Fail (exit 1) when the newest commit that changes gemmconv/ has no stored asv results under any machine name.

Run by ``.ci/run``; the fix it names is ``benchmarks/record.sh`` (then commit the results it writes).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def newest_code_commit(repo: pathlib.Path = ROOT) -> str:
    """Hash of the newest commit of HEAD's history that changes gemmconv/."""
    out = subprocess.run(["git", "log", "-1", "--format=%H", "--", "gemmconv"], cwd=repo, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def machines_with_results(commit: str, results: pathlib.Path) -> list[str]:
    """Names of the machines under ``results`` that hold results for ``commit`` (asv names them by its first
    8 hex digits)."""
    return sorted(p.parent.name for p in results.glob(f"*/{commit[:8]}-*.json"))


def main() -> None:
    commit = newest_code_commit()
    machines = machines_with_results(commit, ROOT / "benchmarks" / "asv_results")
    if not machines:
        print(f"no asv results for {commit[:8]}, the newest commit that changes gemmconv/: run "
              "benchmarks/record.sh and commit the results it writes (README, 'Benchmarks across commits')",
              file=sys.stderr)
        sys.exit(1)
    print(f"asv results for {commit[:8]} (the newest commit that changes gemmconv/): {', '.join(machines)}")


if __name__ == "__main__":
    main()
