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
