"""Numba kernels behind the correlation wrappers (cached on disk, ``cache=True``).

Only the wrappers in this package call them; they assume float32 arrays of
the documented shapes, with NaN marking missing points.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _zero_filled(src, v, w, v2):  # pragma: no cover - compiled
    """``src`` (any shape, float32, NaN = missing) flattened into values with missing set to 0, 0/1 weights and squares."""
    f = src.ravel()
    for i in range(f.shape[0]):
        x = f[i]
        if math.isnan(x):
            v[i] = 0.0
            w[i] = 0.0
        else:
            v[i] = x
            w[i] = 1.0
        v2[i] = v[i] * v[i]


@njit(cache=True, nogil=True)
def cell_pearson_neighbourhood(cells, windows, min_frac, out):  # pragma: no cover - compiled
    """Pearson correlation of each cell at the 3 x 3 positions of its window.

    ``cells`` (n_c, s, s); ``windows`` (n_t, n_c, s + 2, s + 2); ``out``
    (n_t, n_c, 9) receives the correlation of cell k against the window
    sub-square at offset (i, j) as ``out[t, k, 3 * i + j]``, over the points
    both measured, or -1 when fewer than ``min_frac`` of the cell's measured
    points overlap or a side is constant.

    Missing points become value 0 and weight 0 (:func:`_zero_filled`), so
    each row of a cell meets its window row in one branch-free
    :func:`_overlap_sums`.
    """
    n_t, n_c = windows.shape[0], windows.shape[1]
    s = cells.shape[1]
    S = s + 2
    av = np.empty(s * s, np.float32)
    aw = np.empty(s * s, np.float32)
    a2 = np.empty(s * s, np.float32)
    bv = np.empty(S * S, np.float32)
    bw = np.empty(S * S, np.float32)
    b2 = np.empty(S * S, np.float32)
    for k in range(n_c):
        _zero_filled(cells[k], av, aw, a2)
        n_cell = 0.0
        for y in range(s * s):
            n_cell += aw[y]
        for t in range(n_t):
            _zero_filled(windows[t, k], bv, bw, b2)
            for i in range(3):
                for j in range(3):
                    n = 0.0
                    sa = 0.0
                    sb = 0.0
                    saa = 0.0
                    sbb = 0.0
                    sab = 0.0
                    for y in range(s):
                        ca = y * s
                        cb = (y + i) * S + j
                        dn, da, db, daa, dbb, dab = _overlap_sums(av[ca : ca + s], aw[ca : ca + s], a2[ca : ca + s],
                                                                  bv[cb : cb + s], bw[cb : cb + s], b2[cb : cb + s])
                        n += dn
                        sa += da
                        sb += db
                        saa += daa
                        sbb += dbb
                        sab += dab
                    r = -1.0
                    if n >= 2 and n >= min_frac * n_cell:
                        va = saa - sa * sa / n
                        vb = sbb - sb * sb / n
                        if va > 1e-6 * n and vb > 1e-6 * n:
                            r = (sab - sa * sb / n) / math.sqrt(va * vb)
                    out[t, k, 3 * i + j] = r
    return out


@njit(cache=True, nogil=True, fastmath=True)
def _overlap_sums(av, aw, a2, bv, bw, b2):  # pragma: no cover - compiled
    """Sums over two aligned, equally long stretches: n, sum a, sum b, sum a^2, sum b^2, sum ab.

    Missing points hold value 0 and weight 0, so the loop has no branch;
    contiguous slices and ``fastmath`` (safe: no NaN reaches it) let LLVM
    vectorise it.
    """
    n = 0.0
    sa = 0.0
    sb = 0.0
    saa = 0.0
    sbb = 0.0
    sab = 0.0
    for i in range(av.shape[0]):
        wa = aw[i]
        wb = bw[i]
        n += wa * wb
        sa += av[i] * wb
        sb += bv[i] * wa
        saa += a2[i] * wb
        sbb += b2[i] * wa
        sab += av[i] * bv[i]
    return n, sa, sb, saa, sbb, sab


@njit(cache=True, nogil=True)
def _pearson_lag(av, aw, a2, a0, na, bv, bw, b2, b0, nb, lag, min_n):  # pragma: no cover - compiled
    """Pearson correlation of profile a with profile b shifted by ``lag`` (``a[i]`` with ``b[i - lag]``).

    ``a`` occupies ``[a0, a0 + na)`` of the packed arrays (values with
    missing points set to zero, 0/1 weights, squares), ``b`` likewise.
    Returns ``(r, n)``; ``r = -2`` when fewer than ``min_n`` points overlap
    or a side is constant there.
    """
    i0 = lag if lag > 0 else 0
    i1 = na if na < nb + lag else nb + lag
    if i1 - i0 < min_n or i1 - i0 < 3:
        return -2.0, 0.0
    ja = a0 + i0
    jb = b0 + i0 - lag
    m = i1 - i0
    n, sa, sb, saa, sbb, sab = _overlap_sums(av[ja : ja + m], aw[ja : ja + m], a2[ja : ja + m],
                                             bv[jb : jb + m], bw[jb : jb + m], b2[jb : jb + m])
    if n < min_n or n < 3.0:
        return -2.0, n
    va = saa - sa * sa / n
    vb = sbb - sb * sb / n
    if va <= 1e-12 * n or vb <= 1e-12 * n:
        return -2.0, n
    return (sab - sa * sb / n) / math.sqrt(va * vb), n


@njit(cache=True, nogil=True)
def profile_ccf_pairs(fv, fw, f2, foff, flen, fcnt, cv, cw, c2, coff, clen,
                      pa, pb, factor, min_frac, min_n_abs, n_peaks,
                      out_r, out_lag, out_n):  # pragma: no cover - compiled
    """CCF maximum over lag for each requested pair of packed profiles, coarse to fine.

    Profiles are packed end to end: profile ``p`` occupies
    ``[foff[p], foff[p] + flen[p])`` of the fine arrays (``fv`` values with
    missing set to 0, ``fw`` 0/1 weights, ``f2`` squares) and
    ``[coff[p], coff[p] + clen[p])`` of the coarse ones (block means over
    ``factor`` samples); ``fcnt[p]`` counts its measured points. For pair
    ``k`` (profiles ``pa[k]``, ``pb[k]``), every coarse lag is scored, the
    ``n_peaks`` best local maxima are refined over the fine lags they
    cover, and the best fine result is written to ``out_r[k]`` (or -2 when
    no lag overlaps enough), ``out_lag[k]`` (fine samples, ``a[i]`` with
    ``b[i - lag]``) and ``out_n[k]`` (points that overlapped). A lag counts
    when at least ``max(min_n_abs, min_frac * min(fcnt[a], fcnt[b]))``
    measured points overlap. With ``factor == 1`` the coarse level is the
    fine one and the search is exhaustive.
    """
    n_pairs = pa.shape[0]
    max_c = 0
    for p in range(clen.shape[0]):
        if clen[p] > max_c:
            max_c = clen[p]
    buf = np.empty(2 * max_c + 1, np.float64)
    peaks = np.empty(n_peaks, np.int64)
    for k in range(n_pairs):
        a = pa[k]
        b = pb[k]
        need = min_frac * min(fcnt[a], fcnt[b])
        if need < min_n_abs:
            need = min_n_abs
        out_r[k] = -2.0
        out_lag[k] = 0
        out_n[k] = 0.0
        if fcnt[a] < need or fcnt[b] < need:
            continue
        nca = clen[a]
        ncb = clen[b]
        need_c = need / factor if factor > 1 else need
        lo = -(ncb - 1)
        n_l = nca + ncb - 1
        for t in range(n_l):
            r, _ = _pearson_lag(cv, cw, c2, coff[a], nca, cv, cw, c2, coff[b], ncb, lo + t, need_c)
            buf[t] = r
        # the n_peaks strongest local maxima of the coarse correlation
        n_found = 0
        for _ in range(n_peaks):
            best = -1.5
            bi = -1
            for t in range(n_l):
                v = buf[t]
                if v <= best:
                    continue
                if t > 0 and buf[t - 1] > v:
                    continue
                if t < n_l - 1 and buf[t + 1] > v:
                    continue
                taken = False
                for u in range(n_found):
                    if abs(peaks[u] - t) <= 1:
                        taken = True
                if not taken:
                    best = v
                    bi = t
            if bi < 0:
                break
            peaks[n_found] = bi
            n_found += 1
        best_r = -2.0
        best_lag = 0
        best_n = 0.0
        if factor == 1:
            if n_found > 0:
                t = peaks[0]
                best_r = buf[t]
                best_lag = lo + t
                _, best_n = _pearson_lag(fv, fw, f2, foff[a], flen[a], fv, fw, f2, foff[b], flen[b], best_lag, need)
        else:
            for q in range(n_found):
                centre = (lo + peaks[q]) * factor
                for lag in range(centre - factor, centre + factor + 1):
                    r, n = _pearson_lag(fv, fw, f2, foff[a], flen[a], fv, fw, f2, foff[b], flen[b], lag, need)
                    if r > best_r:
                        best_r = r
                        best_lag = lag
                        best_n = n
        out_r[k] = best_r
        out_lag[k] = best_lag
        out_n[k] = best_n


@njit(cache=True, nogil=True)
def gather_windows(images, tops, out):  # pragma: no cover - compiled
    """Square windows cut from a stack of images, NaN where they leave the image.

    ``images`` (n_t, H, W); ``tops`` (n_t, n_c, 2) int64, the (row, col) of
    each window's top-left corner in image ``t``; ``out`` (n_t, n_c, S, S)
    receives the windows.
    """
    n_t, n_c, S = out.shape[0], out.shape[1], out.shape[2]
    H, W = images.shape[1], images.shape[2]
    for t in range(n_t):
        for k in range(n_c):
            y0 = tops[t, k, 0]
            x0 = tops[t, k, 1]
            for y in range(S):
                yy = y0 + y
                for x in range(S):
                    xx = x0 + x
                    if yy >= 0 and yy < H and xx >= 0 and xx < W:
                        out[t, k, y, x] = images[t, yy, xx]
                    else:
                        out[t, k, y, x] = np.nan


@njit(cache=True, nogil=True)
def cell_best_offsets(sums, n_cell, o, out):  # pragma: no cover - compiled
    """Best offset of each cell in its region from the six masked-correlation sums.

    ``sums`` (6, n_t, n_c, R, R) float32 holds, at offset ``(y, x)`` of the
    cell in its region (``y, x < o``), the overlap count and the sums of
    cell, cell squared, region, region squared and cell times region over
    the overlap (Padfield 2012), in that order; ``n_cell`` (n_c,) the
    cell's measured points. ``out`` (n_t, n_c) receives ``y * o + x`` of
    the highest masked NCC, the first in row order among equals; an offset
    where fewer than half the cell's points overlap, or a side is constant,
    scores -1. Float32 arithmetic in the order of the numpy expressions it
    replaces, so the scores are the same to the bit.
    """
    n_t, n_c = sums.shape[1], sums.shape[2]
    tiny = np.float32(1e-6)
    for t in range(n_t):
        for k in range(n_c):
            need = 0.5 * n_cell[k]
            best = np.float32(-2.0)
            bi = 0
            for y in range(o):
                for x in range(o):
                    n = np.float32(np.rint(sums[0, t, k, y, x]))
                    c = np.float32(-1.0)
                    if n >= need:
                        sc = sums[1, t, k, y, x]
                        sr = sums[3, t, k, y, x]
                        num = sums[5, t, k, y, x] - sc * sr / n
                        den = (sums[2, t, k, y, x] - sc * sc / n) * (sums[4, t, k, y, x] - sr * sr / n)
                        if den > tiny * n * n:
                            c = num / np.float32(math.sqrt(den))
                    if c > best:
                        best = c
                        bi = y * o + x
            out[t, k] = bi
    return out
