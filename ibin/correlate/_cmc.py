"""Congruent Matching Cells (CMC) for breech-face comparisons.

The reference surface is divided into square cells. Each cell searches the
registered comparison surface on its own, over translation and a few
rotations around the registration, for its best-correlating position
(masked NCC, :mod:`ibin.correlate._ncc`). A cell is a *congruent matching
cell* when its correlation is high and its position and rotation agree with
those of the other matching cells: same-source surfaces agree because the
whole impression moved rigidly; different-source cells scatter.

Two decision rules are implemented, both with thresholds in µm and degrees:

* the original rule (Song 2013): each cell at its best rotation; congruent
  if ``ccf >= T_ccf`` and its translation and rotation are within ``T_xy``
  and ``T_theta`` of the medians over the matching cells;
* the High-CMC rule (Tong et al. 2015): per trial rotation, the cells whose
  translation agrees with that rotation's median count; the rotations whose
  count is within ``tau`` of the best must span no more than ``T_theta``,
  and then the CMCs are the union of the cells counted at those rotations;
  otherwise the original count stands.

The published thresholds are in pixels at 6.25 µm/px (cmcR defaults
``xThresh = yThresh = 20``, ``thetaThresh = 6``, ``corrThresh = 0.5``);
here they are lengths: ``T_xy = 125 µm``.

References
----------
J. Song, "Proposed NIST ballistics identification system (NBIS) based on 3D
topography measurements on correlation cells", AFTE Journal 45(2):184-194, 2013.
M. Tong, J. Song, W. Chu, "An improved algorithm of congruent matching cells
(CMC) method for firearm evidence identifications", J. Res. NIST
120:102-112, 2015. doi:10.6028/jres.120.008
J. Zemmels, S. VanderPlas, H. Hofmann, "A study in reproducibility: the
congruent matching cells algorithm and cmcR package", The R Journal, 2023.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import fft

from ._ncc import rotate_stack

__all__ = ["CMCParams", "CellResult", "CMCResult", "congruent_matching_cells"]


@dataclass(frozen=True)
class CMCParams:
    """CMC parameters (µm, degrees).

    Attributes
    ----------
    cell_um : float
        Cell side. 400 µm lies in the 0.25-0.5 mm range of Song et al.
        (2014) and near cmcR's 8 x 8 grid on Fadul (about 425 µm) and
        scratch-core's 450 µm.
    min_valid : float
        Smallest measured fraction for a cell to take part (scratch-core:
        0.35; cmcR 0.15).
    search_um : float
        How far each cell searches around its registered position: one cell
        side, as cmcR's target region of three cell sides; wide enough that
        a chance peak of a non-matching cell seldom falls within
        ``xy_threshold_um`` of the consensus.
    theta_offsets_deg : tuple of float
        Rotations tried per cell, relative to the registration (cmcR's
        3° step).
    ccf_threshold : float
        ``T_CCF`` (cmcR default and Song et al. 2018: 0.5).
    xy_threshold_um : float
        ``T_x = T_y``: 20 px at 6.25 µm/px (cmcR default) = 125 µm.
    theta_threshold_deg : float
        ``T_theta`` (cmcR default 6°).
    tau : int
        High-CMC tolerance on the per-rotation count (Tong et al. 2015: 1).
    """

    cell_um: float = 400.0
    min_valid: float = 0.35
    search_um: float = 400.0
    theta_offsets_deg: tuple[float, ...] = (-3.0, 0.0, 3.0)
    ccf_threshold: float = 0.5
    xy_threshold_um: float = 125.0
    theta_threshold_deg: float = 6.0
    tau: int = 1


@dataclass(frozen=True)
class CellResult:
    """One reference cell: where it is and where it matched best.

    ``x_um``/``y_um`` is the cell centre on the reference grid;
    ``dx_um``/``dy_um`` its best position relative to the registered one;
    ``theta_deg`` the total rotation at that position; ``congruent`` the
    final CMC decision.
    """

    x_um: float
    y_um: float
    valid: float
    ccf: float
    dx_um: float
    dy_um: float
    theta_deg: float
    congruent: bool


@dataclass(frozen=True)
class CMCResult:
    """Outcome of a CMC comparison."""

    cells: tuple[CellResult, ...]
    cmc: int
    cmc_original: int
    high_cmc_passed: bool
    theta_deg: float

    @property
    def cell_count(self) -> int:
        return len(self.cells)


def _cell_grid(valid: np.ndarray, cs: int, min_valid: float) -> list[tuple[int, int, float]]:
    rows = np.flatnonzero(valid.any(axis=1))
    cols = np.flatnonzero(valid.any(axis=0))
    if rows.size == 0:
        return []
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    ny = max(1, -(-(r1 - r0) // cs))
    nx = max(1, -(-(c1 - c0) // cs))
    # grid centred on the region (cells at the edges overhang equally)
    oy = r0 + ((r1 - r0) - ny * cs) // 2
    ox = c0 + ((c1 - c0) - nx * cs) // 2
    # the grid's cells, zero outside the image, summed in one reshape
    H, W = valid.shape
    grid = np.zeros((ny * cs, nx * cs), np.int64)
    ys, xs = max(oy, 0), max(ox, 0)
    ye, xe = min(oy + ny * cs, H), min(ox + nx * cs, W)
    grid[ys - oy : ye - oy, xs - ox : xe - ox] = valid[ys:ye, xs:xe]
    frac = grid.reshape(ny, cs, nx, cs).sum(axis=(1, 3)) / float(cs * cs)
    return [(int(oy + i * cs), int(ox + j * cs), float(frac[i, j])) for i, j in zip(*np.nonzero(frac >= min_valid))]


def _rot_xy(theta_deg: float) -> np.ndarray:
    """OpenCV's counter-clockwise rotation (as displayed, rows down) acting on (x, y) vectors."""
    t = np.radians(theta_deg)
    return np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])


