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



offline_dashboard = _load("offline_dashboard")

PAGE = """<head>
<script src="https://code.jquery.com/jquery-3.3.1.min.js" integrity="sha256-x" crossorigin="anonymous" onerror="f()"></script>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/bootstrap@3.1.1/dist/css/bootstrap.min.css" integrity="sha256-y" crossorigin="anonymous">
<script src="asv.js"></script>
</head><a href="https://github.com/airspeed-velocity/asv/">asv</a>"""


def test_the_dashboard_pages_point_at_the_vendored_copies():
    page = offline_dashboard.rewrite(PAGE)
    assert '<script src="vendor/jquery.min.js" onerror="f()"></script>' in page
    assert '<link rel="stylesheet" href="vendor/css/bootstrap.min.css">' in page
    assert '<script src="asv.js">' in page and 'href="https://github.com/airspeed-velocity/asv/"' in page  # a link
    with pytest.raises(ValueError, match="does not hold"):
        offline_dashboard.rewrite('<script src="https://cdn.example.org/d3.js"></script>')


def test_every_vendored_file_matches_its_checksum_and_has_a_license(tmp_path):
    sums = offline_dashboard.checksums()
    assert set(offline_dashboard.LOCAL.values()) <= set(sums)
    (tmp_path / "index.html").write_text(PAGE)
    offline_dashboard.install(tmp_path)  # raises if a file differs from its SHA-256
    assert (tmp_path / "vendor" / "fonts" / "glyphicons-halflings-regular.woff").exists()
    assert len(list((tmp_path / "vendor" / "licenses").iterdir())) == 6
    assert "https://" not in (tmp_path / "index.html").read_text().split("<a ")[0]


def test_register_stores_every_field_on_a_fresh_host(tmp_path):
    """The machine is recorded with its CPU, arch, cores and OS even where they equal what asv detects (asv's
    own ``asv machine --yes --cpu ...`` drops those on a host without ~/.asv-machine.json)."""
    pytest.importorskip("asv")  # installed by the asv steps of .ci/run, which run this file again
    import json

    path = tmp_path / "asv-machine.json"
    fields = machine_name.describe(machine_name.cpuinfo(ZEN3))
    machine_name.register(fields, str(path))
    machine_name.register({**fields, "machine": "other"}, str(path))
    stored = json.loads(path.read_text())
    assert stored[fields["machine"]] == fields
    assert set(fields) == {"machine", "cpu", "arch", "num_cpu", "os", "ram"} and fields["cpu"] == "AMD EPYC 7B13"
    assert stored["other"]["machine"] == "other" and stored["version"] == 1


@pytest.mark.parametrize("system, release, want", [
    ("Linux", "6.18.44-fc-v657", "Linux 6.18"),
    ("Linux", "6.18.44-fc-v1098", "Linux 6.18"),
    ("Linux", "5.15.0-1057-azure", "Linux 5.15"),
    ("Darwin", "23.4.0", "Darwin 23.4"),
])
def test_the_recorded_os_is_the_same_across_rebuilds_of_a_host(system, release, want):
    assert machine_name.stable_os(system, release) == want
