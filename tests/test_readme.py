"""The README stays true: its commands, its tables, and every code block, each run on its own."""

from __future__ import annotations

import doctest
import importlib.util
import pathlib
import re
import subprocess
import sys

import pytest

import gemmconv

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
BLOCKS = re.findall(r"```python\n(.*?)```", README, flags=re.S)
# a block's first library import it cannot run without (beyond gemmconv's own dependencies)
NEEDS = {"cupy": "cupy", "dask": "dask", "distributed": "distributed", "sigpy": "sigpy"}


def _commands() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)


def _title(block: str) -> str:
    return block.strip().splitlines()[0][:60]


def _skip_unless_importable(block: str) -> None:
    for module, package in NEEDS.items():
        if re.search(rf"^\s*(import|from) {module}\b", block, flags=re.M) and importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {package}")
    if "import cupy" in block:
        pytest.skip("needs a CUDA GPU: the GPU tests (tests/test_gpu.py) run these paths")


def test_every_block_is_counted():
    assert len(BLOCKS) >= 8 and any(">>>" in b for b in BLOCKS) and any("__main__" in b for b in BLOCKS)


@pytest.mark.parametrize("block", BLOCKS, ids=_title)
def test_readme_block_runs_on_its_own(block, tmp_path):
    """Each block in a fresh namespace: a doctest (``>>>``) has its outputs checked, a script (a ``__main__`` guard)
    runs as a process of its own, any other block runs as it is."""
    _skip_unless_importable(block)
    if ">>>" in block:
        test = doctest.DocTestParser().get_doctest(block, {}, "README block", "README.md", 0)
        runner = doctest.DocTestRunner(verbose=False, optionflags=doctest.NORMALIZE_WHITESPACE)
        runner.run(test, out=pytest.fail)
        assert runner.summarize(verbose=False).failed == 0
    elif "__main__" in block:
        script = tmp_path / "example.py"
        script.write_text(block)
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=tmp_path,
                              timeout=300)
        assert done.returncode == 0, done.stderr
    else:
        exec(compile(block, "README block", "exec"), {"__name__": "readme_block"})


def test_ci_runs_the_readme_test_command():
    test_command = _commands()[1]
    assert "[tests]" in test_command
    assert "pytest" in test_command and "torch==2.13.0" in test_command
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert test_command in ci


def test_first_command_runs_the_compare_tool():
    assert _commands()[0].endswith("gemmconv compare")


def test_strategy_table_matches_the_registry():
    table = README[README.index("| name | what | runs |"):].split("\n\n")[0]
    rows = dict(re.findall(r"^\| `([^`]+)` \| (.+?) \|", table, flags=re.M))
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
