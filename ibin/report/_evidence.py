"""What an examiner looks at for one lead, computed from the comparison (no plotting here).

:func:`cartridge_evidence` takes two prepared cartridge cases and their
:class:`~ibin.correlate.AreaComparison` and returns, all on the query's
prepared grid:

1. the lead's surface resampled into the query's frame by the reported
   alignment (one bilinear warp; missing data stays missing);
2. the query's CMC cells, and where each cell matched on the aligned lead
   (its own displacement and rotation, from the cell-level search);
3. the correlation surface around the peak: masked NCC of the query and the
   aligned lead at every translation within ``radius_um`` of the reported
   alignment (Padfield 2012), so the peak should sit at the centre;
4. the rotation profile: the cross-correlation maximum over translation
   for every rotation of the aligned lead on the 4x coarser grid, full
   circle (the score of the registration's rotation sweep).

:class:`BulletEvidence` is the documented input of the bullet figures: land
signatures in µm and the land-by-land score matrix with the matched phase.
It can be filled from any bullet comparison (the bullet path of the engine,
or a lab's own) and is validated on construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["CellOutline", "CartridgeEvidence", "cartridge_evidence", "BulletEvidence"]


@dataclass(frozen=True)
class CellOutline:
    """One CMC cell drawn on an image.

    Attributes
    ----------
    corners_um : ndarray (4, 2)
        Corners (x, y) in µm from the top-left corner of the query's
        prepared grid (the frame of every image of the evidence), in
        drawing order.
    centre_um : (float, float)
    ccf : float
        The cell's correlation at its best position (the CMC cell CCF).
    congruent : bool
        The final CMC decision for the cell.
    """

    corners_um: np.ndarray
    centre_um: tuple[float, float]
    ccf: float
    congruent: bool


@dataclass(frozen=True)
class CartridgeEvidence:
    """The pictures' data for one cartridge-case lead, on the query's prepared grid.

    Attributes
    ----------
    query_id, lead_id : str
    pixel_um : float
        Grid spacing of every image here.
    query_surface : ndarray (rows, cols)
        The query's prepared surface (unit RMS, NaN = missing).
    lead_aligned : ndarray (rows, cols)
        The lead's prepared surface moved onto the query by the reported
        alignment.
    cells_query, cells_lead : tuple of CellOutline
        The query's cells (``comparison.cmc_ab``) on the query, and the same
        cells where they matched on the aligned lead (same order).
    shift_um : ndarray (n,)
        Translation offsets (µm) of the correlation surface's rows and
        columns, from ``-radius_um`` to ``+radius_um``.
    correlation : ndarray (n, n)
        Masked NCC of query and aligned lead with the lead moved by
        ``(shift_um[col], shift_um[row])`` (x, y); NaN where the overlap is
        too small.
    rotation_deg : ndarray (m,)
        Absolute rotations of the lead (the reported rotation plus an offset).
    rotation_ccf : ndarray (m,)
        Cross-correlation maximum over translation at each rotation,
        normalised by the energies of the whole surfaces (4x coarser grid;
        the registration's sweep score).
    comparison : AreaComparison
    """

    query_id: str
    lead_id: str
    pixel_um: float
    query_surface: np.ndarray
    lead_aligned: np.ndarray
    cells_query: tuple[CellOutline, ...]
    cells_lead: tuple[CellOutline, ...]
    shift_um: np.ndarray
    correlation: np.ndarray
    rotation_deg: np.ndarray
    rotation_ccf: np.ndarray
    comparison: object

    @property
    def cmc_drawn(self) -> int:
        """Congruent cells drawn (equals ``comparison.cmc_ab.cmc``)."""
        return sum(c.congruent for c in self.cells_query)

    @property
    def peak_offset_um(self) -> tuple[float, float]:
        """(x, y) offset of the correlation peak from the reported alignment, µm."""
        c = np.where(np.isfinite(self.correlation), self.correlation, -np.inf)
        r, k = np.unravel_index(int(np.argmax(c)), c.shape)
        return float(self.shift_um[k]), float(self.shift_um[r])

    @property
    def ccf_at_alignment(self) -> float:
        """The correlation surface at zero offset (close to ``comparison.ccf``)."""
        n = len(self.shift_um) // 2
        return float(self.correlation[n, n])


def _rot(theta_deg: float) -> np.ndarray:
    """OpenCV's counter-clockwise rotation (as displayed, y down) acting on (x, y) vectors."""
    t = math.radians(theta_deg)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, s], [-s, c]])


def _wrap(deg: float) -> float:
    return float((deg + 180.0) % 360.0 - 180.0)


