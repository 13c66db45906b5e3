"""Another checkout's ``gemmconv`` loaded beside this one, for in-process before/after comparisons.

The package imports its own modules relatively, so a copy loaded under another name (``gemmconv_base``) is a
complete second package: its own registry, caches, thread pool and compiled kernels. Only one of the two runs
at a time in the benchmarks that use this (``overhead.py --base``, ``vs_torch.py --base``, ``col2im_ab.py``).
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
from types import ModuleType


def load_package(root: str | pathlib.Path, name: str = "gemmconv_base") -> ModuleType:
    """The ``gemmconv`` package of the checkout at ``root`` (e.g. a ``git worktree`` of an older commit),
    imported as ``name``."""
    where = pathlib.Path(root).resolve() / "gemmconv"
    spec = importlib.util.spec_from_file_location(name, where / "__init__.py", submodule_search_locations=[str(where)])
    if spec is None or spec.loader is None:
        raise SystemExit(f"no gemmconv package at {root}")
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return package
