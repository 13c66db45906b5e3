"""Where the NumPy backend's compiled kernels are cached on disk: a per-user folder, never the package.

numba's own ``cache=True`` writes its cache next to the source file, into
``site-packages/gemmconv/backends/__pycache__`` wherever that folder is writable. pip does not own those
files, so uninstalling gemmconv (or switching to an editable install) left a ``gemmconv/`` folder behind,
which Python then imported as an empty namespace package in place of the real one; and where the
package is read-only (system site-packages, a container image) nothing was cached and every process
compiled again. So each kernel here gets a cache of its own whose folder is, first that applies:

1. ``NUMBA_CACHE_DIR`` when set: numba's own rule for it (under it, one folder per source directory);
2. ``GEMMCONV_CACHE_DIR`` when set: ``$GEMMCONV_CACHE_DIR/numba/<one folder per source directory>``;
3. the platform's per-user cache folder (``platformdirs.user_cache_dir("gemmconv")``: on Linux
   ``$XDG_CACHE_HOME/gemmconv``, by default ``~/.cache/gemmconv``), ``numba/<one folder per source
   directory>`` under it.

The folder is read when the kernels are defined (when :mod:`gemmconv` is first imported). A folder
that cannot be created or written is skipped; with none left, the kernels are compiled afresh in each
process. numba keys each entry by the source file's contents, the signature and the CPU, and this
cache adds numba's bounds-check setting (``NUMBA_BOUNDSCHECK``), which numba's own key lacks: a kernel
compiled without bounds checks is never loaded where they are asked for.

Nothing here changes numba for other code: numba's locators, settings and other functions' caches
are untouched; only the dispatchers made by :func:`compiled` carry this cache.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from numba import njit
from numba.core import config
from numba.core.caching import (
    CompileResultCacheImpl,
    FunctionCache,
    UserProvidedCacheLocator,
    _CacheLocator,
    _SourceFileBackedLocatorMixin,
)

__all__ = ["compiled", "kernel_cache_dir"]


def kernel_cache_dir() -> Path | None:
    """The folder under which gemmconv's compiled kernels are cached, per the rule of this module's docstring
    (None where no folder can be written: kernels are then compiled in each process)."""
    numba_dir = getattr(config, "CACHE_DIR", "")  # NUMBA_CACHE_DIR
    for root in ([Path(numba_dir)] if numba_dir else []) + [_gemmconv_root() / "numba"]:
        if _writable(root):
            return root
    return None


def _gemmconv_root() -> Path:
    """``$GEMMCONV_CACHE_DIR``, else the platform's per-user cache folder for gemmconv."""
    given = os.environ.get("GEMMCONV_CACHE_DIR", "").strip()
    if given:
        return Path(given).expanduser()
    import platformdirs  # small, pure Python; imported only when kernels are defined

    return Path(platformdirs.user_cache_dir("gemmconv", appauthor=False))


def _writable(folder: Path) -> bool:
    """Whether ``folder`` exists (created if need be) and a file can be written in it."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError:
        return False
    return True


class _UserFolderLocator(_SourceFileBackedLocatorMixin, _CacheLocator):
    """numba's cache locator for a kernel of gemmconv: ``<kernel_cache_dir()>/<source dir name>_<hash of its path>``
    (one folder per installed copy, so two installs or checkouts never share entries)."""

    def __init__(self, py_func: Callable[..., Any], py_file: str, root: Path) -> None:
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = str(root / self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self) -> str:
        return self._cache_path

    @classmethod
    def from_function(cls, py_func: Callable[..., Any], py_file: str) -> _UserFolderLocator | None:
        if not os.path.exists(py_file):
            return None
        locator = cls(py_func, py_file, _gemmconv_root() / "numba")
        try:
            locator.ensure_cache_path()  # numba's own check: the folder made, and a file written in it
        except OSError:
            return None
        return locator


class _KernelCacheImpl(CompileResultCacheImpl):
    """numba's cache of compile results, located by :class:`_UserFolderLocator` (``NUMBA_CACHE_DIR`` first)
    and with the bounds-check setting in its file names."""

    _locator_classes = [UserProvidedCacheLocator, _UserFolderLocator]  # type: ignore[list-item]  # noqa: RUF012

    def get_filename_base(self, fullname: str, abiflags: str) -> str:
        base: str = super().get_filename_base(fullname, abiflags)
        return base + ("-boundscheck" if getattr(config, "BOUNDSCHECK", None) else "")


class _KernelCache(FunctionCache):
    _impl_class = _KernelCacheImpl


def _cache_for(fn: Callable[..., Any]) -> _KernelCache | None:
    """A disk cache for kernel ``fn``, or None where no folder is writable."""
    try:
        return _KernelCache(fn)
    except RuntimeError:  # numba's "no locator available": no folder can be written
        return None


def compiled(**options: Any) -> Callable[[Callable[..., Any]], Any]:
    """``numba.njit(nogil=True, **options)`` (``nogil=False`` may be passed), cached on disk in the per-user
    folder (see the module docstring).

    Use it for the kernels the backend calls; helpers inlined into them (``njit(inline="always")``) need no
    cache of their own.
    """

    def wrap(fn: Callable[..., Any]) -> Any:
        dispatcher = njit(**{"nogil": True, **options})(fn)
        cache = _cache_for(fn)
        if cache is not None:
            dispatcher._cache = cache  # what numba's enable_caching() does, with this module's cache
        return dispatcher

    return wrap
