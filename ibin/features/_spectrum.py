"""Rotation-invariant surface signatures from the polar power spectrum.

The power spectrum of a surface does not change when the surface is shifted
and turns with it when the surface is rotated (the Fourier-Mellin idea,
Reddy & Chatterji 1996). Averaged into bins of log spatial frequency and
orientation, it becomes a small polar image in which a rotation of the
cartridge case is a circular shift along the orientation axis. ibin keeps
that image for two jobs:

* rotation hypotheses for the re-rank: the circular cross-correlation of two
  polar spectra peaks at their relative rotation (modulo 180°);
* the index descriptor: per frequency ring, the first orientation harmonics
  of the polar spectrum, each harmonic's phase measured against the phase of
  the same harmonic summed over all rings. A rotation adds the same phase to
  every ring's harmonic, so the descriptor is rotation invariant, but unlike
  harmonic magnitudes alone it keeps how the rings are oriented relative to
  each other.

References
----------
B. S. Reddy, B. N. Chatterji, "An FFT-based technique for translation,
rotation, and scale-invariant image registration", IEEE Trans. Image
Processing 5(8):1266-1271, 1996. doi:10.1109/83.506761
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import fft, ndimage

__all__ = ["polar_spectrum", "spectrum_descriptor", "rotation_hypotheses", "rotation_hypotheses_many"]


def polar_spectrum(
    surface: np.ndarray,
    pixel_um: float,
    *,
    short_wavelength_um: float,
    long_wavelength_um: float,
    n_rings: int = 16,
    n_orientations: int = 64,
    taper_um: float = 50.0,
) -> np.ndarray:
    """Log power spectrum of a masked surface in (frequency ring, orientation) bins.

    Parameters
    ----------
    surface : ndarray (rows, cols)
        Band-passed surface, NaN outside the region of interest.
    pixel_um : float
        Grid spacing in micrometres.
    short_wavelength_um, long_wavelength_um : float
        Wavelength range covered by the rings (log-spaced).
    n_rings, n_orientations : int
        Number of frequency rings and of orientation bins over 180°.
    taper_um : float
        Width of the smooth taper applied at the edges of the region, which
        keeps the region's outline out of the spectrum.

    Returns
    -------
    ndarray (n_rings, n_orientations), float32
        Log mean power per bin with each ring's mean over orientation
        removed (so the radial profile, which depends on the instrument,
        does not enter); orientation bin ``j`` covers ``[j, j + 1) * 180° /
        n_orientations`` measured counter-clockwise from the +x axis with y
        pointing down the rows.
    """
    from ._kernels_nb import polar_power_bins

    v = np.asarray(surface, dtype=np.float64)
    m = np.isfinite(v)
    if m.sum() < 16:
        raise ValueError("too few measured points for a spectrum")
    sig = max(taper_um / pixel_um / 2.0, 0.5)
    w = ndimage.gaussian_filter(m.astype(np.float64), sig) * m
    x = np.where(m, v, 0.0) * w
    rows, cols = x.shape
    # sample the spectrum finely enough that the longest wavelength's ring
    # holds several points per orientation bin
    need = int(math.ceil(2.0 * long_wavelength_um / pixel_um * n_orientations / (2 * math.pi)))
    n = fft.next_fast_len(max(rows, cols, need, 128), real=True)
    F = fft.rfft2(x, (n, n), workers=1)
    power = (F.real**2 + F.imag**2).astype(np.float64)
    fy = np.fft.fftfreq(n, d=pixel_um)
    fx = np.fft.rfftfreq(n, d=pixel_um)
    # y grows down the rows; orientation is measured with y up so that a
    # counter-clockwise rotation of the surface shifts the bins forward
    acc, wts = polar_power_bins(
        np.ascontiguousarray(power), np.ascontiguousarray(-fy), np.ascontiguousarray(fx),
        math.log(1.0 / long_wavelength_um), math.log(1.0 / short_wavelength_um), n_rings, n_orientations,
    )
    mean = acc / np.maximum(wts, 1e-12)
    floor = max(float(mean[wts > 0].mean()) * 1e-9, 1e-30) if (wts > 0).any() else 1e-30
    P = np.log(mean + floor)
    P[wts <= 0] = np.nan
    P = P - np.nanmean(P, axis=1, keepdims=True)
    return np.nan_to_num(P, nan=0.0).astype(np.float32)


def spectrum_descriptor(P: np.ndarray, *, harmonics: int = 8) -> np.ndarray:
    """Rotation-invariant descriptor from a polar spectrum (L2-normalised float32).

    For each ring ``k`` and orientation harmonic ``m = 1..harmonics`` the
    Fourier coefficient ``F[k, m]`` of the ring is rotated by the phase of
    ``sum_k F[k, m]``; real and imaginary parts are concatenated. The inner
    product of two descriptors is a cosine similarity in [-1, 1].
    """
    P = np.asarray(P, dtype=np.float64)
    if harmonics >= P.shape[1] // 2:
        raise ValueError("harmonics must be below half the number of orientation bins")
    F = np.fft.rfft(P, axis=1)[:, 1 : harmonics + 1]
    s = F.sum(axis=0)
    ref = np.where(np.abs(s) > 0, np.conj(s) / np.maximum(np.abs(s), 1e-300), 1.0)
    G = F * ref[None, :]
    d = np.concatenate([G.real.ravel(), G.imag.ravel()])
    nrm = np.linalg.norm(d)
    return (d / nrm if nrm > 0 else d).astype(np.float32)


def rotation_hypotheses(P_a: np.ndarray, P_b: np.ndarray, *, count: int = 3) -> list[tuple[float, float]]:
    """Relative rotations suggested by two polar spectra.

    Returns up to ``count`` ``(rotation_deg, strength)`` pairs, strongest
    first, where rotating surface ``b`` counter-clockwise by
    ``rotation_deg`` (or by ``rotation_deg + 180``: the spectrum cannot tell
    them apart) best matches the orientation structure of ``a``. Strength is
    the normalised circular cross-correlation at the peak.
    """
    return rotation_hypotheses_many(np.asarray(P_a)[None], P_b, count=count)[0]


def rotation_hypotheses_many(P_as: np.ndarray, P_b: np.ndarray, *, count: int | Sequence[int] = 3
                             ) -> list[list[tuple[float, float]]]:
    """:func:`rotation_hypotheses` of each spectrum of a stack ``P_as`` (n, rings, bins) against ``P_b``.

    One batch of FFTs for all; ``count`` may differ per spectrum.
    """
    a = np.asarray(P_as, dtype=np.float64)
    b = np.asarray(P_b, dtype=np.float64)
    n = a.shape[2]
    counts = [count] * len(a) if isinstance(count, (int, np.integer)) else list(count)
    b = b - b.mean()
    bb = (b * b).sum()
    Fb = np.conj(np.fft.rfft(b, axis=1))
    step = 180.0 / n
    ac = np.stack([x - x.mean() for x in a]) if len(a) else a
    corr = np.fft.irfft(np.fft.rfft(ac, axis=2) * Fb[None], n, axis=2).sum(axis=1)
    corr /= np.array([math.sqrt(float((ai * ai).sum() * bb)) or 1.0 for ai in ac])[:, None]
    # local maxima of the circular correlations
    is_peak = (corr >= np.roll(corr, 1, axis=1)) & (corr >= np.roll(corr, -1, axis=1))
    out = []
    for c, m, k in zip(corr, is_peak, counts):
        peaks = np.flatnonzero(m)  # strongest first, below
        hyp: list[tuple[float, float]] = []
        for i in peaks[np.argsort(-c[peaks], kind="stable")][:k].tolist():
            # parabolic refinement of the peak
            y0, y1, y2 = c[i - 1], c[i], c[(i + 1) % n]
            d = y0 - 2 * y1 + y2
            off = 0.5 * (y0 - y2) / d if d < 0 else 0.0
            hyp.append((((i + off) * step) % 180.0, float(y1)))
        out.append(hyp)
    return out
