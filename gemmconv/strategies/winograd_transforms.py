"""Winograd minimal-filtering transforms F(m×m, 3×3) (Lavin & Gray, 2016).

For an output tile of m×m and a 3×3 filter g, the input tile d is (m+2)×(m+2)
and ``Y = A^T [(G g G^T) ⊙ (B^T d B)] A``. F(2×2, 3×3) uses the points 0, ±1, ∞;
F(4×4, 3×3) uses 0, ±1, ±2, ∞.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TRANSFORMS"]

_F2 = {
    "bt": [[1, 0, -1, 0],
           [0, 1, 1, 0],
           [0, -1, 1, 0],
           [0, 1, 0, -1]],
    "g": [[1, 0, 0],
          [1 / 2, 1 / 2, 1 / 2],
          [1 / 2, -1 / 2, 1 / 2],
          [0, 0, 1]],
    "at": [[1, 1, 1, 0],
           [0, 1, -1, -1]],
}

_F4 = {
    "bt": [[4, 0, -5, 0, 1, 0],
           [0, -4, -4, 1, 1, 0],
           [0, 4, -4, -1, 1, 0],
           [0, -2, -1, 2, 1, 0],
           [0, 2, -1, -2, 1, 0],
           [0, 4, 0, -5, 0, 1]],
    "g": [[1 / 4, 0, 0],
          [-1 / 6, -1 / 6, -1 / 6],
          [-1 / 6, 1 / 6, -1 / 6],
          [1 / 24, 1 / 12, 1 / 6],
          [1 / 24, -1 / 12, 1 / 6],
          [0, 0, 1]],
    "at": [[1, 1, 1, 1, 1, 0],
           [0, 1, -1, 2, -2, 0],
           [0, 1, 1, 4, 4, 0],
           [0, 1, -1, 8, -8, 1]],
}

#: output tile size m -> {"bt": (T, T), "g": (T, 3), "at": (m, T)} as float64 arrays, T = m + 2
TRANSFORMS: dict[int, dict[str, np.ndarray]] = {
    m: {key: np.array(val, dtype=np.float64) for key, val in mats.items()} for m, mats in ((2, _F2), (4, _F4))
}
