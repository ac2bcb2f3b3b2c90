"""Numba kernels behind the correlation wrappers (cached on disk, ``cache=True``).

Only the wrappers in this package call them; they assume float32 arrays of
the documented shapes, with NaN marking missing points.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def cell_pearson_neighbourhood(cells, windows, min_frac, out):  # pragma: no cover - compiled
    """Pearson correlation of each cell at the 3 x 3 positions of its window.

    ``cells`` (n_c, s, s); ``windows`` (n_t, n_c, s + 2, s + 2); ``out``
    (n_t, n_c, 9) receives the correlation of cell k against the window
    sub-square at offset (i, j) as ``out[t, k, 3 * i + j]``, over the points
    both measured, or -1 when fewer than ``min_frac`` of the cell's measured
    points overlap or a side is constant.
    """
    n_t, n_c = windows.shape[0], windows.shape[1]
    s = cells.shape[1]
    for k in range(n_c):
        n_cell = 0
        for y in range(s):
            for x in range(s):
                if not math.isnan(cells[k, y, x]):
                    n_cell += 1
        for t in range(n_t):
            for i in range(3):
                for j in range(3):
                    n = 0
                    sa = 0.0
                    sb = 0.0
                    saa = 0.0
                    sbb = 0.0
                    sab = 0.0
                    for y in range(s):
                        for x in range(s):
                            a = cells[k, y, x]
                            b = windows[t, k, y + i, x + j]
                            if math.isnan(a) or math.isnan(b):
                                continue
                            n += 1
                            sa += a
                            sb += b
                            saa += a * a
                            sbb += b * b
                            sab += a * b
                    r = -1.0
                    if n >= 2 and n >= min_frac * n_cell:
                        va = saa - sa * sa / n
                        vb = sbb - sb * sb / n
                        if va > 1e-6 * n and vb > 1e-6 * n:
                            r = (sab - sa * sb / n) / math.sqrt(va * vb)
                    out[t, k, 3 * i + j] = r
    return out