def _windows(images: np.ndarray, tops: np.ndarray, size: int) -> np.ndarray:
    """``size`` x ``size`` squares of ``images`` (n_t, H, W) at top-left corners ``tops`` (n_t, n_c, 2: row, col).

    Returns ``(n_t, n_c, size, size)`` float32, NaN where a square leaves its image.
    """
    from ._kernels_nb import gather_windows

    images = np.ascontiguousarray(images, dtype=np.float32)
    tops = np.ascontiguousarray(tops, dtype=np.int64)
    out = np.empty(tops.shape[:2] + (size, size), np.float32)
    gather_windows(images, tops, out)
    return out


def _best_cell_offsets(cells: np.ndarray, regions: np.ndarray, o: int) -> np.ndarray:
    """Where each cell (n_c, cs, cs) correlates best inside its regions (n_t, n_c, R, R).

    Masked NCC (Padfield 2012) of each cell at every offset in [0, o) x [0, o)
    of its region, through FFTs: the overlap count and the five sums of the
    Pearson correlation come from six products of spectra, inverted in one
    batch; a Numba kernel (:func:`~._kernels_nb.cell_best_offsets`) forms
    the correlations and keeps the best. Returns ``(n_t, n_c)`` flat offsets
    ``y * o + x``.
    """
    from ._kernels_nb import cell_best_offsets

    R = regions.shape[-1]
    mc = np.isfinite(cells)
    c0 = np.where(mc, cells, 0.0).astype(np.float32)
    mr = np.isfinite(regions)
    r0 = np.where(mr, regions, 0.0).astype(np.float32)
    shape = (R, R)
    C = np.conj(fft.rfft2(c0, shape, workers=1))[None]
    C2 = np.conj(fft.rfft2(c0 * c0, shape, workers=1))[None]
    CM = np.conj(fft.rfft2(mc.astype(np.float32), shape, workers=1))[None]
    Rr = fft.rfft2(r0, shape, workers=1)
    Rr2 = fft.rfft2(r0 * r0, shape, workers=1)
    Rm = fft.rfft2(mr.astype(np.float32), shape, workers=1)
    # count, cell, cell^2, region, region^2, cell x region
    sums = fft.irfft2(np.stack([Rm * CM, Rm * C, Rm * C2, Rr * CM, Rr2 * CM, Rr * C]), shape, workers=1)
    n_cell = mc.sum(axis=(1, 2)).astype(np.float64)
    out = np.empty(regions.shape[:2], np.int64)
    return cell_best_offsets(np.ascontiguousarray(sums, dtype=np.float32), n_cell, o, out)


