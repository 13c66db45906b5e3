"""The CuPy backend's kernel launches for one convolution, decided once and kept in one place.

A :class:`LaunchSet` belongs to one convolution (a :class:`~gemmconv.core.spec.ConvSpec`, a dtype and a
device). It holds, per kernel it runs, a :class:`Launch`: the compiled function, its grid and block
sizes, its dynamic shared memory and its size arguments (as the 32-bit ints the kernels take), and the
cuBLAS handle of the device. Everything a later CUDA-graph capture of the convolution needs besides
the arrays is there; a call adds the arrays and launches. Building it costs the Python work that
would otherwise be done on every call (kernel lookup, dtype names, int conversions, grid sizes).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core._lru import LRU

__all__ = ["Launch", "LaunchCache", "LaunchSet"]


def _i32(a: Any) -> Any:
    """Python ints as 32-bit C ints (the kernels' ``int`` parameters); arrays pass through."""
    return np.int32(a) if isinstance(a, int) else a


@dataclass(frozen=True)
class Launch:
    """One kernel launch with its sizes fixed: ``launch(*arrays)`` runs ``kernel(grid, block, (*arrays,
    *sizes))``."""

    kernel: Any
    grid: tuple[int, ...]
    block: tuple[int, ...]
    sizes: tuple[Any, ...]
    shared_mem: int = 0

    def __call__(self, *arrays: Any) -> None:
        self.kernel(self.grid, self.block, (*arrays, *self.sizes), shared_mem=self.shared_mem)


def launch(kernel: Any, grid: tuple[int, ...], block: tuple[int, ...], sizes: tuple[Any, ...],
           shared_mem: int = 0) -> Launch:
    """A :class:`Launch` with ``sizes`` converted once to the kernels' 32-bit ints."""
    return Launch(kernel, grid, block, tuple(_i32(s) for s in sizes), shared_mem)


@dataclass
class LaunchSet:
    """The launches of one convolution on one device (filled on first use of each kernel)."""

    device: int
    #: the device's cuBLAS handle (the GEMMs of the convolution run on it)
    gemm_handle: Any
    launches: dict[str, Launch] = field(default_factory=dict)

    def get(self, name: str, build: Callable[[], Launch]) -> Launch:
        """The launch called ``name``, built by ``build()`` the first time."""
        found = self.launches.get(name)
        if found is None:
            found = self.launches[name] = build()
        return found


class LaunchCache(LRU[LaunchSet]):
    """Launch sets by (spec, dtype, device), least recently used evicted past ``max_entries`` (each holds a
    few launches: sizes and handles, no arrays)."""

    def __init__(self, max_entries: int = 256) -> None:
        super().__init__(max_entries)