def _lead_to_query_px(query, lead, alignment) -> np.ndarray:
    """2 x 3 affine map from the lead's grid indices (x, y) to the query's grid indices.

    Grid index ``i`` is the pixel whose centre lies ``(i + 0.5) * pixel_um``
    from the grid's corner; a grid's corner lies at ``origin_um`` in its scan.
    """
    px = query.pixel_um
    R = _rot(alignment.rotation_deg)
    cb = np.asarray(alignment.centre_b_um, dtype=np.float64)
    d = np.array([alignment.dx_um, alignment.dy_um])
    ob, oa = np.asarray(lead.origin_um, np.float64), np.asarray(query.origin_um, np.float64)
    # q_a = (R ((i + .5) px + ob - cb) + cb + d - oa) / px - .5
    t = (R @ (0.5 * px + ob - cb) + cb + d - oa) / px - 0.5
    return np.hstack([R, t[:, None]])


def warp_into(values: np.ndarray, matrix: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resample ``values`` onto a grid of ``shape`` by a 2 x 3 affine map of (x, y) indices.

    Bilinear; an output point is missing (NaN) when any input point it
    interpolates from is missing or outside.
    """
    import cv2

    v = np.asarray(values, dtype=np.float32)
    m = np.isfinite(v)
    f = np.where(m, v, 0.0).astype(np.float32)
    M = np.asarray(matrix, dtype=np.float64)
    size = (int(shape[1]), int(shape[0]))
    out = cv2.warpAffine(f, M, size, flags=cv2.INTER_LINEAR, borderValue=0.0)
    mw = cv2.warpAffine(m.astype(np.float32), M, size, flags=cv2.INTER_LINEAR, borderValue=0.0)
    out[mw < 0.999] = np.nan
    return out


def _cells(comparison, cell_um: float) -> tuple[tuple[CellOutline, ...], tuple[CellOutline, ...]]:
    """The query's cells on the query, and where each matched on the aligned lead.

    A cell's best position is reported (``CellResult``) as a displacement
    ``(dx_um, dy_um)`` from its registered position, measured on the lead
    rotated by the cell's own ``theta_deg``; brought into the aligned frame,
    which is rotated by the registration's angle, the displacement and the
    cell's outline turn by the difference ``-(theta_deg - rotation_deg)``.
    """
    half = cell_um / 2.0
    square = np.array([[-half, -half], [half, -half], [half, half], [-half, half]])
    on_query, on_lead = [], []
    for c in comparison.cmc_ab.cells:
        centre = np.array([c.x_um, c.y_um])
        on_query.append(CellOutline(centre + square, (float(centre[0]), float(centre[1])), c.ccf, c.congruent))
        R = _rot(-_wrap(c.theta_deg - comparison.alignment.rotation_deg))
        moved = centre + R @ np.array([c.dx_um, c.dy_um])
        on_lead.append(CellOutline(moved + square @ R.T, (float(moved[0]), float(moved[1])), c.ccf, c.congruent))
    return tuple(on_query), tuple(on_lead)


def _correlation_surface(query: np.ndarray, lead: np.ndarray, radius_px: int, min_overlap: float) -> np.ndarray:
    from ..correlate import FixedSpectra, masked_ncc
    from ..correlate._ncc import fft_shape

    shape = fft_shape(query.shape, lead.shape, radius_px)
    n_min = min_overlap * min(int(np.isfinite(query).sum()), int(np.isfinite(lead).sum()))
    c, _ = masked_ncc(FixedSpectra(query, shape), lead, min_overlap_px=max(n_min, 16.0))
    offs = np.arange(-radius_px, radius_px + 1)
    out = c[0][np.ix_(offs % shape[0], offs % shape[1])].astype(np.float64)
    out[out <= -1.0] = np.nan  # masked_ncc marks too-small overlaps with -1
    return out


def _rotation_profile(query: np.ndarray, lead: np.ndarray, pixel_um: float, step_deg: float,
                      max_shift_um: float) -> tuple[np.ndarray, np.ndarray]:
    """Cross-correlation maximum over translation at every rotation offset of the aligned lead.

    On the 4x coarser grid, normalised by the energies of the two whole
    surfaces (the score of the registration's full-circle sweep): one
    forward and one inverse FFT per rotation. It is not a Pearson
    correlation over the overlap (it is lower by about the overlap
    fraction), but its peak is where the registration looks, and a true
    match shows one sharp peak.
    """
    import cv2
    from scipy import fft

    from ..correlate import Pyramid
    from ..correlate._ncc import fft_shape

    f = np.nan_to_num(Pyramid(query, pixel_um).levels[4], nan=0.0)
    g = np.nan_to_num(Pyramid(lead, pixel_um).levels[4], nan=0.0)
    offsets = np.arange(-180.0, 180.0, step_deg)
    s = int(math.ceil(max_shift_um / (4 * pixel_um)))
    shape = fft_shape(f.shape, g.shape, s)
    h, w = g.shape
    centre = ((w - 1) / 2.0, (h - 1) / 2.0)
    rot = np.empty((len(offsets), h, w), np.float32)
    for i, a in enumerate(offsets):
        cv2.warpAffine(g, cv2.getRotationMatrix2D(centre, float(a), 1.0), (w, h), dst=rot[i],
                       flags=cv2.INTER_LINEAR, borderValue=0.0)
    F = fft.rfft2(f, shape, workers=1)
    c = fft.irfft2(F[None] * np.conj(fft.rfft2(rot, shape, workers=1)), shape, workers=1)
    sy = np.abs(np.fft.fftfreq(shape[0], 1.0 / shape[0])) <= s
    sx = np.abs(np.fft.fftfreq(shape[1], 1.0 / shape[1])) <= s
    best = c[:, sy][:, :, sx].reshape(len(offsets), -1).max(axis=1)
    energy = np.sqrt(float(np.sum(f * f)) * np.einsum("kij,kij->k", rot, rot))
    return offsets, (best / np.maximum(energy, 1e-12)).astype(np.float64)


def cartridge_evidence(
    query,
    lead,
    comparison,
    *,
    query_id: str = "query",
    lead_id: str = "lead",
    radius_um: float = 250.0,
    rotation_step_deg: float = 3.0,
    cell_um: float | None = None,
) -> CartridgeEvidence:
    """Compute the pictures' data for one lead.

    Parameters
    ----------
    query, lead : PreparedCartridge
        The query and the lead, prepared on the same grid.
    comparison : AreaComparison
        ``compare_prepared(query, lead)``: its alignment brings the lead
        onto the query.
    query_id, lead_id : str
        Names shown in the figures.
    radius_um : float
        Half-width of the correlation surface around the reported alignment.
    rotation_step_deg : float
        Step of the rotation profile.
    cell_um : float, optional
        Cell side (default: ``CMCParams().cell_um``, the comparison's).

    Returns
    -------
    CartridgeEvidence

    References
    ----------
    D. Padfield, "Masked object registration in the Fourier domain", IEEE
    Trans. Image Processing 21(5):2706-2718, 2012. doi:10.1109/TIP.2011.2181402
    """
    from ..correlate import CMCParams, RegistrationParams

    if not math.isclose(query.pixel_um, lead.pixel_um, rel_tol=1e-6):
        raise ValueError(f"prepared on different grids ({query.pixel_um} vs {lead.pixel_um} µm/px)")
    if radius_um <= 0 or rotation_step_deg <= 0:
        raise ValueError("radius_um and rotation_step_deg must be positive")
    px = float(query.pixel_um)
    q = np.asarray(query.surface, dtype=np.float32)
    aligned = warp_into(lead.surface, _lead_to_query_px(query, lead, comparison.alignment), q.shape)
    cells_q, cells_l = _cells(comparison, CMCParams().cell_um if cell_um is None else cell_um)
    r_px = max(1, int(round(radius_um / px)))
    reg = RegistrationParams()
    corr = _correlation_surface(q, aligned, r_px, 0.25)
    rot_off, rot_ccf = _rotation_profile(q, aligned, px, rotation_step_deg, reg.max_shift_um)
    rot_abs = np.array([_wrap(comparison.alignment.rotation_deg + o) for o in rot_off])
    order = np.argsort(rot_abs, kind="stable")
    return CartridgeEvidence(
        query_id=query_id, lead_id=lead_id, pixel_um=px, query_surface=q, lead_aligned=aligned,
        cells_query=cells_q, cells_lead=cells_l,
        shift_um=np.arange(-r_px, r_px + 1) * px, correlation=corr,
        rotation_deg=rot_abs[order], rotation_ccf=rot_ccf[order], comparison=comparison,
    )


@dataclass(frozen=True)
class BulletEvidence:
    """The pictures' data for one bullet lead: land signatures and land-by-land scores.

    Attributes
    ----------
    query_id, lead_id : str
    signatures_query_um, signatures_lead_um : sequence of ndarray (n,)
        One signature per land (heights in µm along the land, NaN =
        missing), in land order around the bullet.
    pixel_um : float
        Spacing of the signature samples.
    land_scores : ndarray (lands_query, lands_lead)
        Land-to-land similarity, ``land_scores[i, j]`` comparing the query's
        land ``i`` with the lead's land ``j`` (e.g. the maximum CCF); NaN
        for a comparison that could not be made.
    phase : int
        The matched phase: query land ``i`` matches lead land
        ``(i + phase) % lands_lead`` (the wrapped diagonal of Hare et al.
        2017, as bulletxtrctr's ``compute_average_scores``).
    lags_um : sequence of float, optional
        Per query land, the shift that aligns its matched lead signature
        (the lead's samples move by ``+lag``); zeros if omitted.
    score : float, optional
        Bullet-level score (e.g. the mean over the matched phase, SAM).

    References
    ----------
    E. Hare, H. Hofmann, A. Carriquiry, "Automatic matching of bullet land
    impressions", Annals of Applied Statistics 11(4), 2017. doi:10.1214/17-AOAS1080
    """

    query_id: str
    lead_id: str
    signatures_query_um: tuple
    signatures_lead_um: tuple
    pixel_um: float
    land_scores: np.ndarray
    phase: int
    lags_um: tuple = field(default=())
    score: float | None = None

    def __post_init__(self) -> None:
        s = np.asarray(self.land_scores, dtype=np.float64)
        if s.ndim != 2 or 0 in s.shape:
            raise ValueError(f"land_scores must be a non-empty 2-D matrix, got shape {s.shape}")
        nq, nl = s.shape
        if len(self.signatures_query_um) != nq or len(self.signatures_lead_um) != nl:
            raise ValueError(
                f"land_scores is {nq} x {nl} but {len(self.signatures_query_um)} query and "
                f"{len(self.signatures_lead_um)} lead signatures were given"
            )
        if not (self.pixel_um > 0):
            raise ValueError("pixel_um must be positive")
        if not 0 <= int(self.phase) < nl:
            raise ValueError(f"phase must be in [0, {nl}), got {self.phase}")
        if self.lags_um and len(self.lags_um) != nq:
            raise ValueError(f"{len(self.lags_um)} lags given for {nq} query lands")
        object.__setattr__(self, "land_scores", s)
        object.__setattr__(self, "phase", int(self.phase))
        object.__setattr__(self, "signatures_query_um", tuple(np.asarray(v, np.float64) for v in self.signatures_query_um))
        object.__setattr__(self, "signatures_lead_um", tuple(np.asarray(v, np.float64) for v in self.signatures_lead_um))
        object.__setattr__(self, "lags_um", tuple(float(v) for v in self.lags_um) or (0.0,) * nq)

    @property
    def matched_pairs(self) -> list[tuple[int, int]]:
        """(query land, lead land) pairs of the matched phase."""
        nl = self.land_scores.shape[1]
        return [(i, (i + self.phase) % nl) for i in range(self.land_scores.shape[0])]

    @property
    def phase_means(self) -> np.ndarray:
        """Mean score of every phase (NaN ignored), the bullet-level scores of the phases."""
        nq, nl = self.land_scores.shape
        out = np.empty(nl)
        for k in range(nl):
            v = np.array([self.land_scores[i, (i + k) % nl] for i in range(nq)])
            out[k] = np.nanmean(v) if np.isfinite(v).any() else np.nan
        return out


def bullet_evidence(query_prep, lead_prep, comparison, *, query_id: str, lead_id: str) -> BulletEvidence:
    """The pictures' data of a bullet lead from the comparison behind it.

    Parameters
    ----------
    query_prep, lead_prep : ibin.features.PreparedBullet
    comparison : ibin.correlate.BulletComparison
        ``compare_bullets(query, lead)``: its land CCF matrix, lags and phase.
    """
    n = comparison.n_positions

    def sigs(prep):
        out = [np.full(1, np.nan) if l is None else np.asarray(l.signature, np.float64) for l in prep.lands]
        return tuple(out + [np.full(1, np.nan)] * (n - len(out)))

    lags = []
    for i in range(n):
        v = comparison.lag_um[i, (i + comparison.phase) % n]
        lags.append(float(v) if np.isfinite(v) else 0.0)
    return BulletEvidence(
        query_id=query_id, lead_id=lead_id, signatures_query_um=sigs(query_prep), signatures_lead_um=sigs(lead_prep),
        pixel_um=float(query_prep.pixel_um), land_scores=np.asarray(comparison.ccf, np.float64),
        phase=int(comparison.phase), lags_um=tuple(lags),
        score=None if not np.isfinite(comparison.score) else float(comparison.score),
    )
