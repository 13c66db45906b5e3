"""A thread-safe least-recently-used map bounded in entries and in bytes: the one kind of cache gemmconv
keeps (plans, transformed filters, CuPy launch sets)."""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Callable, Hashable, ValuesView
from typing import Generic, TypeVar

from ._forksafe import ForkSafeLock

__all__ = ["LRU"]

V = TypeVar("V")


class LRU(Generic[V]):
    """``key -> value``, the least recently used evicted past ``max_entries`` values or ``max_bytes`` of
    ``size(value)``; a value larger than ``max_bytes`` is not kept. The bounds may be changed at any time
    (they hold again from the next insertion)."""

    def __init__(self, max_entries: int, max_bytes: int | None = None, size: Callable[[V], int] = lambda v: 0) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._size = size
        self._values: OrderedDict[Hashable, V] = OrderedDict()
        self._lock = ForkSafeLock()

    def get(self, key: Hashable) -> V | None:
        """The value of ``key`` (now the most recently used), or None."""
        value = self._values.get(key)
        if value is not None:
            # both calls are single operations on the OrderedDict (atomic under the GIL), so no lock: a
            # value evicted in between is a KeyError here, and it is still returned
            with contextlib.suppress(KeyError):
                self._values.move_to_end(key)
        return value

    def peek(self, key: Hashable) -> V | None:
        """The value of ``key`` without marking it used, or None."""
        return self._values.get(key)

    def put(self, key: Hashable, value: V) -> None:
        """Keep ``value`` under ``key`` (replacing any), then evict to the bounds."""
        size = self._size(value)
        with self._lock:
            old = self._values.pop(key, None)
            if old is not None:
                self.nbytes -= self._size(old)
            if self.max_bytes is not None and size > self.max_bytes:  # larger than the whole cache
                return
            self._values[key] = value
            self.nbytes += size
            while len(self._values) > self.max_entries or (self.max_bytes is not None and self.nbytes > self.max_bytes):
                self.nbytes -= self._size(self._values.popitem(last=False)[1])

    def get_or_make(self, key: Hashable, make: Callable[[], V]) -> V:
        """The value of ``key``, made by ``make()`` and kept if missing."""
        value = self.get(key)
        if value is None:
            value = make()
            self.put(key, value)
        return value

    def values(self) -> ValuesView[V]:
        return self._values.values()

    def clear(self) -> None:
        """Drop every value."""
        with self._lock:
            self._values.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        return len(self._values)
