"""Array backends: which library an array belongs to, and the kernels for it.

Backends are found from the array's type without importing any array library
that the caller has not imported already (the check looks at ``sys.modules``
first, as array-api-compat does). Third parties add backends with
:func:`register_backend` or through the ``gemmconv.backends`` entry-point
group, whose entries load to a :class:`Backend` subclass or instance.
"""

from __future__ import annotations

import sys
from importlib.metadata import entry_points
from typing import Any

from ..core._forksafe import ForkSafeLock
from .base import Backend
from .cupy_backend import CupyBackend  # it imports CuPy only when a CuPy array is seen
from .numpy_backend import NumpyBackend

__all__ = ["Backend", "get_backend", "list_backends", "register_backend"]

ENTRY_POINT_GROUP = "gemmconv.backends"

_BACKENDS: dict[str, Backend] = {}
_lock = ForkSafeLock()
_entry_points_loaded = False


def register_backend(backend: Backend) -> Backend:
    """Add a backend instance to the registry.

    Parameters
    ----------
    backend : Backend
        An instance of a :class:`Backend` subclass with a unique ``name``.

    Returns
    -------
    Backend
        The same instance.

    Raises
    ------
    TypeError
        If ``backend`` is not a :class:`Backend` instance.
    ValueError
        If a backend with that name is already registered.
    """
    if not isinstance(backend, Backend):
        raise TypeError(f"backend must be an instance of gemmconv.backends.Backend, got {backend!r}")
    with _lock:
        if backend.name in _BACKENDS:
            raise ValueError(f"a backend named {backend.name!r} is already registered")
        _BACKENDS[backend.name] = backend
    return backend


def list_backends() -> list[str]:
    """Names of the registered backends."""
    return list(_BACKENDS)


def get_registered() -> list[Backend]:
    """The registered backend instances."""
    return list(_BACKENDS.values())


def _load_entry_points() -> None:
    global _entry_points_loaded
    if _entry_points_loaded:
        return
    _entry_points_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        obj = ep.load()
        backend = obj() if isinstance(obj, type) else obj
        if backend.name not in _BACKENDS:
            register_backend(backend)


def _find(a: Any) -> Backend | None:
    for backend in list(_BACKENDS.values()):
        if backend.loaded() and backend.owns(a):
            return backend
    return None


def get_backend(a: Any, name: str = "x") -> Backend:
    """The backend that owns array ``a``.

    Parameters
    ----------
    a : array
        A NumPy array, or an array of another registered backend.
    name : str
        The argument's name, used in the error message.

    Raises
    ------
    TypeError
        If no backend owns ``a`` (a list, a torch tensor, ...).
    """
    backend = _find(a)
    if backend is None:
        _load_entry_points()
        backend = _find(a)
    if backend is not None:
        return backend
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(a, torch.Tensor):
        raise TypeError(
            f"{name} is a torch.Tensor; gemmconv works on NumPy and CuPy arrays. "
            f"Pass {name}.numpy() (or cupy.from_dlpack({name}) on the GPU), or use torch.nn.functional.conv2d"
        )
    raise TypeError(
        f"{name} must be an array of a registered backend ({', '.join(_BACKENDS)}), got {type(a).__name__}; "
        f"convert it with numpy.asarray({name})"
    )


def _register_builtins() -> None:
    register_backend(NumpyBackend())
    register_backend(CupyBackend())


_register_builtins()
