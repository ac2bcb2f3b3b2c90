"""Numba kernels behind the feature wrappers.

Only the validating wrappers in this package call these; they assume
contiguous arrays of the documented dtypes and never check their input.
Compiled functions are cached on disk (``cache=True``), so a second process
loads them instead of compiling.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def polar_power_bins(power, fy, fx, log_kmin, log_kmax, n_k, n_phi):  # pragma: no cover - compiled
    """Average a half-plane power spectrum into (log radius, orientation) bins.

    ``power`` is ``|rfft2|^2`` of shape (len(fy), len(fx)); ``fy``/``fx`` are
    the frequencies (cycles/µm) of its rows and columns. Orientation is
    folded to [0, pi) (the spectrum of a real surface is point-symmetric)
    and shared between the two nearest orientation bins (linear weights),
    so a small rotation moves energy smoothly between bins.
    Returns the mean power per bin and the weight per bin.
    """
    acc = np.zeros((n_k, n_phi), np.float64)
    wts = np.zeros((n_k, n_phi), np.float64)
    dlk = (log_kmax - log_kmin) / n_k
    dphi = math.pi / n_phi
    for i in range(power.shape[0]):
        ky = fy[i]
        for j in range(power.shape[1]):
            kx = fx[j]
            k2 = kx * kx + ky * ky
            if k2 <= 0.0:
                continue
            lk = 0.5 * math.log(k2)
            t = (lk - log_kmin) / dlk
            if t < 0.0 or t >= n_k:
                continue
            kb = int(t)
            phi = math.atan2(ky, kx)
            if phi < 0.0:
                phi += math.pi
            if phi >= math.pi:
                phi -= math.pi
            u = phi / dphi - 0.5
            p0 = int(math.floor(u))
            f = u - p0
            a = p0 % n_phi
            b = (p0 + 1) % n_phi
            pw = power[i, j]
            acc[kb, a] += (1.0 - f) * pw
            wts[kb, a] += 1.0 - f
            acc[kb, b] += f * pw
            wts[kb, b] += f
    return acc, wts


@njit(cache=True, nogil=True)
def dft_power(z, pixel_um, freqs):  # pragma: no cover - compiled
    """Power ``|sum_i z[i] exp(-2 pi i f x_i)|^2`` of a uniformly sampled profile at each frequency.

    ``z`` (n,) float64 with no NaN (missing points already zero), sampled
    every ``pixel_um``; ``freqs`` (k,) in cycles per µm. The complex
    exponential is advanced by one rotation per sample and re-anchored
    with ``cos``/``sin`` every 64 samples, so rounding does not accumulate.
    """
    n = z.shape[0]
    out = np.empty(freqs.shape[0], np.float64)
    for k in range(freqs.shape[0]):
        w = -2.0 * math.pi * freqs[k] * pixel_um
        cr = math.cos(w)
        ci = math.sin(w)
        re = 0.0
        im = 0.0
        pr = 1.0
        pi_ = 0.0
        for i in range(n):
            if i % 64 == 0:
                pr = math.cos(w * i)
                pi_ = math.sin(w * i)
            v = z[i]
            re += v * pr
            im += v * pi_
            t = pr * cr - pi_ * ci
            pi_ = pr * ci + pi_ * cr
            pr = t
        out[k] = re * re + im * im
    return out


@njit(cache=True, nogil=True, fastmath=True)
def harmonic_products_q(x, scale, w, out):  # pragma: no cover - compiled
    """Per-harmonic inner products of 8-bit stored polar signatures with a query.

    ``x`` (n, h * L) int8 and ``scale`` (n,) float32: stored signature ``i``
    is ``x[i] * scale[i]``, holding harmonic after harmonic the ``L = 2 R``
    real then imaginary parts of its ``R`` ring coefficients
    (:func:`ibin.features._polar.coarse_columns`); ``w`` (h, 2, L) float32 the
    query's weights giving, for harmonic ``m``, the real (``w[m, 0]``) and
    imaginary (``w[m, 1]``) part of ``sum_k q_km conj(d_km)``. Writes
    ``out`` (n, 2 h): the real then imaginary parts of the products of the
    odd harmonics (1, 3, ...), then the real then imaginary parts of the
    even ones (2, 4, ...).
    """
    n = x.shape[0]
    h = w.shape[0]
    L = w.shape[2]
    no = (h + 1) // 2
    ne = h // 2
    for i in range(n):
        for m in range(h):  # harmonic m + 1
            o = m * L
            sr = np.float32(0.0)
            si = np.float32(0.0)
            for j in range(L):
                v = np.float32(x[i, o + j])
                sr += v * w[m, 0, j]
                si += v * w[m, 1, j]
            k = m // 2
            if m % 2 == 0:  # odd harmonic
                out[i, k] = sr * scale[i]
                out[i, no + k] = si * scale[i]
            else:
                out[i, 2 * no + k] = sr * scale[i]
                out[i, 2 * no + ne + k] = si * scale[i]


@njit(cache=True, nogil=True)
def quantise_rows(x, rows, cols, codes, scale):  # pragma: no cover - compiled
    """8-bit codes of chosen rows and columns of a float32 matrix, one symmetric scale per row.

    Row ``i`` of the output is ``x[rows[i], cols]``: ``scale[i]`` is its
    largest magnitude over 127 (0 for a zero row, whose codes are 0) and
    ``codes[i]`` the values over the scale rounded half to even, in
    [-127, 127].
    """
    m = cols.shape[0]
    for i in range(rows.shape[0]):
        r = rows[i]
        top = np.float32(0.0)
        for j in range(m):
            v = abs(x[r, cols[j]])
            if v > top:
                top = v
        s = top / np.float32(127.0)
        scale[i] = s
        for j in range(m):
            if s > 0:
                q = np.rint(x[r, cols[j]] / s)
                codes[i, j] = np.int8(min(max(q, -127.0), 127.0))
            else:
                codes[i, j] = 0


@njit(cache=True, nogil=True, fastmath=True)
def row_max_half_turn(odd, even, out):  # pragma: no cover - compiled
    """``out[i] = max_j(even[i, j] + |odd[i, j]|)`` for float32 matrices (n, a).

    With ``odd`` and ``even`` the odd and even harmonics' parts of a
    rotation score at angles ``alpha_j`` of a half turn, the score at
    ``alpha_j`` is ``even + odd`` and at ``alpha_j + pi`` it is
    ``even - odd``: this is the best over the whole turn.
    """
    for i in range(odd.shape[0]):
        best = even[i, 0] + abs(odd[i, 0])
        for j in range(1, odd.shape[1]):
            v = even[i, j] + abs(odd[i, j])
            if v > best:
                best = v
        out[i] = best


@njit(cache=True, nogil=True, fastmath=True)
def signature_products(x, rows, c, d, out):  # pragma: no cover - compiled
    """Per-harmonic products ``P_m = sum_k q_km conj(d_km)`` for chosen stored signatures.

    ``x`` (N, 2 R M) float32 signature vectors (:func:`ibin.features._polar.to_vector`
    layout: real parts, ring after ring, then imaginary parts); ``rows`` (n,)
    int64 the signatures wanted; ``c``, ``d`` (R, M) float32 the real and
    imaginary parts of the query. Writes ``out`` (n, 2 M): real parts of
    ``P``, then imaginary parts.
    """
    R = c.shape[0]
    M = c.shape[1]
    H = R * M
    for i in range(rows.shape[0]):
        r = rows[i]
        for m in range(2 * M):
            out[i, m] = 0.0
        for k in range(R):
            o = k * M
            for m in range(M):
                a = x[r, o + m]
                b = x[r, H + o + m]
                out[i, m] += a * c[k, m] + b * d[k, m]
                out[i, M + m] += a * d[k, m] - b * c[k, m]
