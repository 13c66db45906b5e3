"""Installing, using, uninstalling and reinstalling gemmconv leaves no trace in site-packages.

numba used to cache the compiled kernels next to their source, inside the installed package, in files pip does
not own: after an uninstall a ``gemmconv/`` folder stayed in site-packages and Python imported it as an empty
namespace package in place of the editable install that followed. Here a wheel is installed (not editable) into
a fresh virtual environment, a convolution is run (so kernels are compiled and cached), the package is
uninstalled, nothing of it may remain, and an editable install must then import and run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

import gemmconv
from gemmconv.backends._kernel_cache import kernel_cache_dir

REPO = Path(__file__).resolve().parents[1]
# the packages gemmconv imports, made visible to the fresh environment without installing them again
DEPENDENCIES = ("numpy", "numba", "llvmlite", "threadpoolctl", "platformdirs")
RUN = """
import sys, numpy as np, gemmconv
x = np.ones((1, 2, 6, 6), np.float32); w = np.ones((3, 2, 3, 3), np.float32)
y = gemmconv.conv2d(x, w, padding=1, strategy="direct")
assert float(y[0, 0, 2, 2]) == 18.0, y
print(gemmconv.__file__)
"""


def _run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    # run outside the checkout: ``python -c`` puts the working folder first on sys.path
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=Path(sys.executable).parent)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _dependency_folder(tmp: Path) -> Path:
    """A folder of links to the installed dependencies (and their shared libraries), but not to gemmconv."""
    site = Path(sysconfig.get_paths()["purelib"])
    links = tmp / "deps"
    links.mkdir()
    for entry in site.iterdir():
        top = entry.name.split(".")[0].split("-")[0]
        if top in DEPENDENCIES and entry.suffix != ".pth":
            (links / entry.name).symlink_to(entry)
    return links


def _source_copy(tmp: Path) -> Path:
    """The package's sources, copied so that builds write nothing into the checkout."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "gemmconv", src / "gemmconv", ignore=shutil.ignore_patterns("__pycache__", "*.nb[ic]"))
    return src


@pytest.mark.skipif(os.environ.get("NUMBA_BOUNDSCHECK", "0") not in ("", "0"),
                    reason="installs are tested in the first pass of .ci/run; this pass is about the kernels' bounds")
def test_install_use_uninstall_leaves_nothing_and_editable_install_works(tmp_path):
    src = _source_copy(tmp_path)
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(src)])
    env_dir = tmp_path / "env"
    _run([sys.executable, "-m", "venv", str(env_dir)])
    python = str(env_dir / "bin" / "python")
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).strip())
    (wheel,) = wheels.glob("gemmconv-*.whl")
    _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)])

    cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "PYTHONPATH")}
    env.update(PYTHONPATH=str(_dependency_folder(tmp_path)), GEMMCONV_CACHE_DIR=str(cache))
    where = _run([python, "-c", RUN], env).strip()
    assert Path(where).is_relative_to(site), where  # the installed copy ran, not the checkout
    cached = list(cache.rglob("*.nbi"))
    assert cached, "no compiled kernel was cached in GEMMCONV_CACHE_DIR"
    assert not list((site / "gemmconv").rglob("*.nb[ic]")), "kernels were cached inside the installed package"

    _run([python, "-m", "pip", "uninstall", "-q", "-y", "gemmconv"])
    left = sorted(str(p.relative_to(site)) for p in site.glob("gemmconv*"))
    assert left == [], f"the uninstall left {left} in site-packages"

    _run([python, "-m", "pip", "install", "-q", "--no-deps", "-e", str(src)])
    where = _run([python, "-c", RUN], env).strip()
    assert Path(where) == src / "gemmconv" / "__init__.py", where
    assert len(list(cache.rglob("*.nbi"))) > len(cached)  # the editable copy caches beside, under its own folder


def test_kernel_cache_folder_follows_the_environment(tmp_path):
    """GEMMCONV_CACHE_DIR, then NUMBA_CACHE_DIR, decide the folder, read in a fresh process."""
    code = "from gemmconv.backends._kernel_cache import kernel_cache_dir; print(kernel_cache_dir())"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    ours = _run([sys.executable, "-c", code], {**env, "GEMMCONV_CACHE_DIR": str(tmp_path / "g")}).strip()
    assert ours == str(tmp_path / "g" / "numba")
    numba_dir = _run([sys.executable, "-c", code],
                     {**env, "GEMMCONV_CACHE_DIR": str(tmp_path / "g"), "NUMBA_CACHE_DIR": str(tmp_path / "n")})
    assert numba_dir.strip() == str(tmp_path / "n")
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the folder should be: nothing can be cached there
    none = _run([sys.executable, "-c", code], {**env, "GEMMCONV_CACHE_DIR": str(blocked)}).strip()
    assert none == "None"


def test_kernels_are_not_cached_inside_the_package():
    x, w = np.ones((1, 1, 5, 5)), np.ones((1, 1, 3, 3))
    gemmconv.conv2d(x, w, strategy="direct")
    package = Path(gemmconv.__file__).parent
    assert not list(package.rglob("*.nb[ic]")), "numba wrote its cache inside the package"
    folder = kernel_cache_dir()
    assert folder is None or not folder.is_relative_to(package)
