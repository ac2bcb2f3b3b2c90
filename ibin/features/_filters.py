"""Surface filters in physical units: NaN-aware Gaussian filters, levelling, resampling.

All functions take lengths in micrometres and treat ``NaN`` as missing data:
missing points never leak into measured ones, and the output is missing
exactly where the input was (unless stated otherwise).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "block_mean",
    "gaussian_sigma_px",
    "gaussian_lowpass",
    "gaussian_bandpass",
    "level_polynomial",
    "resample",
    "robust_std",
]

#: ISO 16610-21 Gaussian weighting constant, alpha = sqrt(ln 2 / pi): the filter
#: transmits 50 % of the amplitude at the cut-off wavelength.
ISO_ALPHA = math.sqrt(math.log(2.0) / math.pi)


def gaussian_sigma_px(cutoff_um: float, pixel_um: float) -> float:
    """Standard deviation (pixels) of the ISO 16610-21 Gaussian for a cut-off.

    The ISO weighting function ``s(x) = exp(-pi (x / (alpha lc))^2) / (alpha lc)``
    is a Gaussian of standard deviation ``alpha lc / sqrt(2 pi)`` (about
    ``0.187 lc``).
    """
    if cutoff_um <= 0 or pixel_um <= 0:
        raise ValueError("cutoff_um and pixel_um must be positive")
    return ISO_ALPHA * cutoff_um / math.sqrt(2.0 * math.pi) / pixel_um


def gaussian_lowpass(values: np.ndarray, pixel_um: float, cutoff_um: float, *, min_weight: float = 1e-3) -> np.ndarray:
    """ISO 16610-21 Gaussian low-pass (order 0) that ignores missing points.

    Implemented as a normalised convolution: the measured points are
    filtered, the validity mask is filtered with the same kernel, and the
    ratio is taken (Knutsson & Westin 1993), which is the zeroth-order
    Gaussian regression filter of ISO 16610-21 at the edges of missing data.

    Parameters
    ----------
    values : ndarray (rows, cols)
        Heights or intensities; ``NaN`` = missing.
    pixel_um : float
        Grid spacing in micrometres.
    cutoff_um : float
        Cut-off wavelength in micrometres (50 % transmission).
    min_weight : float
        Points whose kernel-weighted share of measured neighbours is below
        this are returned as ``NaN``.

    Returns
    -------
    ndarray of float64, NaN where the input was NaN.

    References
    ----------
    ISO 16610-21:2011, Geometrical product specifications - Filtration -
    Part 21: Linear profile filters: Gaussian filters.
    H. Knutsson, C.-F. Westin, "Normalized and differential convolution",
    CVPR 1993. doi:10.1109/CVPR.1993.341081
    """
    v = np.asarray(values, dtype=np.float64)
    m = np.isfinite(v)
    sigma = gaussian_sigma_px(cutoff_um, pixel_um)
    if sigma < 0.3:  # narrower than a pixel: nothing to remove
        return np.where(m, v, np.nan)
    num = _gauss(np.where(m, v, 0.0), sigma)
    den = _gauss(m.astype(np.float64), sigma)
    out = np.full_like(v, np.nan)
    ok = m & (den > min_weight)
    out[ok] = num[ok] / den[ok]
    return out


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian filter (zero outside the grid), kernel truncated at 3 sigma."""
    import cv2

    k = 2 * int(math.ceil(3.0 * sigma)) + 1
    return cv2.GaussianBlur(x, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)


def gaussian_bandpass(values: np.ndarray, pixel_um: float, short_cutoff_um: float, long_cutoff_um: float) -> np.ndarray:
    """Gaussian band-pass: low-pass at the short cut-off minus low-pass at the long one.

    Keeps wavelengths between ``short_cutoff_um`` (noise removed below) and
    ``long_cutoff_um`` (form and waviness removed above), the usual
    breech-face band (e.g. 40-400 µm in Song et al. 2014, 16-500 µm in
    cmcR).
    """
    if not short_cutoff_um < long_cutoff_um:
        raise ValueError("short_cutoff_um must be smaller than long_cutoff_um")
    fine = gaussian_lowpass(values, pixel_um, short_cutoff_um)
    coarse = gaussian_lowpass(values, pixel_um, long_cutoff_um)
    return fine - coarse


