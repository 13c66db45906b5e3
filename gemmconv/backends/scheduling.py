"""How a backend runs a strategy's blocks: its scheduler.

A blocked strategy (im2col, Winograd, 1x1) asks its backend's scheduler whether it cuts work into
blocks (:attr:`Scheduler.blocks`, a capability: never inferred from the device), how many bytes a
block should hold, how many run at once, and hands it the blocks to run.

- :class:`Scheduler`: the whole problem as one block, run in order on the calling thread (what a GPU
  wants: all the parallelism in one launch).
- :class:`WorkerThreads`: blocks of a few MiB on the NumPy backend's worker threads, one block's
  whole pipeline on one core (:mod:`._threads`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..core.spec import ConvSpec
from . import _threads

__all__ = ["Scheduler", "WorkPhase", "WorkerThreads"]

#: ``(fn, items, after)``: ``fn(item)`` for every item, then ``after()`` (see :meth:`Scheduler.run_phases`)
WorkPhase = tuple[Callable[[Any], None], Sequence[Any], "Callable[[], None] | None"]


class Scheduler:
    """One block, the whole problem, run on the calling thread."""

    #: whether work is cut into blocks of :attr:`block_bytes` run on workers
    blocks: bool = False
    #: bytes of workspace one block should hold (None: no bound, one block)
    block_bytes: int | None = None
    #: convolutions of fewer flops than this run as one block
    min_block_flops: int = 0
    #: ``direct``'s own threshold: from this many flops on, its output planes are split over the workers
    min_direct_flops: int = 0

    def workers(self) -> int:
        """How many blocks :meth:`run_blocks` runs at once."""
        return 1

    def block_budget(self, spec: ConvSpec) -> int | None:
        """Bytes per block for ``spec``: :attr:`block_bytes`, or None (one block) where the scheduler does not
        cut work into blocks or the convolution is under :attr:`min_block_flops` (handing blocks to workers
        would cost more than it saves)."""
        if not self.blocks or spec.flops < self.min_block_flops:
            return None
        return self.block_bytes

    def run_blocks(self, fn: Callable[[Any], None], items: Sequence[Any], workers: int | None = None) -> None:
        """Call ``fn(item)`` for each independent item, in any order, at most ``workers`` at once (default
        :meth:`workers`)."""
        for item in items:
            fn(item)

    def run_phases(self, phases: Sequence[WorkPhase]) -> None:
        """For each phase ``(fn, items, after)`` in turn: :meth:`run_blocks` ``(fn, items)``, then ``after()``
        (if given); a phase's items may rely on every earlier phase being done."""
        for fn, items, after in phases:
            self.run_blocks(fn, items)
            if after is not None:
                after()


class WorkerThreads(Scheduler):
    """Blocks on the worker threads of :mod:`._threads` (their count, pinning and the BLAS thread count
    follow :func:`gemmconv.set_threads`)."""

    blocks = True
    #: a few times one core's L2: the best of the sizes tried on ResNet-18's layers
    #: (benchmarks/CPU_NOTES.md, "Figures from code comments")
    block_bytes: int | None = 3 << 20
    #: below this, one block on the calling thread: waking the workers costs more (CPU_NOTES.md)
    min_block_flops = 32_000_000
    #: the direct loops run ~10x fewer flops per second than a GEMM: from 10 MFLOP on, on the workers
    min_direct_flops = 10_000_000

    def workers(self) -> int:
        return _threads.worker_count()

    def run_blocks(self, fn: Callable[[Any], None], items: Sequence[Any], workers: int | None = None) -> None:
        most = _threads.available()  # at most the cores free when the call began
        workers = most if workers is None else min(workers, most)
        if len(items) == 1 or workers == 1:  # nothing to hand out: on this thread
            for item in items:
                fn(item)
            return
        _threads.run_blocks(fn, items, workers)

    def run_phases(self, phases: Sequence[WorkPhase]) -> None:
        _threads.run_phases(phases, _threads.available())  # one hand-out for all the phases
