"""The arithmetic of a complex convolution's GEMM, three ways, on the CPU: BLAS's complex GEMM, one real GEMM of
the channel pairs (what gemmconv runs, ``strategies/complex_pairs.py``), and three real GEMMs (Gauss's trick,
what torch runs), on the GEMM shapes of a few layers; median of ``--reps`` calls, in ms.

    python benchmarks/complex_gemm.py [--reps 7]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

#: (K, C·taps, positions): a 3x3 64->64 layer at 56^2, an 8->8 5^3 filter over 40000 positions, a 3x3x3 32->32
#: plane batch, a 3-tap 64->64 signal of 16000
SHAPES = [(64, 576, 3136), (8, 1000, 40000), (32, 864, 8192), (64, 192, 16000)]


def median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=7)
    reps = p.parse_args().reps
    rng = np.random.default_rng(0)
    print(f"{'K':>4} {'C*taps':>7} {'P':>6}  cgemm ms  pairs ms  gauss3 ms  (complex64)")
    for k, crs, pos in SHAPES:
        a = (rng.standard_normal((k, crs)) + 1j * rng.standard_normal((k, crs))).astype(np.complex64)
        b = (rng.standard_normal((crs, pos)) + 1j * rng.standard_normal((crs, pos))).astype(np.complex64)
        pairs_a = np.block([[a.real, -a.imag], [a.imag, a.real]]).astype(np.float32)  # (2K, 2C·taps)
        pairs_b = np.concatenate([b.real, b.imag])  # (2C·taps, P)
        br, bi, ar, ai = (np.ascontiguousarray(v) for v in (b.real, b.imag, a.real, a.imag))
        b_sum, a_diff, a_sum = br + bi, ai - ar, ar + ai

        def gauss(ar=ar, b_sum=b_sum, a_diff=a_diff, br=br, a_sum=a_sum, bi=bi):
            k1, k2, k3 = ar @ b_sum, a_diff @ br, a_sum @ bi
            return k1 - k3, k1 + k2

        print(f"{k:>4} {crs:>7} {pos:>6}  {median_ms(lambda: a @ b, reps):8.2f}  "
              f"{median_ms(lambda: pairs_a @ pairs_b, reps):8.2f}  {median_ms(gauss, reps):9.2f}")


if __name__ == "__main__":
    main()
