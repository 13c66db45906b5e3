"""Locks that a forked child gets back unlocked.

A thread that holds a lock when another thread calls ``fork()`` does not exist in the child, so
the child's copy of that lock stays held forever: its first call that needs the lock hangs (a
child forked while another thread autotunes hung on its first untuned ``auto`` call). Every
lock and cache guard of gemmconv is a :class:`ForkSafeLock`; after a fork the child replaces the
lock inside each with a fresh, unlocked one (as :mod:`logging` does for its handlers' locks).
"""

from __future__ import annotations

import os
import threading
import weakref

__all__ = ["ForkSafeLock"]

_ALL: weakref.WeakSet[ForkSafeLock] = weakref.WeakSet()


class ForkSafeLock:
    """A :class:`threading.Lock` (``with``, :meth:`acquire`, :meth:`release`, :meth:`locked`) that is
    unlocked in a forked child."""

    __slots__ = ("__weakref__", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        _ALL.add(self)

    def __enter__(self) -> bool:
        return self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()

    def acquire(self, blocking: bool = True, timeout: float = -1) -> bool:
        return self._lock.acquire(blocking, timeout)

    def release(self) -> None:
        self._lock.release()

    def locked(self) -> bool:
        return self._lock.locked()

    def _reset(self) -> None:
        self._lock = threading.Lock()


def all_locks() -> list[ForkSafeLock]:
    """Every live :class:`ForkSafeLock` (for tests)."""
    return list(_ALL)


def _after_fork_in_child() -> None:
    for lock in list(_ALL):
        lock._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
