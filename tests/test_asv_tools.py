"""The asv tooling: machine names from the CPU, and the check that the newest code commit has results."""

from __future__ import annotations

import importlib.util
import pathlib
import subprocess
import sys

import pytest

BENCH = pathlib.Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


machine_name = _load("machine_name")
check_results_fresh = _load("check_results_fresh")

ZEN3 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 1
model name\t: AMD EPYC 7B13
flags\t\t: fpu sse sse2 avx avx2 fma

processor\t: 1
vendor_id\t: SomethingElse
"""
XEON = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 207
model name\t: Intel(R) Xeon(R) Processor
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512bw
"""


@pytest.mark.parametrize("text, family, isa", [
    (ZEN3, "zen3", "avx2"),
    (XEON, "xeon", "avx512"),
    (ZEN3.replace("cpu family\t: 25", "cpu family\t: 25\nmodel\t\t: 97").replace("model\t\t: 1\n", ""), "zen4", "avx2"),
    (XEON.replace(" avx512f avx512bw", "").replace("Xeon(R)", "Core(TM)"), "core", "avx2"),
])
def test_machine_names_follow_the_cpu(text, family, isa):
    info = machine_name.cpuinfo(text)
    assert machine_name.family(info) == family and machine_name.isa(info) == isa
    assert machine_name.name(info) == f"{family}-{isa}-{machine_name.cores()}c"


def test_this_machine_has_a_name_and_a_description():
    out = subprocess.run([sys.executable, str(BENCH / "machine_name.py")], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("c") and out.stdout.count("-") == 2


def test_results_are_found_for_a_commit_under_any_machine(tmp_path):
    commit = "0123456789abcdef" * 2 + "01234567"
    assert check_results_fresh.machines_with_results(commit, tmp_path) == []
    (tmp_path / "zen3-avx2-2c").mkdir()
    (tmp_path / "zen3-avx2-2c" / f"{commit[:8]}-virtualenv-py3.11.json").write_text("{}")
    (tmp_path / "xeon-avx512-2c").mkdir()
    (tmp_path / "xeon-avx512-2c" / "fedcba98-virtualenv-py3.11.json").write_text("{}")
    assert check_results_fresh.machines_with_results(commit, tmp_path) == ["zen3-avx2-2c"]

