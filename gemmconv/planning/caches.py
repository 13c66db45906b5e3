"""Every cache gemmconv keeps, and :func:`clear_caches`, which frees them all.

=====================  ==================================================  ==========================
cache                  holds                                               bound (default)
=====================  ==================================================  ==========================
plans                  :class:`~gemmconv.ConvPlan` objects of every pass    256 plans and 16 MiB
Winograd filters       transformed filters and a copy of their weights     256 MiB and 64 entries
FFT weight spectra     the weights' spectra and a copy of their weights    256 MiB and 32 entries
NumPy workspaces       per-thread buffers of column matrices and tiles     64 MiB per buffer kept
CuPy launch sets       each convolution's kernel launches (no arrays)      256 sets
=====================  ==================================================  ==========================

Compiled kernels are cached on disk, per user, in :func:`gemmconv.kernel_cache_dir` (never inside the
package; delete the folder to free it). Each of the caches above is least-recently-used (the workspaces
keep the last buffer of each kind per thread; one larger than the bound is allocated for its call and
freed). Tuning choices (:data:`gemmconv.tuning_cache`) are
results rather than memory and are kept: clear them with ``tuning_cache.clear()``.
"""

from __future__ import annotations

from ..backends import get_registered
from ..strategies.fft import SPECTRA_CACHE
from ..strategies.winograd import FILTER_CACHE
from .plan import PLAN_CACHE

__all__ = ["clear_caches"]


def clear_caches() -> None:
    """Free every cache: plans, transformed filters, the FFT's weight spectra, the backends' reused workspaces and
    launch sets.

    Call it while no convolution runs (a running one keeps what it holds until it returns).
    """
    PLAN_CACHE.clear()
    FILTER_CACHE.clear()
    SPECTRA_CACHE.clear()
    for backend in get_registered():
        backend.clear_workspace()