def congruent_matching_cells(
    reference: np.ndarray,
    comparison: np.ndarray,
    pixel_um: float,
    *,
    rotation_deg: float,
    shift_px: tuple[float, float],
    params: CMCParams | None = None,
    reference_coarse: np.ndarray | None = None,
    comparison_coarse: np.ndarray | None = None,
) -> CMCResult:
    """Count the congruent matching cells of ``reference`` in ``comparison``.

    Each cell first searches its region, ``search_um`` around its
    registered position, on a 2x coarser grid at the registered rotation
    (masked NCC through FFTs). Then, for every trial rotation, its
    correlation is measured exactly on the given grid at the position that
    rotation predicts and at the eight neighbours.

    Parameters
    ----------
    reference, comparison : ndarray (rows, cols)
        Prepared surfaces on the same grid spacing, NaN = missing, with
        even numbers of rows and columns.
    pixel_um : float
        Grid spacing.
    rotation_deg, shift_px : float, (float, float)
        The registration of ``comparison`` onto ``reference``: rotate
        ``comparison`` about its grid centre by ``rotation_deg``
        (counter-clockwise as displayed), then shift by ``shift_px`` (rows,
        cols).
    params : CMCParams, optional
    reference_coarse, comparison_coarse : ndarray, optional
        The 2x coarser grids (2 x 2 means), if already computed.

    Returns
    -------
    CMCResult
    """
    from ._register import _downsample

    p = params or CMCParams()
    A = np.asarray(reference, dtype=np.float32)
    B = np.asarray(comparison, dtype=np.float32)
    A2 = _downsample(A, 2) if reference_coarse is None else reference_coarse
    B2 = _downsample(B, 2) if comparison_coarse is None else comparison_coarse
    cs = 2 * max(2, int(round(p.cell_um / pixel_um / 2)))  # even, so cells map onto the coarse grid
    cs2 = cs // 2
    wp2 = max(1, int(round(p.search_um / (2 * pixel_um))))
    R2 = cs2 + 2 * wp2
    cells = _cell_grid(np.isfinite(A), cs, p.min_valid)
    thetas = np.array([rotation_deg + d for d in p.theta_offsets_deg])
    if not cells:
        return CMCResult((), 0, 0, False, float(rotation_deg))
    n_c, n_t = len(cells), len(thetas)
    sy, sx = int(round(shift_px[0])), int(round(shift_px[1]))
    sy2, sx2 = int(round(shift_px[0] / 2)), int(round(shift_px[1] / 2))
    # -- coarse search at the registered rotation: the registered position of
    # reference point q in the rotated comparison is q - shift
    yx = np.array([[y, x] for y, x, _ in cells], dtype=np.int64)
    cell2 = _windows(A2[None], (yx // 2)[None], cs2)[0]
    rot2 = rotate_stack(B2, [rotation_deg])
    reg2 = _windows(rot2, (yx // 2 - np.array([sy2 + wp2, sx2 + wp2]))[None], R2)
    o2 = 2 * wp2 + 1
    b2 = _best_cell_offsets(cell2, reg2, o2)[0]
    # the cell centre's best coarse position in the comparison rotated by rotation_deg (fine pixels, x, y)
    centres = np.array([[x + cs / 2.0, y + cs / 2.0] for y, x, _ in cells])
    pred0 = centres - np.array([sx, sy], dtype=np.float64)
    found0 = pred0 + np.stack([2 * (b2 % o2 - wp2) + 2 * sx2 - sx, 2 * (b2 // o2 - wp2) + 2 * sy2 - sy], axis=1)
    # -- each trial rotation: positions follow the extra rotation about the
    # comparison's centre; the correlation is measured exactly on the fine
    # grid at the predicted position and its eight neighbours
    H, W = B.shape
    C = np.array([(W - 1) / 2.0, (H - 1) / 2.0])
    cell1 = _windows(A[None], yx[None], cs)[0]
    rot1 = rotate_stack(B, thetas)
    top = np.empty((n_t, n_c, 2), np.int64)
    pred = np.empty((n_t, n_c, 2))
    for t, d in enumerate(p.theta_offsets_deg):
        Rd = _rot_xy(d)
        pred[t] = (pred0 - C) @ Rd.T + C
        top[t] = np.rint((found0 - C) @ Rd.T + C - cs / 2.0).astype(np.int64)  # top-left, fine pixels (x, y)
    # each cell's window: one pixel of margin around the predicted square, (row, col) corners
    win = _windows(rot1, top[..., ::-1] - 1, cs + 2)
    from ._kernels_nb import cell_pearson_neighbourhood

    fine = cell_pearson_neighbourhood(
        np.ascontiguousarray(cell1, dtype=np.float32), win, 0.5, np.empty((n_t, n_c, 9), np.float64)
    )
    j = fine.argmax(axis=2)
    best_ccf = np.take_along_axis(fine, j[..., None], axis=2)[..., 0]
    # displacement of the best position from the registered prediction, µm
    dx = (top[..., 0] + cs / 2.0 + (j % 3 - 1) - pred[..., 0]) * pixel_um
    dy = (top[..., 1] + cs / 2.0 + (j // 3 - 1) - pred[..., 1]) * pixel_um
    # ---------------------------------------------------------------- decisions
    T, Txy, Tth = p.ccf_threshold, p.xy_threshold_um, p.theta_threshold_deg
    # original rule: each cell at its best rotation
    bt = best_ccf.argmax(axis=0)
    cc = best_ccf[bt, np.arange(n_c)]
    cdx, cdy, cth = dx[bt, np.arange(n_c)], dy[bt, np.arange(n_c)], thetas[bt]
    hi = cc >= T
    orig = np.zeros(n_c, bool)
    if hi.any():
        mx, my, mt = np.median(cdx[hi]), np.median(cdy[hi]), np.median(cth[hi])
        orig = hi & (np.abs(cdx - mx) <= Txy) & (np.abs(cdy - my) <= Txy) & (np.abs(cth - mt) <= Tth)
    # High CMC: per rotation
    cand = np.zeros((n_t, n_c), bool)
    for t in range(n_t):
        h = best_ccf[t] >= T
        if h.any():
            mx, my = np.median(dx[t][h]), np.median(dy[t][h])
            cand[t] = h & (np.abs(dx[t] - mx) <= Txy) & (np.abs(dy[t] - my) <= Txy)
    counts = cand.sum(axis=1)
    high_t = counts >= max(counts.max() - p.tau, 1) if counts.max() > 0 else np.zeros(n_t, bool)
    passed = bool(high_t.any() and (thetas[high_t].max() - thetas[high_t].min()) <= Tth)
    if passed:
        congruent = cand[high_t].any(axis=0)
        # report each congruent cell at its best high rotation
        sel = np.where(cand & high_t[:, None], best_ccf, -2.0).argmax(axis=0)
        use_t = np.where(congruent, sel, bt)
    else:
        congruent = orig
        use_t = bt
    theta_mode = float(thetas[int(np.argmax(counts))]) if counts.max() > 0 else float(rotation_deg)
    results = []
    for k, (y, x, frac) in enumerate(cells):
        t = int(use_t[k])
        results.append(
            CellResult(
                x_um=(x + cs / 2.0) * pixel_um,
                y_um=(y + cs / 2.0) * pixel_um,
                valid=frac,
                ccf=float(best_ccf[t, k]),
                dx_um=float(dx[t, k]),
                dy_um=float(dy[t, k]),
                theta_deg=float(thetas[t]),
                congruent=bool(congruent[k]),
            )
        )
    return CMCResult(tuple(results), int(congruent.sum()), int(orig.sum()), passed, theta_mode)
