"""Pairwise comparison of two prepared cartridge cases (areal surfaces).

:func:`compare_prepared` runs the stages in order:

1. rotation hypotheses from the polar power spectra;
2. areal registration over the full circle, coarse to fine
   (:func:`~ibin.correlate._register.register`);
3. Congruent Matching Cells in both directions (reference cells in the
   comparison surface and back), combined conservatively as Tong et al.
   (2015) recommend: the smaller count;
4. the score.

The **score** is the CMC count plus the areal correlation (CCF) of the
registered surfaces clipped to [0, 1): leads are ranked by CMC count, and
among equal counts by how well the whole surfaces correlate. Its integer
part is the CMC count, the quantity with a published decision threshold
(six or more CMCs, Song 2013).

The comparison is symmetric: ``compare_prepared(a, b)`` and
``compare_prepared(b, a)`` give the same score, the second with the inverse
alignment.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from ..features._cartridge import PreparedCartridge
from ..features._spectrum import rotation_hypotheses
from ._cmc import CMCParams, CMCResult, congruent_matching_cells
from ._register import Pyramid, RegistrationParams, register

__all__ = ["ComparisonParams", "AreaComparison", "compare_prepared", "Alignment"]


@dataclass(frozen=True)
class ComparisonParams:
    """All parameters of an areal comparison."""

    registration: RegistrationParams = field(default_factory=RegistrationParams)
    cmc: CMCParams = field(default_factory=CMCParams)
    spectrum_hints: int = 2


@dataclass(frozen=True)
class Alignment:
    """Rigid transform taking points of exhibit B's scan onto exhibit A's scan.

    A point ``p`` of B (µm from the top-left corner of B's scan, x right, y
    down the rows) lands at ``R(rotation_deg) (p - centre_b) + centre_b +
    (dx_um, dy_um)`` in A's scan, where ``R`` turns counter-clockwise as the
    scans are displayed and ``centre_b`` is the centre of B's scan. So
    ``(dx_um, dy_um)`` is where B's centre lands in A minus where it is in B:
    zero for two scans of one surface centred alike.
    """

    rotation_deg: float
    dx_um: float
    dy_um: float
    centre_b_um: tuple[float, float] = (0.0, 0.0)

    def apply(self, points_b_um: np.ndarray) -> np.ndarray:
        """Map points (n, 2) given as (x, y) µm in B's scan into A's scan."""
        p = np.asarray(points_b_um, dtype=np.float64).reshape(-1, 2)
        c = np.asarray(self.centre_b_um)
        return (p - c) @ _rot(self.rotation_deg).T + c + np.array([self.dx_um, self.dy_um])

    def inverse(self, centre_a_um: tuple[float, float]) -> "Alignment":
        """The transform taking A's scan onto B's, about A's scan centre ``centre_a_um``."""
        ca = np.asarray(centre_a_um, dtype=np.float64)
        c = np.asarray(self.centre_b_um)
        d = np.array([self.dx_um, self.dy_um])
        # p_B = R(-t) (p_A - c - d) + c; evaluate at A's centre for the translation
        pb = _rot(-self.rotation_deg) @ (ca - c - d) + c
        return Alignment(_wrap(-self.rotation_deg), float(pb[0] - ca[0]), float(pb[1] - ca[1]), (float(ca[0]), float(ca[1])))


