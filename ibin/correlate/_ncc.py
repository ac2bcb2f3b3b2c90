"""Masked normalised cross-correlation through FFTs.

Missing data (NaN) never enters a score: at every shift the correlation is
the Pearson correlation of the points both surfaces measured there
(Padfield 2012). The fixed image's spectra are computed once and reused
for every rotated copy of the moving image, and all copies are transformed
in one batched FFT call.

Shift convention: ``ncc[k, sy, sx]`` (indices modulo the FFT shape) scores
``fixed[y, x]`` against ``moving[k][y - sy, x - sx]``, i.e. the moving image
translated by ``+(sy, sx)`` pixels.

References
----------
D. Padfield, "Masked object registration in the Fourier domain", IEEE
Trans. Image Processing 21(5):2706-2718, 2012. doi:10.1109/TIP.2011.2181402
"""

from __future__ import annotations

import numpy as np
from scipy import fft

__all__ = ["FixedSpectra", "masked_ncc", "fft_shape", "rotate_stack", "shift_window", "inverse_near_zero"]


def fft_shape(fixed_shape: tuple[int, int], moving_shape: tuple[int, int], max_shift_px: int) -> tuple[int, int]:
    """Smallest fast FFT shape that holds every shift up to ``max_shift_px`` without wrap-around."""
    out = []
    for a, b in zip(fixed_shape, moving_shape):
        need = min(a + b - 1, max(a, b) + max_shift_px)
        out.append(fft.next_fast_len(need, real=True))
    return tuple(out)  # type: ignore[return-value]


class FixedSpectra:
    """Spectra of the fixed (reference) image for :func:`masked_ncc`.

    Parameters
    ----------
    values : ndarray (rows, cols)
        NaN = missing.
    shape : (int, int)
        FFT shape (see :func:`fft_shape`).
    """

    def __init__(self, values: np.ndarray, shape: tuple[int, int]):
        v = np.asarray(values, dtype=np.float32)
        m = np.isfinite(v)
        f = np.where(m, v, 0.0).astype(np.float32)
        self.shape = tuple(shape)
        self.image_shape = v.shape
        self.F = fft.rfft2(f, self.shape, workers=1)
        self.F2 = fft.rfft2(f * f, self.shape, workers=1)
        self.M = fft.rfft2(m.astype(np.float32), self.shape, workers=1)
        self.count = int(m.sum())


def masked_ncc(
    fixed: FixedSpectra,
    moving: np.ndarray,
    *,
    min_overlap_px: float,
    zero_mean: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Masked NCC of a fixed image against a stack of moving images, at every shift.

    Parameters
    ----------
    fixed : FixedSpectra
    moving : ndarray (k, rows, cols) or (rows, cols)
        NaN = missing.
    min_overlap_px : float
        Shifts where fewer points overlap score -1.
    zero_mean : bool
        Skip the local-mean terms (two fewer inverse FFTs). Exact when both
        surfaces have zero mean over every overlap; band-passed surfaces
        nearly do over large overlaps, which is where the coarse search uses
        it.

    Returns
    -------
    ncc : ndarray (k, H, W), float32
        Correlation at every circular shift, -1 where the overlap is too small.
    overlap : ndarray (k, H, W), float32
        Number of overlapping points.
    """
    g = np.asarray(moving, dtype=np.float32)
    if g.ndim == 2:
        g = g[None]
    mg = np.isfinite(g)
    g = np.where(mg, g, 0.0).astype(np.float32)
    shape = fixed.shape
    G = np.conj(fft.rfft2(g, shape, workers=1))
    GM = np.conj(fft.rfft2(mg.astype(np.float32), shape, workers=1))
    G2 = np.conj(fft.rfft2(g * g, shape, workers=1))

    def inv(x):
        return fft.irfft2(x, shape, workers=1)

    n = np.rint(inv(fixed.M * GM))
    sfg = inv(fixed.F * G)
    sf2 = inv(fixed.F2 * GM)
    sg2 = inv(fixed.M * G2)
    ok = n >= max(min_overlap_px, 2.0)
    nn = np.where(ok, n, 1.0)
    if zero_mean:
        num = sfg
        den = sf2 * sg2
    else:
        sf = inv(fixed.F * GM)
        sg = inv(fixed.M * G)
        num = sfg - sf * sg / nn
        den = (sf2 - sf * sf / nn) * (sg2 - sg * sg / nn)
    good = ok & (den > 1e-6 * nn * nn)
    c = np.full(num.shape, -1.0, dtype=np.float32)
    c[good] = num[good] / np.sqrt(den[good])
    np.clip(c, -1.0, 1.0, out=c)
    return c, n.astype(np.float32)


def shift_window(shape: tuple[int, int], max_shift_px: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mask of circular shift indices within ``max_shift_px``, and the signed shifts of rows and columns."""
    H, W = shape
    sy = np.fft.fftfreq(H, 1.0 / H).round().astype(int)
    sx = np.fft.fftfreq(W, 1.0 / W).round().astype(int)
    win = (np.abs(sy)[:, None] <= max_shift_px) & (np.abs(sx)[None, :] <= max_shift_px)
    return win, sy, sx


def inverse_near_zero(spectra: np.ndarray, shape: tuple[int, int], max_shift_px: int) -> np.ndarray:
    """``irfft2(spectra, shape)`` only at the circular shifts within ``max_shift_px`` of zero.

    Returns ``(k, 2 s + 1, 2 s + 1)``: rows and columns ``0 .. s`` and then
    ``-s .. -1`` (``s = max_shift_px``; all of them along a side that
    ``2 s + 1`` reaches). A 2-D inverse transform is an inverse FFT along
    the columns and then a real one along the rows; only the rows of the
    shifts wanted go to the second step, which saves about a quarter of the
    work when they are half of them. Unnormalised in both steps and scaled once at the end, as
    ``irfft2`` itself does (the same values to the bit with scipy's
    pocketfft, on this project's machines).
    """
    H, W = shape
    s = int(max_shift_px)
    rows = np.r_[0 : s + 1, H - s : H] if 2 * s + 1 < H else np.arange(H)
    cols = np.r_[0 : s + 1, W - s : W] if 2 * s + 1 < W else np.arange(W)
    half = fft.ifft(spectra, n=H, axis=-2, workers=1, norm="forward")[..., rows, :]
    return fft.irfft(half, n=W, axis=-1, workers=1, norm="forward")[..., cols] * np.float32(1.0 / (H * W))


def rotate_stack(values: np.ndarray, angles_deg, *, interpolation: str = "linear") -> np.ndarray:
    """Copies of an image rotated counter-clockwise (as displayed, rows down) about its centre.

    The grid keeps its shape; points rotated in from outside are NaN, and a
    rotated point is missing when any point it interpolates from is.
    """
    import cv2

    v = np.asarray(values, dtype=np.float32)
    m = np.isfinite(v)
    f = np.where(m, v, 0.0).astype(np.float32)
    mf = m.astype(np.float32)
    h, w = v.shape
    centre = ((w - 1) / 2.0, (h - 1) / 2.0)
    flag = cv2.INTER_LINEAR if interpolation == "linear" else cv2.INTER_NEAREST
    out = np.empty((len(angles_deg), h, w), np.float32)
    for i, a in enumerate(angles_deg):
        A = cv2.getRotationMatrix2D(centre, float(a), 1.0)
        r = cv2.warpAffine(f, A, (w, h), flags=flag, borderValue=0.0)
        rm = cv2.warpAffine(mf, A, (w, h), flags=flag, borderValue=0.0)
        r[rm < 0.999] = np.nan
        out[i] = r
    return out
