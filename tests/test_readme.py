"""The README stays true: its commands, its strategy table."""

from __future__ import annotations

import pathlib
import re

import gemmconv

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _commands() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)


def test_ci_runs_the_readme_test_command():
    test_command = _commands()[1]
    assert "[tests]" in test_command
    assert "pytest" in test_command and "torch==2.13.0" in test_command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_first_command_runs_the_compare_tool():
    assert _commands()[0].endswith("gemmconv compare")


def test_strategy_table_matches_the_registry():
    rows = dict(re.findall(r"^\| `([^`]+)` \| (.+?) \|", README, flags=re.M))
    for name in gemmconv.list_strategies():
        assert rows.get(name) == gemmconv.get_strategy(name).description, name


def test_pass_table_matches_the_registry():
    """The table of backward passes has a row per strategy, with '-' exactly where it has no such pass."""
    table = README[README.index("| pass of |"):].split("\n\n")[0]
    rows = {m[0]: m[1:] for m in re.findall(r"^\| `([^`]+)` \| (.+?) \| (.+?) \|$", table, flags=re.M)}
    for name in gemmconv.list_strategies():
        s = gemmconv.get_strategy(name)
        has = [p in s.backward or s.select is not None for p in ("grad_input", "grad_weight")]
        assert [cell != "-" for cell in rows[name]] == has, name