@dataclass(frozen=True)
class AreaComparison:
    """Result of comparing two cartridge cases.

    Attributes
    ----------
    score : float
        ``cmc + clip(ccf, 0, 0.999)``; higher = more similar.
    cmc : int
        Congruent matching cells (smaller of the two directions).
    cells : int
        Cells that took part (smaller of the two directions).
    ccf : float
        Masked areal NCC of the registered surfaces on the canonical grid.
    alignment : Alignment
        How B maps onto A.
    overlap : float
        Overlapping fraction of the smaller region after registration.
    cmc_ab, cmc_ba : CMCResult
        Cell-level detail: A's cells in B, and B's cells in A.
    """

    score: float
    cmc: int
    cells: int
    ccf: float
    alignment: Alignment
    overlap: float
    cmc_ab: CMCResult
    cmc_ba: CMCResult

    @property
    def rotation_deg(self) -> float:
        return self.alignment.rotation_deg

    def swapped(self, centre_a_um: tuple[float, float]) -> "AreaComparison":
        """The same comparison seen from B (A's and B's roles exchanged).

        ``centre_a_um`` is the centre of A's scan (``PreparedCartridge.scan_centre_um``).
        """
        return AreaComparison(
            score=self.score, cmc=self.cmc, cells=self.cells, ccf=self.ccf,
            alignment=self.alignment.inverse(centre_a_um), overlap=self.overlap,
            cmc_ab=self.cmc_ba, cmc_ba=self.cmc_ab,
        )

    @property
    def dx_um(self) -> float:
        return self.alignment.dx_um

    @property
    def dy_um(self) -> float:
        return self.alignment.dy_um


def _key(p: PreparedCartridge) -> bytes:
    return hashlib.sha1(np.ascontiguousarray(p.descriptor).tobytes() + np.ascontiguousarray(p.surface).tobytes()).digest()


def _rot(theta_deg: float) -> np.ndarray:
    """cv2's counter-clockwise rotation acting on (x, y) index vectors (y down)."""
    t = math.radians(theta_deg)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, s], [-s, c]])


def _centre(arr: np.ndarray) -> np.ndarray:
    h, w = arr.shape
    return np.array([(w - 1) / 2.0, (h - 1) / 2.0])


def _inverse_shift(theta_deg: float, shift_yx: tuple[float, float], ca: np.ndarray, cb: np.ndarray) -> tuple[float, float]:
    """Shift (rows, cols) of A onto B after rotating A by -theta about its centre."""
    s = np.array([shift_yx[1], shift_yx[0]])
    sp = _rot(-theta_deg) @ (ca - cb - s) + cb - ca
    return float(sp[1]), float(sp[0])


def compare_prepared(
    a: PreparedCartridge,
    b: PreparedCartridge,
    params: ComparisonParams | None = None,
    *,
    pyramids: tuple[Pyramid, Pyramid] | None = None,
) -> AreaComparison:
    """Compare two prepared cartridge cases.

    Parameters
    ----------
    a, b : PreparedCartridge
        Prepared with the same canonical ``pixel_um`` and modality.
    params : ComparisonParams, optional
    pyramids : (Pyramid, Pyramid), optional
        Already-built pyramids of ``a`` and ``b`` (saves their construction
        when one exhibit is compared with many).

    Returns
    -------
    AreaComparison
    """
    if not math.isclose(a.pixel_um, b.pixel_um, rel_tol=1e-6):
        raise ValueError(f"prepared on different grids ({a.pixel_um} vs {b.pixel_um} µm/px); prepare both with the same parameters")
    if a.modality != b.modality:
        raise ValueError(f"cannot compare a {a.modality} scan with a {b.modality} scan")
    if _key(a) > _key(b):
        r = compare_prepared(b, a, params, pyramids=None if pyramids is None else (pyramids[1], pyramids[0]))
        return _swap(r, a, b)
    p = params or ComparisonParams()
    pa, pb = pyramids if pyramids is not None else (Pyramid(a.surface, a.pixel_um), Pyramid(b.surface, b.pixel_um))
    hints = tuple(h for h, _ in rotation_hypotheses(a.spectrum, b.spectrum, count=p.spectrum_hints))
    hints = hints + tuple((h + 180.0) % 360.0 for h in hints)
    reg = register(pa, pb, p.registration, hints_deg=hints)
    # the cells on grids widened to turn: the registration's shift carried over to them
    (A1, A2, oa), (B1, B2, ob) = pa.wide(), pb.wide()
    shift = _widened_shift(reg.rotation_deg, reg.shift_px, pb.levels[1].shape, oa, ob, B1.shape)
    ab = congruent_matching_cells(
        A1, B1, a.pixel_um, rotation_deg=reg.rotation_deg, shift_px=shift, params=p.cmc,
        reference_coarse=A2, comparison_coarse=B2,
    )
    inv = _inverse_shift(reg.rotation_deg, shift, _centre(A1), _centre(B1))
    ba = congruent_matching_cells(
        B1, A1, a.pixel_um, rotation_deg=-reg.rotation_deg, shift_px=inv, params=p.cmc,
        reference_coarse=B2, comparison_coarse=A2,
    )
    # cells reported where they lie on each prepared surface, not on the widened grids
    px = a.pixel_um
    ab = _cells_on_surface(ab, (oa[1] * px, oa[0] * px))
    ba = _cells_on_surface(ba, (ob[1] * px, ob[0] * px))
    cmc = min(ab.cmc, ba.cmc)
    cells = min(ab.cell_count, ba.cell_count)
    ccf = float(reg.ccf)
    score = cmc + min(max(ccf, 0.0), 0.999)
    # alignment in scan frames: p_A = R (p_B - c_B) + c_B + d
    # in each surface's own frame: p_A = R (p_B - c_B) + c_B + shift * px (c_B: B's grid
    # centre, the rotation centre); the surfaces' origins in their scans add on.
    # Reported about B's scan centre S: d = f(S) - S.
    d_grid = np.array([reg.shift_px[1], reg.shift_px[0]]) * px + np.asarray(a.origin_um) - np.asarray(b.origin_um)
    c_grid = _centre_um(pb.levels[1], px) + np.asarray(b.origin_um)
    S = np.asarray(b.scan_centre_um)
    d = _rot(reg.rotation_deg) @ (S - c_grid) + c_grid + d_grid - S
    return AreaComparison(
        score=float(score), cmc=int(cmc), cells=int(cells), ccf=ccf,
        alignment=Alignment(_wrap(reg.rotation_deg), float(d[0]), float(d[1]), (float(S[0]), float(S[1]))),
        overlap=float(reg.overlap), cmc_ab=ab, cmc_ba=ba,
    )


