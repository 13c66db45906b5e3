"""A bounded, thread-safe cache of transformed filters (Winograd's ``G g G^T``).

Entries are found by the weight buffer's address, shape, strides and dtype and
then checked against a stored copy of the weights, element by element, so an
array modified in place (or a new array at a recycled address) is never
served a stale transform.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

__all__ = ["FilterCache"]


class FilterCache:
    """LRU cache ``key -> (copy of w, transform)`` with content verification."""

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[Hashable, tuple[Any, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, backend: Any, w: Any, tag: Hashable, compute: Callable[[Any], Any]) -> Any:
        """The transform of ``w`` under ``tag``, computed with ``compute(w)`` on a miss."""
        xp = backend.xp
        key = (backend.name, backend.device_key(w), backend.data_ptr(w), w.shape, w.strides, w.dtype.str, tag)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and bool(xp.array_equal(entry[0], w)):
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[1]
        value = compute(w)
        with self._lock:
            self.misses += 1
            self._entries[key] = (w.copy(), value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        """Drop every entry."""
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
