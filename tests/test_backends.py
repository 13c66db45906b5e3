"""Backend discovery: by type, without importing array libraries, extensible by entry points."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import gemmconv
from gemmconv import backends
from gemmconv.backends.numpy_backend import NumpyBackend


def test_numpy_call_imports_neither_cupy_nor_torch():
    """Nor sigpy (gemmconv.compat.sigpy imports it only in install()), Dask or SciPy's signal processing."""
    code = (
        "import sys, numpy as np, gemmconv\n"
        "x = np.ones((1, 2, 6, 6), np.float32); w = np.ones((3, 2, 3, 3), np.float32)\n"
        "for s in gemmconv.list_strategies():\n"
        "    if s != '1x1': gemmconv.conv2d(x, w, strategy=s)\n"
        "gemmconv.conv2d(x, w[:, :, :1, :1], strategy='1x1')\n"
        "gemmconv.conv3d(x[:, :, None], w[:, :, None], padding=1)\n"
        "try:\n    gemmconv.conv2d([1.0], w)\nexcept TypeError:\n    pass\n"
        "from gemmconv.compat import sigpy as gsp\n"
        "gsp.convolve(x + 1j, w, multi_channel=True)\n"
        "bad = [m for m in ('cupy', 'torch', 'sigpy', 'dask', 'scipy.signal') if m in sys.modules]\n"
        "print('imported:', bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


class FakeArray:
    """An array type no built-in backend owns (stands in for a second library, e.g. CuPy)."""

    def __init__(self, a):
        self.a = np.asarray(a)
        self.shape, self.ndim, self.dtype = self.a.shape, self.a.ndim, self.a.dtype


class FakeBackend(NumpyBackend):
    name = "fake"
    module = "tests_fake_array_library"

    def owns(self, a):
        return isinstance(a, FakeArray)


@pytest.fixture
def fake_backend(monkeypatch):
    monkeypatch.setitem(sys.modules, FakeBackend.module, sys.modules[__name__])
    backend = FakeBackend()
    monkeypatch.setitem(backends._BACKENDS, backend.name, backend)
    return backend


def test_mixed_libraries_are_a_type_error(fake_backend):
    x = np.ones((1, 2, 5, 5), np.float32)
    w = np.ones((3, 2, 3, 3), np.float32)
    with pytest.raises(TypeError, match=r"w is a fake array but x is a numpy array"):
        gemmconv.conv2d(x, FakeArray(w))
    with pytest.raises(TypeError, match=r"b is a numpy array but x is a fake array"):
        gemmconv.conv2d(FakeArray(x), FakeArray(w), np.ones(3, np.float32))
    assert gemmconv.get_backend(FakeArray(x)) is fake_backend
    assert gemmconv.get_backend(x).name == "numpy"


def test_backend_is_not_consulted_before_its_library_is_imported(monkeypatch):
    backend = FakeBackend()
    monkeypatch.setitem(backends._BACKENDS, backend.name, backend)
    monkeypatch.delitem(sys.modules, FakeBackend.module, raising=False)
    monkeypatch.setattr(backends, "_entry_points_loaded", True)
    with pytest.raises(TypeError, match="must be an array of a registered backend"):
        gemmconv.get_backend(FakeArray(np.ones(3)))


def test_entry_point_backends_are_loaded_on_demand(monkeypatch):
    class EP:
        name = "fake"

        def load(self):
            return FakeBackend

    def entry_points(group):
        assert group == "gemmconv.backends"
        return [EP()]


    monkeypatch.setattr(backends, "entry_points", entry_points)
    monkeypatch.setattr(backends, "_entry_points_loaded", False)
    monkeypatch.setitem(sys.modules, FakeBackend.module, sys.modules[__name__])
    monkeypatch.setattr(backends, "_BACKENDS", dict(backends._BACKENDS))
    assert "fake" not in gemmconv.list_backends()
    assert gemmconv.get_backend(FakeArray(np.ones(3))).name == "fake"
    assert "fake" in gemmconv.list_backends()


def test_register_backend_validates():
    with pytest.raises(TypeError, match=r"instance of gemmconv\.backends\.Backend"):
        gemmconv.register_backend(NumpyBackend)
    with pytest.raises(ValueError, match="'numpy' is already registered"):
        gemmconv.register_backend(NumpyBackend())


def test_numpy_plans_keep_no_launches():
    import gemmconv

    p = gemmconv.plan(np.ones((1, 2, 5, 5)), np.ones((3, 2, 3, 3)))
    assert p.launches is None  # the CPU launches no device kernels
