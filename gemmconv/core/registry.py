"""The strategy registry.

A strategy is a named algorithm with a ``supports`` predicate (returns None when
it can run a :class:`~gemmconv.core.spec.ConvSpec`, else the reason it cannot) and a
``run`` function written against the :class:`~gemmconv.backends.Backend`
interface. The same predicate drives the error for an explicit strategy, the
choice of ``auto``, the documentation table and the tests.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._forksafe import ForkSafeLock
from .prepared import Prepared, Runner
from .spec import NO_LIMITS, ConvSpec, Limits

__all__ = ["PassImpl", "Prepared", "Runner", "Strategy", "get_strategy", "list_strategies", "register_strategy",
           "unregister_strategy"]


class KernelProvider(Protocol):
    """What the registry asks of a backend: its name and whether it provides a kernel family. (The core sits
    below :mod:`gemmconv.backends`, whose :class:`~gemmconv.backends.Backend` is one.)"""

    name: str

    def provides(self, family: str) -> bool:
        """Whether the backend provides kernel family ``family``."""
        ...


RunFn = Callable[[Any, Any, Any, Any, ConvSpec], Any]
#: ``supports(spec)`` or ``supports(spec, limits)``: None, or why the strategy cannot run it
SupportsFn = Callable[..., "str | None"]
#: ``prepare(backend, spec, limits) -> Prepared`` (or the runner alone, for a third-party strategy)
PrepareFn = Callable[[Any, ConvSpec, Limits], "Prepared | Runner"]
#: ``select(backend, a, b, c, spec, limits, runner_for[, pass_=]) -> name``: the strategy a chooser picks for a
#: pass; ``runner_for(name)`` gives a candidate's prepared pass (for measuring it); ``pass_`` is passed where
#: ``select`` takes it
SelectFn = Callable[..., str]


def _always(spec: ConvSpec, limits: Limits = NO_LIMITS) -> str | None:
    return None


def _parameters(fn: Callable[..., Any]) -> list[inspect.Parameter]:
    """The parameters of ``fn`` (none for a builtin without a signature: it is then called with the least)."""
    try:
        return list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return []


def _takes_limits(fn: Callable[..., Any]) -> bool:
    """Whether predicate ``fn`` takes a second argument, the :class:`~gemmconv.core.spec.Limits`."""
    params = _parameters(fn)
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)


def call_supports(supports: SupportsFn, spec: ConvSpec, limits: Limits = NO_LIMITS) -> str | None:
    """Predicate ``supports`` on ``spec``, with ``limits`` where it takes them."""
    if _takes_limits(supports):
        return supports(spec, limits)
    return supports(spec)


#: the passes of a convolution: ``y = conv(x, w)``, ``dL/dx`` from ``dL/dy`` (also the transposed convolution),
#: ``dL/dw`` from ``x`` and ``dL/dy``
FORWARD, GRAD_INPUT, GRAD_WEIGHT = "forward", "grad_input", "grad_weight"
PASSES = (FORWARD, GRAD_INPUT, GRAD_WEIGHT)


@dataclass(frozen=True)
class PassImpl:
    """A strategy's implementation of a backward pass.

    ``prepare(backend, spec, limits) -> Prepared``, whose runner is ``run(grad_y, w, bias, out) -> dL/dx``
    for ``grad_input`` (``bias``, of the input's channels, is added: the transposed convolution's) and
    ``run(x, grad_y, None, out) -> dL/dw`` for ``grad_weight``; ``spec`` is the forward convolution's.
    ``supports`` and ``needs`` as for the forward pass.
    """

    prepare: PrepareFn
    supports: SupportsFn = _always
    needs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Strategy:
    """A convolution algorithm.

    Parameters
    ----------
    name : str
        Unique name, the value users pass as ``strategy=``.
    run : callable
        ``run(backend, x, w, b, spec) -> y``. ``x`` is 4-D, ``b`` may be None,
        ``y`` has shape ``spec.out_shape`` and includes the bias. Padding modes
        other than ``"zeros"`` are applied before ``run`` is called.
    supports : callable, optional
        ``supports(spec) -> str | None``: None when the strategy can run
        ``spec``, else a short reason ("needs a 3x3 kernel, got 5x5"). A
        predicate of two arguments also gets the call's
        :class:`~gemmconv.core.spec.Limits` (its workspace bound).
    description : str, optional
        One line for tables and docs.
    pads_zeros : bool, optional
        Whether ``run`` handles zero padding itself. If False, the input is
        padded explicitly and ``run`` sees a spec without padding.
    prepare : callable, optional
        ``prepare(backend, spec, limits) -> Prepared``, called once when a plan is made:
        the :class:`~gemmconv.core.prepared.Prepared` pass's ``run(x, w, b, out)`` runs the
        convolution with every decision that depends only on sizes (blocks, workspace,
        launch sizes) taken in ``prepare``, writing into ``out`` when it is given; it
        also names the kernels a call runs and the workspace it holds. A plain
        runner may be returned instead (its workspace is then unknown: 0). Without
        ``prepare``, plans call ``run`` (and copy into ``out``).
    backward : mapping, optional
        ``{"grad_input": PassImpl, "grad_weight": PassImpl}``: the backward passes the strategy has
        (none by default; asking for another is refused, naming the strategies that have it).
    needs : tuple of str, optional
        Kernel families the strategy calls (``"im2col"``, ``"direct"``, ``"winograd"``): a backend that
        does not provide one of them (:meth:`Backend.provides`) is refused.
    select : callable, optional
        For a chooser such as ``auto``: ``select(backend, x, w, b, spec,
        limits, runner_for)`` names the strategy to run, resolved once when a
        plan is made; ``run`` is then never called. The same call picks for
        the backward passes and the transposed convolution, with the pass's
        operands in place of ``x, w, b`` (grad_input: ``grad_y, w, None``;
        grad_weight: ``x, grad_y, None``) and ``runner_for`` preparing that
        pass; a ``select`` that takes a ``pass_`` keyword is told which pass.
        What it picks must have that pass.
    dims : tuple of int, optional
        The numbers of spatial dimensions the strategy runs (``(2,)``: 2-D convolutions); a spec of another
        is refused before the predicate is asked.
    """

    name: str
    run: RunFn
    supports: SupportsFn = _always
    description: str = ""
    pads_zeros: bool = True
    prepare: PrepareFn | None = None
    select: SelectFn | None = None
    needs: tuple[str, ...] = ()
    backward: Mapping[str, PassImpl] = field(default_factory=dict)
    dims: tuple[int, ...] = (2,)

    def refusal(self, spec: ConvSpec, limits: Limits = NO_LIMITS, pass_: str = FORWARD) -> str | None:
        """Why this strategy cannot run pass ``pass_`` of ``spec`` within ``limits`` (its predicate), or None."""
        if spec.ndim not in self.dims:
            return f"runs {' and '.join(f'{d}-D' for d in self.dims)} convolutions, not {spec.ndim}-D ones"
        supports = self.supports
        if pass_ != FORWARD:
            impl = self.backward.get(pass_)
            if impl is None:
                return f"has no {pass_} pass"
            supports = impl.supports
        left = limits.padding_explicitly(spec, self.pads_zeros)  # the padded copy's bytes come off the workspace
        if isinstance(left, str):
            return left
        reason = call_supports(supports, spec, left)
        if reason is not None and left is not limits:
            reason += (f" (that is workspace_limit={limits.workspace} less the {spec.padded_bytes} bytes of the input, "
                       f"or its gradient, padded explicitly ({spec.padding_mode!r}): add those to the figures above)")
        return reason

    def kernels(self, pass_: str = FORWARD) -> tuple[str, ...]:
        """The kernel families pass ``pass_`` calls."""
        if pass_ == FORWARD:
            return self.needs
        impl = self.backward.get(pass_)
        return () if impl is None else impl.needs


def call_select(chooser: Strategy, backend: KernelProvider, operands: tuple[Any, Any, Any], spec: ConvSpec,
                limits: Limits, runner_for: Callable[[str], Prepared], pass_: str) -> str:
    """The name ``chooser.select`` picks for pass ``pass_``, as :func:`call_supports` calls a predicate: told the
    pass where its ``select`` takes a ``pass_`` keyword (or ``**kwargs``), else called the same way as for the
    forward pass."""
    select = chooser.select
    if select is None:
        raise TypeError(f"strategy {chooser.name!r} is not a chooser (it has no select)")
    if _takes_pass(select):
        return select(backend, *operands, spec, limits, runner_for, pass_=pass_)
    return select(backend, *operands, spec, limits, runner_for)


def _takes_pass(fn: Callable[..., Any]) -> bool:
    """Whether chooser ``fn`` takes a ``pass_`` keyword."""
    return any(p.name == "pass_" or p.kind is p.VAR_KEYWORD for p in _parameters(fn))


_REGISTRY: dict[str, Strategy] = {}
_lock = ForkSafeLock()


def register_strategy(strategy: Strategy) -> Strategy:
    """Add a strategy to the registry.

    Parameters
    ----------
    strategy : Strategy
        The strategy; its name must not be registered yet.

    Returns
    -------
    Strategy
        The same strategy, so this can be used on a module-level constant.

    Raises
    ------
    TypeError
        If ``strategy`` is not a :class:`Strategy`.
    ValueError
        If the name is empty or already registered.

    Examples
    --------
    >>> import gemmconv
    >>> def run(backend, x, w, b, spec):
    ...     return gemmconv.get_strategy("im2col").run(backend, x, w, b, spec)
    >>> s = gemmconv.register_strategy(gemmconv.Strategy("my_im2col", run))
    >>> "my_im2col" in gemmconv.list_strategies()
    True
    >>> gemmconv.unregister_strategy("my_im2col")
    """
    if not isinstance(strategy, Strategy):
        raise TypeError(f"strategy must be a gemmconv.Strategy, got {type(strategy).__name__}")
    if not isinstance(strategy.name, str) or not strategy.name:
        raise ValueError(f"a strategy needs a non-empty string name, got {strategy.name!r}")
    with _lock:
        if strategy.name in _REGISTRY:
            raise ValueError(
                f"a strategy named {strategy.name!r} is already registered; choose another name "
                "(or unregister_strategy it first)"
            )
        _REGISTRY[strategy.name] = strategy
    return strategy


def unregister_strategy(name: str) -> None:
    """Remove a registered strategy by name (ValueError if it is not registered)."""
    with _lock:
        if name not in _REGISTRY:
            raise ValueError(f"no strategy named {name!r} is registered; registered: {', '.join(_REGISTRY)}")
        del _REGISTRY[name]


def list_strategies() -> list[str]:
    """Names of the registered strategies, in registration order."""
    return list(_REGISTRY)


def get_strategy(name: str) -> Strategy:
    """The registered strategy called ``name``.

    Raises
    ------
    ValueError
        If no strategy has that name; the message lists the registered names.
    """
    if not isinstance(name, str):
        raise TypeError(f"strategy must be a str, got {name!r} ({type(name).__name__})")
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown strategy={name!r}; registered strategies: {', '.join(_REGISTRY)}"
        ) from None


def missing_kernels(strategy: Strategy, backend: KernelProvider, pass_: str = FORWARD) -> str | None:
    """Why ``backend`` cannot run pass ``pass_`` of ``strategy`` (a kernel family it does not provide), or None."""
    for family in strategy.kernels(pass_):
        if not backend.provides(family):
            return f"the {backend.name} backend provides no {family} kernels"
    return None


def unable(strategy: Strategy, spec: ConvSpec, backend: KernelProvider, limits: Limits = NO_LIMITS,
           pass_: str = FORWARD) -> str | None:
    """Why ``strategy`` cannot run pass ``pass_`` of ``spec`` within ``limits`` on ``backend``: its predicate's
    reason, or a kernel family the backend does not provide; None when it can."""
    return strategy.refusal(spec, limits, pass_) or missing_kernels(strategy, backend, pass_)


def supporting(spec: ConvSpec, backend: KernelProvider | None = None, limits: Limits = NO_LIMITS,
               pass_: str = FORWARD) -> tuple[str, ...]:
    """Names of the registered strategies whose predicate for pass ``pass_`` accepts ``spec`` within ``limits``
    (and, given a backend, whose kernels it provides)."""
    strategies = list(_REGISTRY.items())
    found = [name for name, s in strategies if s.select is None and (
        s.refusal(spec, limits, pass_) is None if backend is None else unable(s, spec, backend, limits, pass_) is None)]
    # a chooser (auto) can run whatever one of the others can
    return tuple(name for name, s in strategies if name in found or (s.select is not None and found))
