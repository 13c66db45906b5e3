"""Exceptions raised by gemmconv."""

from __future__ import annotations

__all__ = ["StrategyNotSupportedError"]


class StrategyNotSupportedError(ValueError):
    """An explicitly requested strategy cannot run the given convolution.

    The message says why, what was received and which registered strategies
    can run it. It is a :class:`ValueError`, so code that already catches bad
    arguments catches it too.

    Attributes
    ----------
    strategy : str
        The strategy that was asked for.
    reason : str
        Why it cannot run this convolution.
    alternatives : tuple of str
        The registered strategies that can run it.
    """

    __module__ = "gemmconv"  # where users import it from, and what a traceback names

    def __init__(self, strategy: str, reason: str, alternatives: tuple[str, ...], received: str = "") -> None:
        self.strategy = strategy
        self.reason = reason
        self.alternatives = alternatives
        can = ", ".join(alternatives) if alternatives else "none"
        got = f" (received {received})" if received else ""
        super().__init__(
            f"strategy={strategy!r} cannot run this convolution: {reason}{got}. "
            f"Strategies that can run it: {can}."
        )
