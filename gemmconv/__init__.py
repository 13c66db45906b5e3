"""gemmconv: 1-D, 2-D and 3-D convolution on NumPy (and CuPy) arrays with a visible choice of algorithm.

>>> import numpy as np, gemmconv
>>> gemmconv.list_strategies()
['direct', 'im2col', 'winograd', 'winograd_f2', '1x1', 'fft', 'auto']
"""

from __future__ import annotations

from . import strategies as _strategies  # noqa: F401  (registers the built-in strategies)
from .api.backward import (
    conv1d_grad_input,
    conv1d_grad_weight,
    conv2d_grad_input,
    conv2d_grad_weight,
    conv3d_grad_input,
    conv3d_grad_weight,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
    plan_conv_transpose2d,
    plan_grad_input,
    plan_grad_weight,
)
from .api.conv import choose_strategy, conv1d, conv2d, conv3d, plan
from .backends import Backend, get_backend, list_backends, register_backend
from .backends._kernel_cache import kernel_cache_dir
from .backends._threads import ThreadSettings, get_threads, set_threads
from .core.errors import StrategyNotSupportedError
from .core.registry import Strategy, get_strategy, list_strategies, register_strategy, unregister_strategy
from .core.spec import ConvSpec
from .planning.caches import clear_caches
from .planning.plan import ConvPlan
from .strategies.tuning import autotune, get_autotune, set_autotune, tuning_cache
from .tools.compare import Record, compare

__version__ = "0.1.0"

#: the plans of the backward passes and the transposed convolution are :class:`ConvPlan` s too (the old name)
PassPlan = ConvPlan

__all__ = [
    "Backend",
    "ConvPlan",
    "ConvSpec",
    "PassPlan",
    "Record",
    "Strategy",
    "StrategyNotSupportedError",
    "ThreadSettings",
    "autotune",
    "choose_strategy",
    "clear_caches",
    "compare",
    "conv1d",
    "conv1d_grad_input",
    "conv1d_grad_weight",
    "conv2d",
    "conv2d_grad_input",
    "conv2d_grad_weight",
    "conv3d",
    "conv3d_grad_input",
    "conv3d_grad_weight",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "get_autotune",
    "get_backend",
    "get_strategy",
    "get_threads",
    "kernel_cache_dir",
    "list_backends",
    "list_strategies",
    "plan",
    "plan_conv_transpose2d",
    "plan_grad_input",
    "plan_grad_weight",
    "register_backend",
    "register_strategy",
    "set_autotune",
    "set_threads",
    "tuning_cache",
    "unregister_strategy",
]
