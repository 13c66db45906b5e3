"""A bounded, thread-safe cache of transformed filters (Winograd's ``G g G^T``).

Entries are found by the weight buffer's address, shape, strides and dtype, and
a tag holding everything else the transform depends on (for Winograd: the tile
size and the groups, which set its layout), then checked against a stored copy
of the weights, element by element, so an array modified in place (or a new
array at a recycled address) is never served a stale transform. The check reads the weights and the copy (at 512
channels, 2 x 9.4 MB); :meth:`FilterCache.lookup` leaves it to the
caller, who can split it over worker threads (:meth:`Lookup.matches` on slices
of the output channels) before settling the lookup.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

from ..backends.base import Backend
from ..core._lru import LRU

__all__ = ["FilterCache", "Lookup"]


class Lookup:
    """The transform of ``w`` found by address, not yet checked against ``w``'s contents."""

    def __init__(self, cache: FilterCache, backend: Backend, w: Any, key: Hashable, entry: tuple[Any, Any] | None,
                 compute: Callable[[Any], Any]) -> None:
        self._cache, self._xp, self._w = cache, backend.xp, w
        self._key, self._entry, self._compute = key, entry, compute

    def matches(self, k0: int, k1: int) -> bool:
        """Whether output channels ``k0:k1`` of the weights equal the cached copy's (False on a miss)."""
        return self._entry is not None and bool(self._xp.array_equal(self._entry[0][k0:k1], self._w[k0:k1]))

    def settle(self, matched: bool) -> Any:
        """The transform: the cached one if every channel ``matched``, else computed afresh and stored."""
        cache = self._cache
        if matched and self._entry is not None:
            cache.hits += 1
            cache.entries.get(self._key)  # now the most recently used
            return self._entry[1]
        value = self._compute(self._w)
        cache.misses += 1
        cache.entries.put(self._key, (self._w.copy(), value))
        return value


def _nbytes(entry: tuple[Any, Any]) -> int:
    return int(entry[0].nbytes) + int(entry[1].nbytes)


class FilterCache:
    """LRU cache ``key -> (copy of w, transform)`` with content verification, bounded in entries and in
    bytes (the copies and transforms together: 47 MB for a 512-channel 3x3 layer's F(4x4) transform)."""

    def __init__(self, max_entries: int = 64, max_bytes: int = 256 << 20) -> None:
        #: ``key -> (copy of w, transform)``
        self.entries: LRU[tuple[Any, Any]] = LRU(max_entries, max_bytes, size=_nbytes)
        self.hits = 0  # (counted without a lock: statistics)
        self.misses = 0

    @property
    def max_entries(self) -> int:
        return self.entries.max_entries

    @max_entries.setter
    def max_entries(self, value: int) -> None:
        self.entries.max_entries = value

    @property
    def max_bytes(self) -> int:
        return int(self.entries.max_bytes or 0)

    @max_bytes.setter
    def max_bytes(self, value: int) -> None:
        self.entries.max_bytes = value

    @property
    def nbytes(self) -> int:
        return self.entries.nbytes

    def lookup(self, backend: Backend, w: Any, tag: Hashable, compute: Callable[[Any], Any]) -> Lookup:
        """The entry for ``w`` under ``tag``, its contents still to be checked; ``compute(w)`` makes a
        missing or stale one."""
        key = (backend.name, backend.device_key(w), backend.data_ptr(w), w.shape, w.strides, w.dtype.str, tag)
        return Lookup(self, backend, w, key, self.entries.peek(key), compute)

    def clear(self) -> None:
        """Drop every entry."""
        self.entries.clear()

    def __len__(self) -> int:
        return len(self.entries)
