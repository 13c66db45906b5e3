"""The one place where the core reaches Dask: a call given a Dask array is handed to :mod:`gemmconv.dask`, which is
imported then (and Dask with it, already loaded by whoever made the array).

Nothing else below :mod:`gemmconv.dask` imports it (``tests/test_layering.py`` checks this); it calls back the
public functions for each block, as a user would.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any

__all__ = ["any_dask", "dask_functions"]


def any_dask(*arrays: Any) -> bool:
    """Whether any of ``arrays`` is a ``dask.array.Array`` (never imports Dask: one that is not loaded has no
    arrays)."""
    da = sys.modules.get("dask.array")
    return da is not None and any(isinstance(a, da.Array) for a in arrays)


def dask_functions() -> ModuleType:
    """:mod:`gemmconv.dask`: ``conv_nd``, ``grad_input_nd``, ``grad_weight_nd`` and ``transpose_nd`` of Dask arrays (the
    arguments of the public functions, the keywords as one ``ConvArgs``, and ``ndim``)."""
    return importlib.import_module("gemmconv.dask")
