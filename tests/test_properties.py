"""Property tests: every strategy against torch.nn.Conv2d in float64, over random configurations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import configs, record, scaled_error, tolerance, torch_accepts
from hypothesis import event, given
from hypothesis import strategies as st

import gemmconv
from gemmconv.core.registry import supporting


@given(configs())
def test_every_strategy_matches_torch(cfg):
    x, w, b, args = cfg
    if not torch_accepts(x, w, b, args):
        event("torch refuses the configuration")
        # torch refuses it: so must gemmconv, with a ValueError (never a crash or an answer)
        for name in gemmconv.list_strategies():
            with pytest.raises(ValueError):
                gemmconv.conv2d(x, w, b, strategy=name, **args)
        return
    dtype = x.dtype.name
    for name in gemmconv.list_strategies():
        strat = gemmconv.get_strategy(name)
        from gemmconv.core.args import ConvArgs
        from gemmconv.planning.validate import validate

        spec = validate(x, w, b, ConvArgs(**args)).spec
        reason = strat.supports(spec)
        if reason is not None:
            with pytest.raises(gemmconv.StrategyNotSupportedError, match=reason.split(",")[0]) as info:
                gemmconv.conv2d(x, w, b, strategy=name, **args)
            assert set(info.value.alternatives) == set(supporting(spec))
            assert name not in info.value.alternatives
            event(f"{name} refuses")
            continue
        y = gemmconv.conv2d(x, w, b, strategy=name, **args)
        ref_shape = tuple(torch.Size(_ref_shape(x, w, b, args)))
        assert type(y) is np.ndarray and y.dtype == x.dtype and y.shape == ref_shape
        chosen = gemmconv.choose_strategy(x, w, b, **args) if name == "auto" else name
        err = scaled_error(y if x.ndim == 4 else y[None], x if x.ndim == 4 else x[None], w, b, strategy=chosen,
                           **args)
        record(name, dtype, err)
        event(f"{name} runs ({args['padding_mode']})")
        assert err <= tolerance(name, chosen, dtype), (name, chosen, err)


def _ref_shape(x, w, b, args):
    from helpers import torch_conv

    return torch_conv(x, w, b, **args).shape


@given(
    st.integers(1, 2),  # n
    st.sampled_from([8, 16, 32]),  # c
    st.sampled_from([8, 24]),  # k
    st.integers(6, 20),  # h = w
    st.sampled_from(["float32", "float64"]),
    st.integers(0, 2**32 - 1),
)
def test_wider_layers_match_torch(n, c, k, hw, dtype, seed):
    """Deeper reductions (C·R·S up to 288) stress accumulation and the BLAS paths."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, hw, hw)).astype(dtype)
    for kh, args in ((3, dict(padding=1)), (1, dict(stride=2)), (3, dict(stride=2, padding=1))):
        w = rng.standard_normal((k, c, kh, kh)).astype(dtype)
        b = rng.standard_normal(k).astype(dtype)
        for name in gemmconv.list_strategies():
            if (name in ("winograd", "winograd_f2") and args.get("stride", 1) != 1) or (name == "1x1" and kh != 1):
                continue
            y = gemmconv.conv2d(x, w, b, strategy=name, **args)
            err = scaled_error(y, x, w, b, **args)
            chosen = gemmconv.choose_strategy(x, w, b, **args) if name == "auto" else name
            record(name, dtype, err)
            assert err <= tolerance(name, chosen, dtype), (name, err)
