"""What a strategy's ``prepare`` returns: one pass of one convolution, every decision that depends only on sizes
taken, ready to run many times.

A :class:`Prepared` is a typed record: the call itself (``run``), the kernels it runs, the workspace it may hold
per call and the bytes it keeps between calls. Plans read these fields; nothing is attached to a function.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Prepared", "Runner", "as_prepared"]

#: ``runner(a, b, c, out) -> result``: one prepared pass. Forward: ``(x, w, b, out) -> y``; grad_input:
#: ``(grad_y, w, bias, out) -> dL/dx``; grad_weight: ``(x, grad_y, None, out) -> dL/dw``. It writes into ``out``
#: (an array of the result's shape and dtype, C-contiguous) when given, else returns a fresh array.
Runner = Callable[[Any, Any, Any, Any], Any]


@dataclass(frozen=True, eq=False)
class Prepared:
    """One pass of one convolution, prepared.

    Parameters
    ----------
    run : callable
        ``run(a, b, c, out) -> result`` (see :data:`Runner`).
    kernels : tuple of str
        The kernels a call runs, in order, as the backend names its operations (``"im2col_part"``,
        ``"matmul"``, ``"winograd_multiply"``, ...): what a plan's ``repr`` shows.
    workspace_bytes : int
        Bytes of temporary memory one call may hold beyond its result, at most (from the sizes).
    held_bytes : int
        Bytes the prepared pass keeps between calls (constants such as a zero bias).
    needs_context : bool
        Whether a call must run inside the backend's ``device_context`` (False: compiled code only, nothing to
        select or silence).
    """

    run: Runner
    kernels: tuple[str, ...] = ()
    workspace_bytes: int = 0
    held_bytes: int = 0
    needs_context: bool = True

    def __call__(self, a: Any, b: Any, c: Any, out: Any) -> Any:
        return self.run(a, b, c, out)

    def then(self, run: Runner, before: tuple[str, ...] = (), after: tuple[str, ...] = (),
             workspace_bytes: int = 0) -> Prepared:
        """This pass wrapped by ``run`` (which calls it), with the kernels ``run`` adds before and after its own
        and ``workspace_bytes`` more."""
        return Prepared(run, before + self.kernels + after, self.workspace_bytes + workspace_bytes, self.held_bytes,
                        self.needs_context)


def as_prepared(made: Prepared | Runner, who: str = "prepare") -> Prepared:
    """``made`` as a :class:`Prepared`: a third-party strategy's ``prepare`` may return the runner alone (its
    ``workspace_bytes`` and ``held_bytes`` attributes, if any, are read)."""
    if isinstance(made, Prepared):
        return made
    if not callable(made):
        raise TypeError(f"{who} must return a gemmconv Prepared or a callable runner(a, b, c, out), got "
                        f"{type(made).__name__}")
    return Prepared(made, workspace_bytes=int(getattr(made, "workspace_bytes", 0)),
                    held_bytes=int(getattr(made, "held_bytes", 0)))