def _widened_shift(theta_deg: float, shift_yx: tuple[float, float], shape_b: tuple[int, int],
                   off_a: tuple[int, int], off_b: tuple[int, int], wide_shape_b: tuple[int, int]) -> tuple[float, float]:
    """A registration's shift (rows, cols) between two grids, carried over to the same grids widened.

    The registration maps B onto A as ``p_A = R (p_B - c_B) + c_B + s``
    (``c_B`` B's grid centre). Placing the grids at ``off_a``/``off_b`` on
    wider ones moves B's centre of rotation by ``delta`` (B's widened centre
    minus its centre there), so ``s' = s + (o_A - o_B) + (R - I) delta``.
    """
    s = np.array([shift_yx[1], shift_yx[0]], dtype=np.float64)
    o = np.array([off_a[1] - off_b[1], off_a[0] - off_b[0]], dtype=np.float64)
    c_b = np.array([(shape_b[1] - 1) / 2.0 + off_b[1], (shape_b[0] - 1) / 2.0 + off_b[0]])
    delta = np.array([(wide_shape_b[1] - 1) / 2.0, (wide_shape_b[0] - 1) / 2.0]) - c_b
    sp = s + o + (_rot(theta_deg) - np.eye(2)) @ delta
    return float(sp[1]), float(sp[0])


def _cells_on_surface(r: CMCResult, offset_um: tuple[float, float]) -> CMCResult:
    """``r`` with its cells' centres moved from a pyramid's grid onto the surface placed at ``offset_um``."""
    if offset_um == (0.0, 0.0):
        return r
    ox, oy = offset_um
    return dataclasses.replace(r, cells=tuple(dataclasses.replace(c, x_um=c.x_um - ox, y_um=c.y_um - oy) for c in r.cells))


def _centre_um(arr: np.ndarray, px: float) -> np.ndarray:
    """Centre of a prepared grid in µm from its top-left corner (x, y)."""
    h, w = arr.shape
    return np.array([w * px / 2.0, h * px / 2.0])


def _wrap(deg: float) -> float:
    return float((deg + 180.0) % 360.0 - 180.0)


def _swap(r: AreaComparison, a: PreparedCartridge, b: PreparedCartridge) -> AreaComparison:
    """The result of compare(b, a) expressed as compare(a, b)."""
    return r.swapped(b.scan_centre_um)
