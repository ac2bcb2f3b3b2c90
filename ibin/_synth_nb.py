"""Numba kernel behind :mod:`ibin.synth`: hashed lattice impulses splatted onto a grid.

The same arithmetic as ``synth._lattice_hash``/``_uniform``/``_splat`` in one
loop without temporaries (the numpy version allocates several arrays of one
element per lattice point, millions for a fine lattice).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, uint64

_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_PRIME_X = np.uint64(0x9E3779B97F4A7C15)
_PRIME_Y = np.uint64(0xC2B2AE3D27D4EB4F)
_STREAMS = np.array([(s + 1) * 0x632BE59BD9B4E019 % 2**64 for s in range(3)], dtype=np.uint64)


@njit(cache=True, nogil=True)
def _mix(h):  # pragma: no cover - compiled
    h ^= h >> uint64(30)
    h *= _MIX1
    h ^= h >> uint64(27)
    h *= _MIX2
    h ^= h >> uint64(31)
    return h


@njit(cache=True, nogil=True)
def _u(h, s):  # pragma: no cover - compiled
    g = _mix(h ^ _STREAMS[s])
    return np.float32(g >> uint64(40)) * np.float32(2.0**-24)


@njit(cache=True, nogil=True)
def impulse_splat(key, iy0, ny, ix0, nx, lattice_over_px, x0_px, y0_px, rows, cols):  # pragma: no cover - compiled
    """Sum of jittered unit-variance lattice impulses, bilinearly splatted (float32 grid)."""
    grid = np.zeros((rows, cols), np.float64)
    k = uint64(key)
    s12 = np.float32(math.sqrt(12.0))
    for a in range(ny):
        iy = iy0 + a
        hy = _mix((uint64(np.int64(iy)) * _PRIME_Y) ^ k)
        for b in range(nx):
            ix = ix0 + b
            h = _mix(hy ^ (uint64(np.int64(ix)) * _PRIME_X))
            amp = (_u(h, 0) - np.float32(0.5)) * s12
            px = (ix + np.float64(_u(h, 1))) * lattice_over_px - x0_px
            py = (iy + np.float64(_u(h, 2))) * lattice_over_px - y0_px
            i0 = int(math.floor(py))
            j0 = int(math.floor(px))
            fy = py - i0
            fx = px - j0
            if i0 < 0 or j0 < 0 or i0 + 1 >= rows or j0 + 1 >= cols:
                continue
            grid[i0, j0] += (1.0 - fy) * (1.0 - fx) * amp
            grid[i0, j0 + 1] += (1.0 - fy) * fx * amp
            grid[i0 + 1, j0] += fy * (1.0 - fx) * amp
            grid[i0 + 1, j0 + 1] += fy * fx * amp
    return grid.astype(np.float32)
