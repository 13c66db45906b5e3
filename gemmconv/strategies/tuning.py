"""Measured strategy selection for ``strategy="auto"`` (like ``torch.backends.cudnn.benchmark``).

Off by default: ``auto`` then follows its documented rule. Switch it on with
``gemmconv.set_autotune(True)``, the ``gemmconv.autotune()`` context manager or
``GEMMCONV_AUTOTUNE=1``. On first sight of a configuration — backend, device,
every size including the batch, dtype and hyper-parameter — ``auto`` times the
strategies that can run it and keeps the fastest; later calls look it up.

- ``max_seconds`` bounds the time spent tuning one configuration: candidates are
  timed in order of the rule's preference and the search stops when the budget
  is spent (the fastest seen so far wins).
- ``max_error`` excludes strategies whose relative error against a float64
  reference is above it (Winograd F(4x4) is ~1e-5 in float32, 1e-2 in float16).
- ``tuning_cache.clear()``, ``tuning_cache.save(path)`` and
  ``tuning_cache.load(path)`` clear and persist the choices (JSON, versioned).
  A loaded file is checked whole (format, keys, strategy names) before any of it
  is used, and a cached choice runs only if it is among the candidates for the
  configuration (the strategies whose predicate accepts it); one that is not
  (from another version, machine or an edit) is dropped and tuned again.

Tuning is serialised by a lock (two threads tuning at once would time each
other), and the cache is thread-safe; a forked child gets both locks back
unlocked (:mod:`gemmconv.core._forksafe`).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from ..backends.base import Backend
from ..core._forksafe import ForkSafeLock
from ..core.spec import ConvSpec, Limits
from .measure import measure, reference, relative_error

__all__ = ["TuningCache", "TuningConfig", "autotune", "get_autotune", "set_autotune", "tuning_cache"]


@dataclass(frozen=True)
class TuningConfig:
    """What measured selection does; see the module docstring."""

    enabled: bool = False
    max_seconds: float | None = 1.0
    max_error: float | None = None
    repeat: int = 3


#: the strategies ``auto`` chooses among (third-party strategies are run only when asked for by name)
CANDIDATES = ("1x1", "direct", "winograd", "winograd_f2", "im2col", "fft")

_config = TuningConfig(enabled=os.environ.get("GEMMCONV_AUTOTUNE", "0") not in ("", "0"))
_config_lock = ForkSafeLock()


def get_autotune() -> TuningConfig:
    """The current measured-selection settings."""
    return _config


def set_autotune(enabled: bool = True, *, max_seconds: float | None = 1.0, max_error: float | None = None,
                 repeat: int = 3) -> TuningConfig:
    """Switch measured selection for ``strategy="auto"`` on or off; returns the previous settings.

    Parameters
    ----------
    enabled : bool
        Time the candidates on first sight of a configuration (True) or follow the rule (False).
    max_seconds : float or None
        Budget for tuning one configuration; None for no bound.
    max_error : float or None
        Exclude strategies whose relative error (max|y - ref| / max|ref|, ref in float64) exceeds this.
    repeat : int
        Timed calls per candidate (the median counts).
    """
    global _config
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat must be an int >= 1, got {repeat!r}")
    for name, v in (("max_seconds", max_seconds), ("max_error", max_error)):
        if v is not None and (not isinstance(v, (int, float)) or v <= 0):
            raise ValueError(f"{name} must be a positive number or None, got {v!r}")
    with _config_lock:
        old = _config
        _config = TuningConfig(bool(enabled), max_seconds, max_error, repeat)
    return old


@contextlib.contextmanager
def autotune(enabled: bool = True, **kwargs: Any) -> Iterator[TuningConfig]:
    """Context manager form of :func:`set_autotune`; restores the previous settings on exit."""
    old = set_autotune(enabled, **kwargs)
    try:
        yield get_autotune()
    finally:
        set_autotune(old.enabled, max_seconds=old.max_seconds, max_error=old.max_error, repeat=old.repeat)


#: the backward passes a tuning key may name (a key of the forward pass names none)
_PASSES = ("grad_input", "grad_weight")


def _key(backend: Backend, device: Any, spec: ConvSpec, limits: Limits, max_error: float | None,
         pass_: str = "forward") -> str:
    fields = asdict(replace(spec))
    key = [backend.name, str(device), fields, limits.workspace, max_error]
    return json.dumps(key if pass_ == "forward" else [*key, pass_], sort_keys=True)


class TuningCache:
    """Thread-safe map from a configuration key to the strategy measured fastest for it."""

    def __init__(self) -> None:
        #: changes whenever choices are dropped or loaded (plans made from older choices are then not reused)
        self.generation = 0
        self._choices: dict[str, str] = {}
        self._lock = ForkSafeLock()
        self.tune_lock = ForkSafeLock()  # one tuning at a time

    def get(self, key: str) -> str | None:
        with self._lock:
            return self._choices.get(key)

    def put(self, key: str, strategy: str) -> None:
        with self._lock:
            self._choices[key] = strategy

    def clear(self) -> None:
        """Forget every choice."""
        with self._lock:
            self._choices.clear()
            self.generation += 1

    def __len__(self) -> int:
        return len(self._choices)

    def drop(self, key: str) -> None:
        """Forget the choice for ``key`` (no error if there is none)."""
        with self._lock:
            self._choices.pop(key, None)
            self.generation += 1

    def save(self, path: str | os.PathLike) -> None:
        """Write the choices to a JSON file (format :data:`FORMAT`)."""
        with self._lock:
            data = dict(self._choices)
        with open(path, "w") as f:
            json.dump({"gemmconv_tuning": FORMAT, "choices": data}, f, indent=1)

    def load(self, path: str | os.PathLike) -> int:
        """Add the choices of a JSON file written by :meth:`save`; returns how many were read.

        The whole file is checked before any choice is added: its format, and each entry's key (a
        configuration as :meth:`save` writes it) and strategy (one ``auto`` chooses among).

        Raises
        ------
        ValueError
            If the file is not valid JSON, not a tuning cache of a format this version reads, or
            holds a malformed entry; the message names the file and the entry.
        """
        name = os.fspath(path)
        try:
            with open(path) as f:
                data = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{name!r} is not valid JSON ({e}); write tuning caches with tuning_cache.save") from None
        if not isinstance(data, dict) or "gemmconv_tuning" not in data:
            raise ValueError(f"{name!r} is not a gemmconv tuning cache (written by TuningCache.save)")
        if data["gemmconv_tuning"] not in READS:
            raise ValueError(f"{name!r} is a tuning cache of format {data['gemmconv_tuning']!r}; this version of "
                             f"gemmconv reads formats {', '.join(map(str, READS))}: tune again and save")
        choices = data.get("choices")
        if not isinstance(choices, dict):  # a malformed file: a ValueError, as json's own
            raise ValueError(
                f"{name!r}: 'choices' must map configurations to strategy names, got {type(choices).__name__}")
        for key, strategy in choices.items():
            problem = _entry_problem(key, strategy)
            if problem is not None:
                raise ValueError(f"{name!r}: entry {_shorten(key)!r} -> {_shorten(strategy)!r} {problem}")
        with self._lock:
            self._choices.update(choices)
            self.generation += 1
        return len(choices)


#: the format :meth:`TuningCache.save` writes: 4 since keys give the spatial sizes as lists with one entry per
#: axis (``size``, ``kernel``, ``stride``, ``padding``, ``dilation``); 3 named them height, width, kh, ...; the
#: workspace limit is held beside the spec, and a backward pass's key names the pass last
FORMAT = 4
#: the formats :meth:`TuningCache.load` reads (1 to 3 name 2-D sizes one by one: tune again)
READS = (4,)
_SPEC_FIELDS = {f.name for f in fields(ConvSpec)}


def _shorten(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _entry_problem(key: Any, strategy: Any) -> str | None:
    """Why a loaded entry is malformed, or None: the key must be a configuration as :func:`_key`
    writes it, the strategy one that ``auto`` chooses among."""
    if not isinstance(strategy, str) or strategy not in CANDIDATES:
        return f"names no strategy auto chooses among ({', '.join(CANDIDATES)})"
    try:
        parts = json.loads(key)
        pass_ok = len(parts) == 5 or (len(parts) == 6 and parts[5] in _PASSES)  # a backward pass's key names it
        backend, device, spec, workspace, max_error = parts[:5]
        ConvSpec(**spec)
        well_formed = (pass_ok and isinstance(backend, str) and isinstance(device, str) and set(spec) == _SPEC_FIELDS
                       and (workspace is None or isinstance(workspace, int))
                       and (max_error is None or isinstance(max_error, (int, float))))
    except (TypeError, ValueError):
        well_formed = False
    return None if well_formed else "has a key that is not a configuration written by TuningCache.save"


_now = time.perf_counter  # the clock of the tuning budget

#: the process-wide cache used by ``strategy="auto"``
tuning_cache = TuningCache()


def _time_candidate(name: str, run: Callable[..., Any], backend: Backend, x: Any, w: Any, b: Any,
                    repeat: int) -> tuple[Any, Any]:
    """Result and timings of candidate ``name``, prepared as ``run``."""
    return measure(lambda: run(x, w, b, None), backend, repeat)


def tuned_choice(backend: Backend, x: Any, w: Any, b: Any, spec: ConvSpec, limits: Limits, candidates: list[str],
                 runner_for: Callable[[str], Any], pass_: str = "forward", yardstick: str = "im2col") -> str:
    """The measured-fastest of ``candidates`` for this configuration (cached); ``runner_for(name)`` gives a
    candidate's prepared convolution ``(x, w, b, out) -> y`` (for a backward ``pass_``, the pass prepared
    likewise: its two operands as ``x`` and ``w``). Errors are measured against ``yardstick`` in float64."""
    cfg = _config
    key = _key(backend, backend.device_key(x), spec, limits, cfg.max_error, pass_)
    hit = tuning_cache.get(key)
    if hit in candidates:  # a loaded choice is run only where the strategy can run this spec
        return hit
    with tuning_cache.tune_lock:
        hit = tuning_cache.get(key)
        if hit in candidates:
            return hit
        if hit is not None:  # a choice (loaded from a file) that cannot run this configuration: tune again
            tuning_cache.drop(key)
        ref = reference(backend, x, w, b, runner_for, yardstick) if cfg.max_error is not None else None
        start, best, best_t = _now(), None, float("inf")
        max_error = cfg.max_error
        for name in candidates:
            y, m = _time_candidate(name, runner_for(name), backend, x, w, b, cfg.repeat)
            if ref is not None and max_error is not None and relative_error(y, ref, backend.xp) > max_error:
                continue
            if m.median < best_t:
                best, best_t = name, m.median
            if cfg.max_seconds is not None and _now() - start > cfg.max_seconds:
                break
        choice = best or candidates[0]  # nothing within max_error: the rule's choice
        tuning_cache.put(key, choice)
        return choice
