"""The built-in strategies, registered on import in the order they are listed."""

from __future__ import annotations

from ..core.registry import register_strategy
from . import auto, direct, fft, im2col, one_by_one, winograd
from .complex_pairs import every_dtype
from .dims import every_dim

#: written for real 2-D convolutions, run in 1-D and 3-D too (:mod:`.dims`; im2col folds long signals into
#: rows) and for complex dtypes (:mod:`.complex_pairs`); ``fft`` runs every D and dtype itself; ``auto`` chooses
#: in every D and dtype
BUILTIN = (*(every_dtype(every_dim(s, rows=s is im2col.STRATEGY))
             for s in (direct.STRATEGY, im2col.STRATEGY, winograd.STRATEGY_F4, winograd.STRATEGY_F2,
                       one_by_one.STRATEGY)), fft.STRATEGY, auto.STRATEGY)

for _s in BUILTIN:
    register_strategy(_s)
