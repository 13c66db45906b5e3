"""The CuPy backend's batched-GEMM plan, checked on the CPU by emulating cuBLAS's strided-batched GEMM."""

from __future__ import annotations

import numpy as np
import pytest

from gemmconv.backends.cupy_backend import gemm_plan


def emulate(a, b):
    """Run the plan as cuBLAS would, on the flat buffers of C-contiguous a and b."""
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    m, k = a.shape[-2:]
    n = b.shape[-1]
    batch, outer, inner = gemm_plan(a, b)
    c = np.full(int(np.prod(batch, dtype=np.int64)) * m * n, np.nan)
    fa, fb = a.ravel(), b.ravel()
    for index in np.ndindex(*(d[0] for d in outer)):
        oa, ob, oc = (sum(i * d[j] for i, d in zip(index, outer, strict=False)) for j in (1, 2, 3))
        for t in range(inner[0]):
            pa, pb, pc = oa + t * inner[1], ob + t * inner[2], oc + t * inner[3]
            c[pc:pc + m * n] = (fa[pa:pa + m * k].reshape(m, k) @ fb[pb:pb + k * n].reshape(k, n)).ravel()
    return c.reshape(*batch, m, n), len(list(np.ndindex(*(d[0] for d in outer))))


@pytest.mark.parametrize(
    "a_shape, b_shape, calls",
    [
        ((3, 4), (4, 5), 1),  # plain GEMM
        ((1, 6, 4), (7, 1, 4, 5), 1),  # 1x1 / im2col, groups=1: weights broadcast over N (stride 0)
        ((3, 6, 4), (1, 3, 4, 5), 1),  # N=1, groups=3: one batch over the groups
        ((3, 6, 4), (7, 3, 4, 5), 3),  # N=7, groups=3: a loop over groups, a batch over N
        ((36, 2, 6, 4), (36, 2, 4, 5), 1),  # Winograd: T² x G batches, all strides line up
        ((2, 3, 4), (5, 1, 1, 4, 6), 2),  # broadcast both ways: a loop of 2, a batch of 5
        ((6, 4), (2, 3, 4, 5), 1),  # 2-D a against a batch
    ],
)
def test_plan_matches_matmul(a_shape, b_shape, calls):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    c, n_calls = emulate(a, b)
    np.testing.assert_allclose(c, np.matmul(a, b), rtol=1e-12, atol=1e-12)
    assert n_calls == calls
