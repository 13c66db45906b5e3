"""The built-in strategies, registered on import in the order they are listed."""

from __future__ import annotations

from ..core.registry import register_strategy
from . import auto, direct, im2col, one_by_one, winograd
from .dims import every_dim

#: written for 2-D, run in 1-D and 3-D too (:mod:`.dims`); ``auto`` chooses in every D
BUILTIN = (*(every_dim(s) for s in (direct.STRATEGY, im2col.STRATEGY, winograd.STRATEGY_F4, winograd.STRATEGY_F2,
                                    one_by_one.STRATEGY)), auto.STRATEGY)

for _s in BUILTIN:
    register_strategy(_s)
