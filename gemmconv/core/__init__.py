"""The bottom layer, imported by every other: what describes a convolution and a strategy, and nothing that runs.

- :mod:`.args`: the keyword arguments of a call (:class:`ConvArgs`), as the user gave them.
- :mod:`.spec`: the normalised sizes and hyper-parameters (:class:`ConvSpec`) and the resources a call may use.
- :mod:`.errors`: :class:`StrategyNotSupportedError`.
- :mod:`.registry`: :class:`Strategy`, :class:`PassImpl` and the registry of strategies (a dict and its rule).
- :mod:`.prepared`: :class:`Prepared`, what a strategy's ``prepare`` returns.
- :mod:`._lru`, :mod:`._forksafe`: a bounded cache and a lock that survives ``fork``.
"""