def robust_std(x: np.ndarray) -> float:
    """Standard deviation estimated from the median absolute deviation."""
    x = np.asarray(x, dtype=np.float64).ravel()
    if x.size > 40000:  # the MAD of a regular subsample is as good and much cheaper
        x = x[:: x.size // 20000]
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan")
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def level_polynomial(
    values: np.ndarray, *, order: int = 1, where: np.ndarray | None = None, iterations: int = 3, clip_sigma: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Remove a least-squares polynomial form, robust to outliers.

    The form (plane for ``order=1``, quadric for ``order=2``) is fitted to
    the measured points (restricted to ``where`` if given), points further
    than ``clip_sigma`` robust standard deviations from it are dropped, and
    the fit is repeated ``iterations`` times.

    Returns
    -------
    levelled : ndarray
        ``values`` minus the fitted form (NaN stays NaN).
    inliers : ndarray of bool
        The points used by the final fit (on a regular subsample of the grid).
    """
    v = np.asarray(values, dtype=np.float64)
    rows, cols = v.shape
    use = np.isfinite(v) if where is None else (np.isfinite(v) & where)
    # subsample for speed: about 10k points enter the fit
    step = max(1, int(math.sqrt(use.sum() / 10000.0)))
    sub = use[::step, ::step]
    yy, xx = np.nonzero(sub)
    x = (xx * step) / max(cols - 1, 1) - 0.5
    y = (yy * step) / max(rows - 1, 1) - 0.5
    z = v[::step, ::step][sub]

    def terms(x, y):
        t = [np.ones_like(x), x, y]
        if order >= 2:
            t += [x * x, x * y, y * y]
        return t

    n_terms = 3 if order < 2 else 6
    keep = np.ones(z.size, bool)
    coef = np.zeros(n_terms)
    for _ in range(max(1, iterations)):
        if keep.sum() < 3 * n_terms:
            break
        A = np.stack(terms(x[keep], y[keep]), axis=1)
        # normal equations: a 3 x 3 or 6 x 6 system, far cheaper than an SVD of A
        coef = np.linalg.solve(A.T @ A + 1e-12 * np.eye(n_terms), A.T @ z[keep])
        resid = z - sum(c * t for c, t in zip(coef, terms(x, y)))
        s = robust_std(resid)
        if not np.isfinite(s) or s == 0:
            break
        keep = np.abs(resid - np.median(resid)) <= clip_sigma * s
    gx = (np.arange(cols) / max(cols - 1, 1) - 0.5)[None, :]
    gy = (np.arange(rows) / max(rows - 1, 1) - 0.5)[:, None]
    form = coef[0] + coef[1] * gx + coef[2] * gy
    if order >= 2:
        form = form + coef[3] * gx * gx + coef[4] * gx * gy + coef[5] * gy * gy
    inliers = np.zeros_like(use)
    inliers[yy * step, xx * step] = keep
    return v - form, inliers


def resample(values: np.ndarray, pixel_in_um: tuple[float, float] | float, pixel_out_um: float, *, min_coverage: float = 0.5) -> np.ndarray:
    """Resample a grid to square pixels of ``pixel_out_um``, ignoring missing points.

    Downsampling averages the measured points inside each output pixel (area
    resampling, which also acts as the anti-aliasing filter); upsampling
    interpolates linearly. An output pixel is missing when less than
    ``min_coverage`` of its area was measured.

    Parameters
    ----------
    values : ndarray (rows, cols)
    pixel_in_um : float or (pixel_y_um, pixel_x_um)
        Input spacing.
    pixel_out_um : float
        Output spacing (square pixels).
    """
    import cv2

    v = np.asarray(values, dtype=np.float64)
    py, px = (pixel_in_um, pixel_in_um) if np.isscalar(pixel_in_um) else pixel_in_um
    rows, cols = v.shape
    out_rows = max(1, int(round(rows * py / pixel_out_um)))
    out_cols = max(1, int(round(cols * px / pixel_out_um)))
    if (out_rows, out_cols) == (rows, cols) and abs(px - pixel_out_um) < 1e-9 and abs(py - pixel_out_um) < 1e-9:
        return v.copy()
    m = np.isfinite(v)
    down = out_rows <= rows and out_cols <= cols
    interp = cv2.INTER_AREA if down else cv2.INTER_LINEAR
    w = cv2.resize(m.astype(np.float32), (out_cols, out_rows), interpolation=interp)
    s = cv2.resize(np.where(m, v, 0.0).astype(np.float64), (out_cols, out_rows), interpolation=interp)
    out = np.full((out_rows, out_cols), np.nan)
    ok = w >= (min_coverage if down else 0.999)
    out[ok] = s[ok] / w[ok]
    return out


def block_mean(values: np.ndarray, factor: int) -> np.ndarray:
    """Mean of each ``factor`` x ``factor`` block, scaled to unit RMS (float32).

    The grid is padded with NaN to a multiple of ``factor``; a block with
    fewer than half of its points measured is missing. Used for the coarse
    grids of the registration pyramid and of the screening stage, which
    compare correlations, so each grid is scaled to unit RMS.
    """
    v = np.asarray(values, dtype=np.float32)
    h, w = v.shape
    H, W = -(-h // factor) * factor, -(-w // factor) * factor
    if (H, W) != (h, w):
        pad = np.full((H, W), np.nan, np.float32)
        pad[:h, :w] = v
        v = pad
    m = np.isfinite(v)
    s = np.where(m, v, 0.0).reshape(H // factor, factor, W // factor, factor).sum(axis=(1, 3))
    c = m.reshape(H // factor, factor, W // factor, factor).sum(axis=(1, 3))
    out = np.full(s.shape, np.nan, np.float32)
    ok = c >= (factor * factor) / 2.0
    out[ok] = s[ok] / c[ok]
    rms = float(np.sqrt(np.nanmean(out**2))) if ok.any() else 1.0
    return (out / (rms or 1.0)).astype(np.float32)


def check_band(pixel_um: float, short_cutoff_um: float, long_cutoff_um: float) -> None:
    """Refuse a band-pass that the sampling cannot carry: need ``0 < pixel_um``, ``2 pixel_um <= short < long``."""
    if not (0 < pixel_um and 2 * pixel_um <= short_cutoff_um < long_cutoff_um):
        raise ValueError(
            "need 0 < pixel_um, 2 * pixel_um <= short_cutoff_um < long_cutoff_um "
            f"(got {pixel_um}, {short_cutoff_um}, {long_cutoff_um})"
        )
