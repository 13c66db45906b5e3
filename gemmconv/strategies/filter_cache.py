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

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from .._forksafe import ForkSafeLock

__all__ = ["FilterCache", "Lookup"]


class Lookup:
    """The transform of ``w`` found by address, not yet checked against ``w``'s contents."""

    def __init__(self, cache: FilterCache, backend: Any, w: Any, key: Hashable, entry: tuple[Any, Any] | None,
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
            with cache._lock:
                cache.hits += 1
                if self._key in cache._entries:
                    cache._entries.move_to_end(self._key)
            return self._entry[1]
        value = self._compute(self._w)
        entry = (self._w.copy(), value)
        size = _nbytes(entry)
        with cache._lock:
            cache.misses += 1
            old = cache._entries.pop(self._key, None)
            cache.nbytes -= 0 if old is None else _nbytes(old)
            if size > cache.max_bytes:  # larger than the whole cache: not kept
                return value
            cache._entries[self._key] = entry
            cache.nbytes += size
            while len(cache._entries) > cache.max_entries or cache.nbytes > cache.max_bytes:
                cache.nbytes -= _nbytes(cache._entries.popitem(last=False)[1])
        return value


def _nbytes(entry: tuple[Any, Any]) -> int:
    return int(entry[0].nbytes) + int(entry[1].nbytes)


class FilterCache:
    """LRU cache ``key -> (copy of w, transform)`` with content verification, bounded in entries and in
    bytes (the copies and transforms together: 47 MB for a 512-channel 3x3 layer's F(4x4) transform)."""

    def __init__(self, max_entries: int = 64, max_bytes: int = 256 << 20) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._entries: OrderedDict[Hashable, tuple[Any, Any]] = OrderedDict()
        self._lock = ForkSafeLock()
        self.hits = 0
        self.misses = 0

    def lookup(self, backend: Any, w: Any, tag: Hashable, compute: Callable[[Any], Any]) -> Lookup:
        """The entry for ``w`` under ``tag``, its contents still to be checked; ``compute(w)`` makes a
        missing or stale one."""
        key = (backend.name, backend.device_key(w), backend.data_ptr(w), w.shape, w.strides, w.dtype.str, tag)
        with self._lock:
            entry = self._entries.get(key)
        return Lookup(self, backend, w, key, entry, compute)

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)
