"""The keyword arguments of a convolution call, with their defaults written once.

:class:`ConvArgs` is what :func:`gemmconv.conv2d`, :func:`gemmconv.plan`,
:func:`gemmconv.choose_strategy` and :func:`gemmconv.compare` accept besides the
arrays, exactly as the user gave them; :func:`gemmconv.planning.validate.validate` turns
them (with the arrays) into a :class:`~gemmconv.core.spec.ConvSpec`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

__all__ = ["DEFAULTS", "ConvArgs"]


@dataclass(frozen=True)
class ConvArgs:
    """The hyper-parameters and choices of one call, as given (validated later, with the arrays).

    See :func:`gemmconv.conv2d` for their meaning.
    """

    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    groups: Any = 1
    padding_mode: Any = "zeros"
    strategy: Any = "auto"
    workspace_limit: Any = None

    @classmethod
    def from_kwargs(cls, caller: str, kwargs: dict[str, Any]) -> ConvArgs:
        """The arguments in ``kwargs``; a ``TypeError`` naming ``caller`` for a keyword it does not take."""
        unknown = [k for k in kwargs if k not in _NAMES]
        if unknown:
            raise TypeError(f"{caller}() got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
                            f"it takes {', '.join(_NAMES)}")
        return cls(**kwargs)

    def as_dict(self, *, strategy: bool = False) -> dict[str, Any]:
        """The arguments as keywords (``strategy`` included only if asked)."""
        return {f: getattr(self, f) for f in _NAMES if strategy or f != "strategy"}


_NAMES = tuple(f.name for f in fields(ConvArgs))

#: the defaults, read by the public signatures (``stride=DEFAULTS.stride``) so that they are written once
DEFAULTS = ConvArgs()
