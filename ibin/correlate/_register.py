"""Areal registration of two prepared surfaces: rotation (full circle) and translation.

Coarse to fine, as in the NIST and NFI implementations:

1. **sweep** on a 4x coarser grid (50 µm/px for the default 12.5 µm
   canonical grid): masked NCC at every translation for rotations over the
   full circle in ``sweep_step_deg`` steps;
2. **refine** the best few distinct rotations on the same grid in
   ``refine_step_deg`` steps;
3. **register** the two best with masked NCC (Padfield 2012) on a 2x
   coarser grid, in half-steps;
4. the winner's areal correlation (Pearson over the overlap) is measured on
   the canonical grid.

The rotation hypotheses of the polar power spectra (see
:func:`ibin.features.rotation_hypotheses`) join the sweep's candidates, so a
peak that falls between sweep steps is not lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from scipy import fft

from ..features._filters import block_mean
from ._ncc import FixedSpectra, fft_shape, inverse_near_zero, masked_ncc, rotate_stack, shift_window

__all__ = ["Pyramid", "Registration", "RegistrationParams", "register", "pearson_at"]


@dataclass(frozen=True)
class RegistrationParams:
    """Parameters of the areal registration (µm and degrees).

    Attributes
    ----------
    sweep_step_deg : float
        Rotation step of the full-circle sweep on the coarsest grid.
        5° as in scratch-core's ``compare_surfaces``; on a 50 µm grid a
        2.5° error moves a point 1.5 mm from the centre by 65 µm, about one
        pixel, so the true peak is not missed.
    refine_step_deg, refine_span_deg : float
        Step and half-width of the rotation refinement around each
        candidate on the middle grid.
    candidates : int
        Distinct rotations carried from the sweep to the refinement.
    max_shift_um : float
        Largest translation searched (both axes).
    min_overlap : float
        Smallest overlap scored, as a fraction of the smaller region.
    """

    sweep_step_deg: float = 5.0
    refine_step_deg: float = 1.25
    refine_span_deg: float = 2.5
    candidates: int = 3
    max_shift_um: float = 1000.0
    min_overlap: float = 0.5


@dataclass(frozen=True)
class Registration:
    """Rigid alignment of a moving surface onto a fixed one.

    ``rotation_deg`` is the counter-clockwise rotation (rows pointing down,
    as the surface is displayed) of the moving grid about its centre, and
    ``shift_px`` the translation (rows, cols) on the canonical grid that
    then brings it onto the fixed grid. ``ccf`` is the masked NCC of the
    overlap on the canonical grid; ``overlap`` the fraction of the smaller
    region that overlaps.
    """

    rotation_deg: float
    shift_px: tuple[float, float]
    ccf: float
    overlap: float


class Pyramid:
    """A prepared surface on the canonical grid and on 2x and 4x coarser grids.

    The canonical grid is padded with NaN to a multiple of 4 so that all
    three grids share their centre exactly. :meth:`wide` gives the canonical
    and 2x grids again, widened so that they can be turned about their centre
    by any angle without losing a measured point (for the congruent matching
    cells, which turn one surface on a grid of the same shape: a region that
    is longer than wide, or fills a corner of its box, would otherwise lose
    cells at some rotations).
    """

    def __init__(self, surface: np.ndarray, pixel_um: float):
        s = np.asarray(surface, dtype=np.float32)
        h, w = s.shape
        H, W = -(-h // 4) * 4, -(-w // 4) * 4
        pad = np.full((H, W), np.nan, np.float32)
        pad[:h, :w] = s
        self.pixel_um = float(pixel_um)
        self.levels = {1: pad, 2: _downsample(pad, 2), 4: _downsample(pad, 4)}

    def count(self, level: int) -> int:
        return int(np.isfinite(self.levels[level]).sum())

    def wide(self) -> tuple[np.ndarray, np.ndarray, tuple[int, int]]:
        """The canonical and 2x grids widened to turn, and where the canonical grid's corner lies on them.

        Returns ``(grid, grid_2x, (rows, cols))``: every measured point lies
        within the widened grid at any rotation about its centre; the offset
        is even, so ``grid_2x`` holds the same 2 x 2 means as ``levels[2]``.
        """
        # made anew at each call (~0.3 ms), not kept: a search's caches hold thousands of pyramids
        g = self.levels[1]
        h, w = g.shape
        yy, xx = np.nonzero(np.isfinite(g))
        reach = float(np.sqrt(((yy - (h - 1) / 2.0) ** 2 + (xx - (w - 1) / 2.0) ** 2).max())) if yy.size else 0.0
        side = int(math.ceil(2.0 * reach)) + 4  # a pixel to spare, and the even offset's rounding
        H, W = -(-max(h, side) // 4) * 4, -(-max(w, side) // 4) * 4
        oy, ox = (H - h) // 4 * 2, (W - w) // 4 * 2
        wide = np.full((H, W), np.nan, np.float32)
        wide[oy : oy + h, ox : ox + w] = g
        # the offset is even: the 2 x 2 means are levels[2]'s, placed (no second pass over the grid)
        g2 = self.levels[2]
        wide2 = np.full((H // 2, W // 2), np.nan, np.float32)
        wide2[oy // 2 : oy // 2 + g2.shape[0], ox // 2 : ox // 2 + g2.shape[1]] = g2
        return wide, wide2, (oy, ox)


def _downsample(v: np.ndarray, f: int) -> np.ndarray:
    return block_mean(v, f)


def _best_shifts(c: np.ndarray, win: np.ndarray, sy: np.ndarray, sx: np.ndarray):
    k = c.shape[0]
    cc = np.where(win[None], c, -1.0).reshape(k, -1)
    idx = cc.argmax(axis=1)
    W = c.shape[2]
    return cc[np.arange(k), idx], sy[idx // W], sx[idx % W]


def _search(fixed: np.ndarray, moving: np.ndarray, angles: np.ndarray, max_shift_px: int, min_overlap_px: float):
    shape = fft_shape(fixed.shape, moving.shape, max_shift_px)
    fs = FixedSpectra(fixed, shape)
    rot = rotate_stack(moving, angles)
    c, _ = masked_ncc(fs, rot, min_overlap_px=min_overlap_px, zero_mean=True)
    win, sy, sx = shift_window(shape, max_shift_px)
    return _best_shifts(c, win, sy, sx)


def _sweep(fixed: np.ndarray, moving: np.ndarray, angles: np.ndarray, max_shift_px: int) -> np.ndarray:
    """Cross-correlation maximum per rotation, normalised by the whole surfaces' energies.

    One forward and one inverse FFT per rotation: the cheap score that ranks
    rotations for the refinement (the CCF of cmcR's cell comparison). It
    favours large overlaps, as a true alignment of two breech faces has.
    """
    import cv2

    shape = fft_shape(fixed.shape, moving.shape, max_shift_px)
    f = np.nan_to_num(np.asarray(fixed, np.float32), nan=0.0)
    g = np.nan_to_num(np.asarray(moving, np.float32), nan=0.0)
    h, w = g.shape
    centre = ((w - 1) / 2.0, (h - 1) / 2.0)
    rot = np.empty((len(angles), h, w), np.float32)
    for i, a in enumerate(angles):
        cv2.warpAffine(g, cv2.getRotationMatrix2D(centre, float(a), 1.0), (w, h), dst=rot[i], flags=cv2.INTER_LINEAR, borderValue=0.0)
    F = fft.rfft2(f, shape, workers=1)
    G = fft.rfft2(rot, shape, workers=1)
    best = inverse_near_zero(F[None] * np.conj(G), shape, max_shift_px).max(axis=(1, 2))
    e = np.sqrt(float(np.einsum("ij,ij->", f, f)) * np.einsum("kij,kij->k", rot, rot))
    return (best / np.maximum(e, 1e-12)).astype(np.float32)


def _distinct(angles: np.ndarray, scores: np.ndarray, count: int, sep_deg: float) -> list[float]:
    picks: list[float] = []
    for i in np.argsort(-scores):
        a = float(angles[i])
        if all(abs((a - p + 180.0) % 360.0 - 180.0) >= sep_deg for p in picks):
            picks.append(a)
        if len(picks) == count:
            break
    return picks


def _shift_image(v: np.ndarray, sy: int, sx: int) -> np.ndarray:
    """Translate an image by whole pixels (rows, cols), filling with NaN; the shape grows to keep everything."""
    h, w = v.shape
    out = np.full((h + abs(sy), w + abs(sx)), np.nan, np.float32)
    out[max(sy, 0) : max(sy, 0) + h, max(sx, 0) : max(sx, 0) + w] = v
    return out


def register(
    fixed: Pyramid,
    moving: Pyramid,
    params: RegistrationParams | None = None,
    *,
    hints_deg: tuple[float, ...] = (),
) -> Registration:
    """Find the rotation and translation that best align ``moving`` onto ``fixed``.

    Parameters
    ----------
    fixed, moving : Pyramid
    params : RegistrationParams, optional
    hints_deg : tuple of float
        Extra rotation candidates (e.g. from the polar spectra); each is
        refined like the sweep's own candidates.

    Returns
    -------
    Registration
    """
    p = params or RegistrationParams()
    px = fixed.pixel_um
    s4 = int(math.ceil(p.max_shift_um / (4 * px)))
    # 1. full-circle sweep on the coarsest grid
    sweep = np.arange(0.0, 360.0, p.sweep_step_deg)
    v4 = _sweep(fixed.levels[4], moving.levels[4], sweep, s4)
    cands = _distinct(sweep, v4, p.candidates, 2 * p.sweep_step_deg)
    for h in hints_deg:
        if all(abs((h - c + 180.0) % 360.0 - 180.0) > p.refine_span_deg for c in cands):
            cands.append(float(h) % 360.0)
    # 2. refine every candidate on the coarsest grid
    offs = np.arange(-p.refine_span_deg, p.refine_span_deg + 1e-9, p.refine_step_deg)
    angles = np.concatenate([c + offs for c in cands])
    r4 = _sweep(fixed.levels[4], moving.levels[4], angles, s4)
    # 3. the two best: masked NCC on the middle grid, translation searched
    # near the coarse result
    order = _distinct(angles, r4, 2, p.refine_span_deg)
    n2 = p.min_overlap * min(fixed.count(2), moving.count(2))
    s2 = int(math.ceil(p.max_shift_um / (2 * px)))
    fine_offs = np.array([-0.5, 0.0, 0.5]) * p.refine_step_deg
    # both rotations' half-steps in one search (the fixed grid's spectra once); the first best wins
    fine = np.concatenate([a + fine_offs for a in order])
    v2, sy2, sx2 = _search(fixed.levels[2], moving.levels[2], fine, s2, n2)
    k = int(np.argmax(v2))
    ncc2, theta, sy2, sx2 = float(v2[k]), float(fine[k]), int(sy2[k]), int(sx2[k])
    theta %= 360.0
    # 4. the areal correlation on the canonical grid at that alignment
    shift = (2.0 * sy2, 2.0 * sx2)
    ccf, overlap = pearson_at(fixed.levels[1], moving.levels[1], theta, shift)
    if not np.isfinite(ccf):
        ccf, overlap = ncc2, 0.0
    return Registration(theta, shift, float(ccf), float(overlap))


def pearson_at(fixed: np.ndarray, moving: np.ndarray, rotation_deg: float, shift_px: tuple[float, float]) -> tuple[float, float]:
    """Pearson correlation of the overlap after rotating and shifting ``moving`` (whole pixels).

    Returns ``(ccf, overlap)`` with ``overlap`` the overlapping fraction of
    the smaller measured region; ``(nan, 0)`` when fewer than 16 points overlap.
    """
    rot = rotate_stack(moving, [rotation_deg])[0]
    sy, sx = int(round(shift_px[0])), int(round(shift_px[1]))
    H, W = fixed.shape
    h, w = rot.shape
    # fixed[y, x] against rot[y - sy, x - sx]
    y0, y1 = max(0, sy), min(H, h + sy)
    x0, x1 = max(0, sx), min(W, w + sx)
    if y1 <= y0 or x1 <= x0:
        return float("nan"), 0.0
    a = fixed[y0:y1, x0:x1]
    b = rot[y0 - sy : y1 - sy, x0 - sx : x1 - sx]
    m = np.isfinite(a) & np.isfinite(b)
    n = int(m.sum())
    if n < 16:
        return float("nan"), 0.0
    a, b = a[m].astype(np.float64), b[m].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    den = math.sqrt(float((a * a).sum() * (b * b).sum()))
    small = min(int(np.isfinite(fixed).sum()), int(np.isfinite(moving).sum()))
    return (float((a * b).sum() / den) if den > 0 else float("nan")), n / max(small, 1)


def _search_near(fixed, moving, angles, shift, radius, min_overlap_px, *, overlap=False):
    """Like :func:`_search`, but only within ``radius`` pixels of a predicted shift (rows, cols)."""
    sy, sx = shift
    rot = rotate_stack(moving, angles)
    # pre-translate the moving stack so the predicted shift becomes zero
    stack = np.stack([_shift_image(r, sy, sx) for r in rot])
    oy, ox = min(sy, 0), min(sx, 0)  # the grown grid's origin moved by these
    shape = fft_shape(fixed.shape, stack.shape[1:], radius + abs(oy) + abs(ox))
    fs = FixedSpectra(fixed, shape)
    c, n = masked_ncc(fs, stack, min_overlap_px=min_overlap_px, zero_mean=False)
    win, ssy, ssx = shift_window(shape, 10**9)
    # index shift s scores the true shift s + max(sy, 0) = sy + (s - oy): residual t = s - oy
    ty, tx = ssy - oy, ssx - ox
    near = (np.abs(ty)[:, None] <= radius) & (np.abs(tx)[None, :] <= radius)
    k = c.shape[0]
    cc = np.where(near[None], c, -1.0).reshape(k, -1)
    idx = cc.argmax(axis=1)
    W = c.shape[2]
    vals = cc[np.arange(k), idx]
    out_y = ty[idx // W] + sy
    out_x = tx[idx % W] + sx
    if overlap:
        return vals, out_y, out_x, n.reshape(k, -1)[np.arange(k), idx]
    return vals, out_y, out_x
