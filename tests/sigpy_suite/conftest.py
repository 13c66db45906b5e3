"""sigpy's own convolution tests (copied from sigpy 0.1.27) run here with ``gemmconv.compat.sigpy.install()`` in
force: every test must have called gemmconv's functions and none of sigpy's own (on the CPU; on CuPy too where
a GPU is present, as sigpy's tests add its device then)."""

from __future__ import annotations

import functools
import importlib.util

import pytest

if importlib.util.find_spec("sigpy") is None:  # the tests extra installs it; without it there is nothing to run
    collect_ignore_glob = ["test_*.py"]


@pytest.fixture(autouse=True)
def through_gemmconv(monkeypatch):
    import sigpy.conv

    from gemmconv.compat import sigpy as gsp

    gsp.install()
    calls = {"gemmconv": 0, "sigpy": 0}

    def counted(fn, who):
        @functools.wraps(fn)
        def call(*args, **kwargs):
            calls[who] += 1
            return fn(*args, **kwargs)
        return call

    for name in gsp.ROUTED:
        routed = getattr(sigpy.conv, name)
        assert isinstance(routed, gsp.Routed)
        monkeypatch.setattr(routed, "ours", counted(routed.ours, "gemmconv"))
        monkeypatch.setattr(routed, "original", counted(routed.original, "sigpy"))
    yield calls
    gsp.uninstall()
    assert calls["gemmconv"] > 0, "the test never reached gemmconv"
    assert calls["sigpy"] == 0, "sigpy's own convolution ran"
