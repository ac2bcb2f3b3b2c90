"""Bullet preparation: from raw land-engraved-area scans to land signatures.

A fired bullet carries one land-engraved area (LEA) per land of the barrel's
rifling; each LEA is scanned separately. The striae the barrel engraved run
along the bullet's axis, so a profile taken *across* the land (a crosscut)
holds the marks, and a crosscut is the same wherever it is taken along the
striae, except where the bullet was damaged (break-off at the heel, tank
rash). The stages, in order (each one a function call in
:func:`prepare_land`):

1. **axis**: which way the striae run in the scan (instruments store lands
   either way): the dominant orientation of the structure tensor of the
   band-passed surface (:func:`striae_axis`); the scan is transposed so
   that the striae run along the rows' direction (y) and crosscuts are rows;
2. **stable crosscut**: the surface is cut into slabs
   ``crosscut_step_um`` thick along the striae; each slab's mean profile is
   compared with the next one (Pearson correlation, maximised over the
   small lags a tilt of the striae explains; slabs measured across less
   than ``min_overlap`` of the widest one are left out);
   the longest run of neighbouring slabs that agree (``stable_ccf``) is the
   stable region, as in Hare, Hofmann & Carriquiry (2017), who step 25 µm
   at a time until two crosscuts agree. Damage and break-off do not agree
   with their neighbours and fall outside the run. The striae's tilt
   across the band (rifling twist, a scan not quite square to the bullet)
   is measured from the lags between the band's slabs that still agree
   (:func:`_band_tilt`);
3. **band profile**: the band's rows, shifted to undo the tilt, are
   averaged point by point (missing points ignored), which keeps the
   striae and averages measurement noise away;
4. **grooves**: the groove-engraved areas at both shoulders rise well above
   the land's circular arc; walking out from the middle of the band profile,
   the land ends where the residual from a robust quadratic rises by
   ``groove_rise_um`` and stays up; the LEA boundary is the foot of that
   rise, and ``groove_margin_um`` more is cut off (the shoulder's roll-off);
5. **curvature and waviness**: a robust quadratic (the bullet's curvature)
   is removed from the land, spikes are dropped, and an ISO 16610-21
   Gaussian band-pass between ``short_cutoff_um`` and ``long_cutoff_um``
   keeps the striae;
6. **signature**: the result is resampled to the canonical ``pixel_um``
   spacing, a 1-D profile in µm against µm with NaN where nothing was
   measured;
7. **descriptor**: a shift-invariant vector for the index
   (:func:`land_descriptor`).

References
----------
E. Hare, H. Hofmann, A. Carriquiry, "Automatic matching of bullet land
impressions", Annals of Applied Statistics, 2017. doi:10.1214/17-AOAS1080

L. S. Chumbley, M. D. Morris, M. J. Kreiser et al., "Validation of tool mark
comparisons obtained using a quantitative, comparative, statistical
algorithm", Journal of Forensic Sciences 55(4):953-961, 2010.

ISO 16610-21:2011, Linear profile filters: Gaussian filters; ISO 3274:1996,
Nominal characteristics of contact (stylus) instruments (cut-off and
sampling-spacing pairs).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..errors import ScanError
from ..scan import Scan
from ._filters import ISO_ALPHA, check_band, gaussian_lowpass, resample, robust_std

__all__ = [
    "BULLET_FEATURES_VERSION",
    "BulletParams",
    "PreparedLand",
    "PreparedBullet",
    "prepare_land",
    "prepare_bullet",
    "striae_axis",
    "land_descriptor",
    "bullet_descriptor",
    "bullet_sha256",
]

#: Version of the bullet preparation method and of its stored layout; stored
#: with every database so that lands prepared differently are never mixed.
BULLET_FEATURES_VERSION = "bullet-2"


@dataclass(frozen=True)
class BulletParams:
    """Parameters of land preparation, all lengths in µm.

    Attributes
    ----------
    pixel_um : float
        Canonical spacing of land signatures. 1.5 µm is the largest sampling
        spacing ISO 3274 allows with an 8 µm short cut-off, and the
        striation sampling of the NFI's scratch library.
    short_cutoff_um : float
        Gaussian low-pass cut-off (instrument noise removed below), ISO 3274
        value for that spacing.
    long_cutoff_um : float
        Gaussian high-pass cut-off (waviness removed above): 250 µm is the
        ISO 4288 roughness cut-off for fine profiles and the shape cut-off of
        the NFI's striation preprocessing.
    crosscut_step_um : float
        Slab thickness and step between compared crosscuts (25 µm in
        Hare et al. 2017, bulletxtrctr ``x3p_crosscut_optimize``).
    stable_ccf : float
        Correlation two neighbouring crosscuts must reach to count as stable
        (0.9, bulletxtrctr's default; the paper uses 0.95).
    crosscut_core : float
        Share of the land's width (centred) used when crosscuts are compared,
        before the grooves are known (70 %: the 15 % and 85 % quantiles of
        x in bulletxtrctr ``land_cc``).
    min_overlap : float
        Crosscut comparisons need this share of the shorter profile to
        overlap (75 %, bulletxtrctr ``sig_align``).
    max_tilt_deg : float
        Largest tilt of the striae against the scan's axis: neighbouring
        crosscuts are compared at lags that such a tilt explains (marks
        agreeing only at larger lags are oblique: tank rash, scratches), and
        the tilt undone when the band is averaged is at most this. A field
        aligned with the bullet's axis rather than with the land sees the
        striae at the rifling's helix angle, atan(pi d / twist): 6.4° for a
        9 mm barrel twisting 1:10" (the Hamby set's Rugers), 5.7° for 5.56 mm
        at 1:7", 5.0° for .45 ACP at 1:16"; 8° leaves 1.5° for the bullet's
        mounting (5° until features ``bullet-2``, which turned such scans'
        bands into smears).
    groove_rise_um : float
        Height above the land's arc that marks a groove-engraved area: it is
        far above striation depths (about 1-5 µm) and far below the rifling
        depth of handgun barrels (about 75-100 µm).
    groove_extent_um : float
        The rise must last this far outward, so a raised stria or a speck is
        not taken for a shoulder.
    groove_smooth_um : float
        Gaussian cut-off applied to the residual before it is thresholded.
    groove_margin_um : float
        Cut inward from each LEA boundary to leave the shoulder's roll-off
        out (30 samples at 1.5625 µm, bulletxtrctr's ``adjust`` in its
        README pipeline).
    outlier_sigma : float
        Spikes further than this many robust standard deviations from the
        locally smoothed profile are dropped.
    min_length_um : float
        A land signature shorter than this is refused: it cannot reach the
        minimum overlap of a comparison (350 µm, the NFI's profile
        correlator ``min_overlap_distance``).
    descriptor_min_wavelength_um, descriptor_max_wavelength_um : float
        Wavelengths covered by the index descriptor: from 2.5 times the short
        cut-off (where the band-pass passes about 90 %) to the long cut-off.
    descriptor_length_um : float
        The descriptor samples the spectrum every ``1 / descriptor_length_um``
        cycles per µm, the resolution of a profile about as long as a land
        (about 2 mm for 9 mm handgun bullets).
    """

    pixel_um: float = 1.5
    short_cutoff_um: float = 8.0
    long_cutoff_um: float = 250.0
    crosscut_step_um: float = 25.0
    stable_ccf: float = 0.9
    crosscut_core: float = 0.7
    min_overlap: float = 0.75
    max_tilt_deg: float = 8.0
    groove_rise_um: float = 10.0
    groove_extent_um: float = 50.0
    groove_smooth_um: float = 25.0
    groove_margin_um: float = 47.0
    outlier_sigma: float = 8.0
    min_length_um: float = 350.0
    descriptor_min_wavelength_um: float = 20.0
    descriptor_max_wavelength_um: float = 250.0
    descriptor_length_um: float = 2048.0

    def __post_init__(self) -> None:
        check_band(self.pixel_um, self.short_cutoff_um, self.long_cutoff_um)
        if not (0 < self.crosscut_core <= 1 and 0 < self.min_overlap <= 1 and -1 <= self.stable_ccf <= 1):
            raise ValueError("crosscut_core and min_overlap must be in (0, 1], stable_ccf in [-1, 1]")
        if not (0 < self.descriptor_min_wavelength_um < self.descriptor_max_wavelength_um):
            raise ValueError("need 0 < descriptor_min_wavelength_um < descriptor_max_wavelength_um")
        if self.descriptor_dim < 4:
            raise ValueError("the descriptor band holds fewer than 4 frequencies")

    @property
    def descriptor_frequencies(self) -> np.ndarray:
        """Frequencies (cycles per µm) sampled by the land descriptor."""
        L = self.descriptor_length_um
        k0 = math.ceil(L / self.descriptor_max_wavelength_um)
        k1 = math.floor(L / self.descriptor_min_wavelength_um)
        return np.arange(k0, k1 + 1, dtype=np.float64) / L

    @property
    def descriptor_dim(self) -> int:
        L = self.descriptor_length_um
        return math.floor(L / self.descriptor_min_wavelength_um) - math.ceil(L / self.descriptor_max_wavelength_um) + 1

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, eq=False)
class PreparedLand:
    """One land-engraved area ready for comparison.

    Attributes
    ----------
    signature : ndarray (n,), float32
        Band-passed crosscut across the land in µm, sampled every
        ``pixel_um`` from the left LEA boundary; NaN = not measured. The
        first and last values are measured.
    pixel_um : float
        Spacing of ``signature``.
    descriptor : ndarray (d,), float32
        L2-normalised shift-invariant index descriptor.
    rms_um : float
        RMS of the signature (striation depth scale).
    transposed : bool
        True when the striae ran along the scan's x axis (the scan was
        transposed before crosscuts were taken).
    band_um : (float, float)
        Start and end, along the striae, of the band the crosscut was
        averaged over (µm from the scan's first row, or first column when
        ``transposed``).
    grooves_um : (float, float)
        Left and right LEA boundaries found, before the margin was cut,
        across the land (µm from the scan's first column, or first row when
        ``transposed``).
    x0_um : float
        Position of ``signature[0]`` in the same across-land frame.
    stability : float
        Median correlation of neighbouring crosscuts inside the band (NaN
        when the scan is too short along the striae to tell).
    tilt_deg : float
        Tilt of the striae that was undone while averaging the band: their
        angle from the along-the-striae axis, positive when they move
        towards the far end of the across-land axis further down the band.
    source : str or None
        The scan file.
    sha256 : str or None
        SHA-256 of the scan file.
    notes : tuple of str
        What preparation noticed (no stable crosscut, no groove found, ...).
    """

    signature: np.ndarray
    pixel_um: float
    descriptor: np.ndarray
    rms_um: float
    transposed: bool = False
    band_um: tuple[float, float] = (0.0, 0.0)
    grooves_um: tuple[float, float] = (0.0, 0.0)
    x0_um: float = 0.0
    stability: float = float("nan")
    tilt_deg: float = 0.0
    source: str | None = None
    sha256: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def length_um(self) -> float:
        return len(self.signature) * self.pixel_um

    @property
    def crosscut_um(self) -> float:
        """Centre of the averaged band along the striae."""
        return 0.5 * (self.band_um[0] + self.band_um[1])

    def info(self) -> dict:
        """JSON-able description (everything but the arrays)."""
        return {
            "source": self.source,
            "sha256": self.sha256,
            "pixel_um": self.pixel_um,
            "length_um": round(self.length_um, 2),
            "rms_um": self.rms_um,
            "transposed": self.transposed,
            "band_um": [round(float(v), 2) for v in self.band_um],
            "crosscut_um": round(self.crosscut_um, 2),
            "grooves_um": [round(float(v), 2) for v in self.grooves_um],
            "x0_um": round(float(self.x0_um), 2),
            "stability": None if not math.isfinite(self.stability) else round(float(self.stability), 4),
            "tilt_deg": round(float(self.tilt_deg), 3),
            "notes": list(self.notes),
        }


@dataclass(frozen=True, eq=False)
class PreparedBullet:
    """The lands of one bullet, in land order; ``None`` where a land is missing.

    The land order is the order around the bullet; which land comes first is
    arbitrary (comparisons search all cyclic offsets, the phase).

    Attributes
    ----------
    lands : tuple of PreparedLand or None
    pixel_um : float
        Signature spacing shared by all lands.
    descriptor : ndarray (d,), float32
        L2-normalised bullet-level index descriptor (:func:`bullet_descriptor`):
        it does not depend on the land order nor on which land is first.
    """

    lands: tuple[PreparedLand | None, ...]
    pixel_um: float
    descriptor: np.ndarray

    @property
    def n_positions(self) -> int:
        """Land positions, missing ones included."""
        return len(self.lands)

    @property
    def present(self) -> list[int]:
        """0-based positions of the lands that were scanned."""
        return [i for i, l in enumerate(self.lands) if l is not None]

    @property
    def land_descriptors(self) -> np.ndarray:
        """(n_present, d) descriptors of the present lands, in position order."""
        return np.stack([self.lands[i].descriptor for i in self.present]).astype(np.float32)

    # ------------------------------------------------------------------ storage
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """Arrays and JSON-able attributes for the feature store.

        Signatures are stored as float16 µm (relative precision 5e-4, far
        below measurement noise), NaN-padded into one (positions, length)
        array.
        """
        n = max((len(l.signature) for l in self.lands if l is not None), default=0)
        sig = np.full((self.n_positions, n), np.nan, dtype=np.float16)
        lengths = np.zeros(self.n_positions, dtype=np.int32)
        d = len(self.descriptor)
        desc = np.zeros((self.n_positions, d), dtype=np.float32)
        for i, l in enumerate(self.lands):
            if l is None:
                continue
            sig[i, : len(l.signature)] = l.signature.astype(np.float16)
            lengths[i] = len(l.signature)
            desc[i] = l.descriptor
        arrays = {"signatures": sig, "lengths": lengths, "land_descriptors": desc,
                  "descriptor": self.descriptor.astype(np.float32)}
        attrs = {
            "pixel_um": self.pixel_um,
            "lands": [None if l is None else l.info() for l in self.lands],
            "version": BULLET_FEATURES_VERSION,
        }
        return arrays, attrs

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], attrs: dict) -> "PreparedBullet":
        sig = np.asarray(arrays["signatures"])
        lengths = np.asarray(arrays["lengths"])
        desc = np.asarray(arrays["land_descriptors"], dtype=np.float32)
        px = float(attrs["pixel_um"])
        lands: list[PreparedLand | None] = []
        for i, info in enumerate(attrs["lands"]):
            if info is None:
                lands.append(None)
                continue
            st = info.get("stability")
            lands.append(PreparedLand(
                signature=sig[i, : int(lengths[i])].astype(np.float32),
                pixel_um=px,
                descriptor=desc[i].copy(),
                rms_um=float(info["rms_um"]),
                transposed=bool(info.get("transposed", False)),
                band_um=tuple(info.get("band_um", (0.0, 0.0))),
                grooves_um=tuple(info.get("grooves_um", (0.0, 0.0))),
                x0_um=float(info.get("x0_um", 0.0)),
                stability=float("nan") if st is None else float(st),
                tilt_deg=float(info.get("tilt_deg", 0.0)),
                source=info.get("source"),
                sha256=info.get("sha256"),
                notes=tuple(info.get("notes", ())),
            ))
        return cls(lands=tuple(lands), pixel_um=px, descriptor=np.asarray(arrays["descriptor"], dtype=np.float32))

    def sha256(self) -> str:
        """Identity of the bullet's sources (see :func:`bullet_sha256`)."""
        return bullet_sha256([None if l is None else (l.sha256 or "unknown") for l in self.lands])


def bullet_sha256(land_sha256: Sequence[str | None]) -> str:
    """Identity of a bullet's sources: SHA-256 over its land files' SHA-256 in land order.

    ``None`` marks a land that was not scanned. The same files in the same
    order give the same identity, so a bullet already on file is recognised.
    """
    h = hashlib.sha256(b"ibin-bullet\n")
    for s in land_sha256:
        h.update((s if s is not None else "missing").encode() + b"\n")
    return h.hexdigest()


# --------------------------------------------------------------------------- 1-D helpers


def _lowpass_1d(values: np.ndarray, pixel_um: float, cutoff_um: float, axis: int = -1) -> np.ndarray:
    """ISO 16610-21 Gaussian low-pass along one axis, NaN-aware (normalised convolution)."""
    v = np.asarray(values, dtype=np.float64)
    m = np.isfinite(v)
    sigma = ISO_ALPHA * cutoff_um / math.sqrt(2.0 * math.pi) / pixel_um
    if sigma < 0.3:
        return np.where(m, v, np.nan)
    num = ndimage.gaussian_filter1d(np.where(m, v, 0.0), sigma, axis=axis, mode="constant", truncate=4.0)
    den = ndimage.gaussian_filter1d(m.astype(np.float64), sigma, axis=axis, mode="constant", truncate=4.0)
    out = np.full_like(v, np.nan)
    ok = m & (den > 1e-3)
    out[ok] = num[ok] / den[ok]
    return out


def _bandpass_1d(values: np.ndarray, pixel_um: float, short_um: float, long_um: float, axis: int = -1) -> np.ndarray:
    return _lowpass_1d(values, pixel_um, short_um, axis) - _lowpass_1d(values, pixel_um, long_um, axis)


def _robust_quadratic(x: np.ndarray, y: np.ndarray, *, iterations: int = 8) -> np.ndarray:
    """Quadratic fitted to ``y(x)`` by iteratively reweighted least squares (Tukey bisquare).

    Returns the fit evaluated at every ``x`` (NaN in ``y`` is ignored).
    Points further than 4.685 robust standard deviations get no weight, so
    striae, specks and the groove-engraved areas do not pull the curvature.
    """
    m = np.isfinite(y)
    if m.sum() < 3:
        return np.full_like(x, np.nanmean(y) if m.any() else 0.0, dtype=np.float64)
    xm, ym = x[m], y[m]
    c0, sc = float(xm.mean()), float(np.ptp(xm)) or 1.0
    t = (xm - c0) / sc
    A = np.stack([np.ones_like(t), t, t * t], axis=1)
    w = np.ones_like(t)
    coef = np.zeros(3)
    for it in range(iterations):
        Aw = A * w[:, None]
        try:
            coef = np.linalg.solve(Aw.T @ A, Aw.T @ ym)  # weighted normal equations (3 x 3)
        except np.linalg.LinAlgError:
            coef = np.linalg.lstsq(A * np.sqrt(w)[:, None], ym * np.sqrt(w), rcond=None)[0]
        r = ym - A @ coef
        s = 1.4826 * float(np.median(np.abs(r[w > 0]))) if (w > 0).any() else 0.0
        if not s > 0:
            break
        u = r / (4.685 * s)
        w_new = np.where(np.abs(u) < 1.0, (1.0 - u * u) ** 2, 0.0)
        if (w_new > 0).sum() < 3:
            break
        if it > 1 and float(np.max(np.abs(w_new - w))) < 1e-3:
            break
        w = w_new
    ta = (x - c0) / sc
    return coef[0] + coef[1] * ta + coef[2] * ta * ta


def _profile_ccf(a: np.ndarray, b: np.ndarray, min_overlap: float, max_lag: float = math.inf) -> tuple[float, float]:
    """Largest Pearson correlation of two profiles over lags up to ``max_lag`` samples (NaN-aware).

    Returns ``(ccf, lag)`` with ``a[i]`` matching ``b[i - lag]`` (lag in
    samples, refined to a fraction of a sample by a parabola through the
    peak), or ``(nan, nan)`` when no lag overlaps ``min_overlap`` of the
    shorter profile's measured points. Sums over the overlap come from FFTs,
    so every lag costs the same.
    """
    ma, mb = np.isfinite(a), np.isfinite(b)
    na, nb = int(ma.sum()), int(mb.sum())
    if na < 3 or nb < 3:
        return float("nan"), float("nan")
    A = np.where(ma, a, 0.0)
    B = np.where(mb, b, 0.0)
    n = len(a) + len(b)
    nfft = 1 << (n - 1).bit_length()
    fa = np.fft.rfft(np.stack([A, A * A, ma.astype(np.float64)]), nfft)
    fb = np.fft.rfft(np.stack([B, B * B, mb.astype(np.float64)]), nfft)
    cb = np.conj(fb)

    def xc(i, j):
        return np.fft.irfft(fa[i] * cb[j], nfft)

    N = np.rint(xc(2, 2))
    SA, SB = xc(0, 2), xc(2, 0)
    SAA, SBB, SAB = xc(1, 2), xc(2, 1), xc(0, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        va = SAA - SA * SA / N
        vb = SBB - SB * SB / N
        r = (SAB - SA * SB / N) / np.sqrt(va * vb)
    lags = np.arange(nfft)
    lags = np.where(lags < nfft // 2, lags, lags - nfft)
    bad = (N < max(3.0, min_overlap * min(na, nb))) | ~(va > 1e-12 * N) | ~(vb > 1e-12 * N) | ~np.isfinite(r)
    bad |= np.abs(lags) > max_lag
    r[bad] = -np.inf
    k = int(np.argmax(r))
    if not np.isfinite(r[k]):
        return float("nan"), float("nan")
    off = 0.0
    if np.isfinite(r[k - 1]) and np.isfinite(r[(k + 1) % nfft]):
        y0, y1, y2 = r[k - 1], r[k], r[(k + 1) % nfft]
        d = y0 - 2.0 * y1 + y2
        off = 0.5 * (y0 - y2) / d if d < 0 else 0.0
    lag = k if k < nfft // 2 else k - nfft
    return float(r[k]), float(lag + off)


# --------------------------------------------------------------------------- stage 1: axis


def striae_axis(values: np.ndarray, pixel_x_um: float, pixel_y_um: float, *,
                short_cutoff_um: float = 8.0, long_cutoff_um: float = 250.0,
                axis_tolerance_deg: float = 15.0) -> tuple[str, float]:
    """Which way the striae run: ``("y", share)`` or ``("x", share)``.

    The gradient structure tensor of the band-passed surface is averaged over
    windows about 25 µm wide; each window whose dominant gradient lies within
    ``axis_tolerance_deg`` of a scan axis votes for that axis, weighted by
    its coherence (1 for parallel lines, 0 for isotropic texture). Striae
    are the longest coherent lines on a land and run along the bullet, so
    the axis the gradients point along is the axis across the land. Tank
    rash and other scratches are oblique and do not vote. The scan's axes
    are assumed to be aligned with the bullet to within the tolerance, as
    LEA scans are.

    Returns
    -------
    axis : {"y", "x"}
        ``"y"``: striae run along the rows' direction (down the columns), so
        a crosscut is a row; ``"x"``: they run along the rows.
    share : float
        Share of the coherence-weighted vote the winning axis got (0.5 =
        undecided, 1 = unanimous).

    References
    ----------
    J. Bigun, G. H. Granlund, "Optimal orientation detection of linear
    symmetry", Proc. IEEE ICCV 1987, pp. 433-438.
    """
    v = np.asarray(values, dtype=np.float64)
    step_um = max(4.0, pixel_x_um, pixel_y_um)  # ~4 µm: striae still resolved, fast
    c = resample(v, (pixel_y_um, pixel_x_um), step_um)
    if min(c.shape) < 8:
        # a strip: assume it was scanned across the land
        return ("y", 0.5) if c.shape[0] <= c.shape[1] else ("x", 0.5)
    lo = gaussian_lowpass(c, step_um, long_cutoff_um)
    hp = gaussian_lowpass(c, step_um, short_cutoff_um) - lo
    valid = np.isfinite(hp)
    z = np.where(valid, hp, 0.0)
    s = robust_std(hp)
    if np.isfinite(s) and s > 0:
        z = np.clip(z, -4 * s, 4 * s)  # steep groove walls and specks must not dominate
    gx = ndimage.sobel(z, axis=1)
    gy = ndimage.sobel(z, axis=0)
    ok = ndimage.binary_erosion(valid, iterations=2).astype(np.float64)
    win = max(1.0, 12.5 / step_um)
    jxx = ndimage.gaussian_filter(gx * gx * ok, win)
    jyy = ndimage.gaussian_filter(gy * gy * ok, win)
    jxy = ndimage.gaussian_filter(gx * gy * ok, win)
    tr = jxx + jyy
    coh = np.sqrt((jxx - jyy) ** 2 + 4 * jxy * jxy) / np.where(tr > 0, tr, np.inf)
    theta = 0.5 * np.arctan2(2 * jxy, jxx - jyy)  # dominant gradient direction, 0 = along x
    tol = math.radians(axis_tolerance_deg)
    across_x = np.abs(theta) <= tol  # gradients along x: striae run along y
    across_y = np.abs(np.abs(theta) - math.pi / 2) <= tol
    w = coh * ok
    vote_y = float((w * across_x).sum())
    vote_x = float((w * across_y).sum())
    tot = vote_x + vote_y
    if not tot > 0:
        return ("y", 0.5) if c.shape[0] <= c.shape[1] else ("x", 0.5)
    return ("y", vote_y / tot) if vote_y >= vote_x else ("x", vote_x / tot)


# --------------------------------------------------------------------------- stage 2: crosscut


def _slab_profiles(v: np.ndarray, rows_per_slab: int) -> np.ndarray:
    """Mean profile of each slab of ``rows_per_slab`` rows (NaN where under half measured)."""
    n = v.shape[0] // rows_per_slab
    blk = v[: n * rows_per_slab].reshape(n, rows_per_slab, v.shape[1])
    m = np.isfinite(blk)
    cnt = m.sum(axis=1)
    s = np.where(m, blk, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = s / cnt
    out[cnt < 0.5 * rows_per_slab] = np.nan
    return out


def _core_residuals(profiles: np.ndarray, px: float, p: BulletParams) -> np.ndarray:
    """Crosscut profiles reduced to their striae: centre of the land only, curvature and waviness removed."""
    out = np.full_like(profiles, np.nan)
    x = np.arange(profiles.shape[1]) * px
    lo_q, hi_q = 0.5 - p.crosscut_core / 2, 0.5 + p.crosscut_core / 2
    for i, prof in enumerate(profiles):
        m = np.isfinite(prof)
        if m.sum() < 16:
            continue
        q0, q1 = np.quantile(x[m], [lo_q, hi_q])
        core = np.where((x >= q0) & (x <= q1), prof, np.nan)
        out[i] = core - _robust_quadratic(x, core)
    return _bandpass_1d(out, px, p.short_cutoff_um, p.long_cutoff_um, axis=1)


def _band_tilt(cores: list[np.ndarray], first: int, last: int, k: int, px: float, py: float,
               p: BulletParams) -> float:
    """Tilt of the striae across slabs ``first..last`` of the band, in pixels across per row along (0 if unmeasured).

    Slabs ``d`` apart (``d`` = 1, 2, 4, ... up to the band's length) are
    compared at the lags the tilt allowance explains; a pair that agrees
    (correlation >= 0.5) gives the tilt ``lag / (d k)``, and the tilt is the
    median of these, each weighted by ``d^2``. Neighbouring slabs alone
    would do, but their lags are a fraction of a pixel, which the peak's
    sub-pixel fit pulls towards zero (a 2° tilt measured 1.45° from them at
    1.5625 µm/px); the band's first and last slabs alone would not: striae
    change along a bullet, and on some real lands slabs 200 µm apart no
    longer agree, so the tilt went unmeasured where undoing it matters most.
    """
    tan_max = math.tan(math.radians(p.max_tilt_deg))
    slopes, weights = [], []
    d = 1
    while d <= last - first:
        for a in range(first, last - d + 1):
            ccf, lag = _profile_ccf(cores[a], cores[a + d], p.min_overlap, tan_max * d * k * py / px + 1.0)
            if np.isfinite(lag) and ccf >= 0.5:
                slopes.append(lag / (d * k))
                weights.append(float(d * d))
        d *= 2
    if not slopes:
        return 0.0
    order = np.argsort(slopes)
    cum = np.cumsum(np.asarray(weights)[order])
    t = float(np.asarray(slopes)[order][int(np.searchsorted(cum, 0.5 * cum[-1]))])
    return t if abs(t) * px / py <= tan_max else 0.0


def _stable_run(stab: np.ndarray, threshold: float, reference: float) -> tuple[int, int]:
    """The run of consecutive comparisons at or above ``threshold`` where crosscuts agree best.

    Runs are scored by their total excess of correlation over ``reference``
    (the stability threshold; when no comparison reaches it, by their total
    correlation), so a long run that is clearly stable wins over a short one
    and over a long one that only just passes: the band goes where the
    striae are best expressed, which on most bullets is near the heel (Hare
    et al. 2017 start their search there), without needing to know which
    end of the scan the heel is. Returns (first, last) comparison indices.
    """
    runs = []
    i, n = 0, len(stab)
    while i < n:
        if stab[i] >= threshold:
            j = i
            while j + 1 < n and stab[j + 1] >= threshold:
                j += 1
            runs.append((i, j))
            i = j + 1
        else:
            i += 1
    if not runs:
        k = int(np.argmax(stab))
        return k, k
    base = reference if float(np.max(stab)) >= reference else 0.0
    scores = [float(np.sum(stab[a : b + 1] - base)) for a, b in runs]
    return runs[int(np.argmax(scores))]


# --------------------------------------------------------------------------- stage 4: grooves


def _find_grooves(profile: np.ndarray, px: float, p: BulletParams) -> tuple[int, int, list[str]]:
    """LEA boundaries (sample indices, inclusive) of a band profile across the whole scan.

    The curvature is fitted robustly (groove-engraved areas are outliers);
    from the middle of the land outward, the first place where the smoothed
    residual rises ``groove_rise_um`` above the arc and stays there for
    ``groove_extent_um`` is a shoulder; the boundary is the foot of that
    rise (where the residual was last within a quarter of the rise of the
    arc). Done twice, the second time with the curvature fitted to the land
    found the first time. Without a shoulder, the land runs to the end of
    the measured data.
    """
    notes: list[str] = []
    x = np.arange(len(profile)) * px
    measured = np.isfinite(profile)
    idx = np.flatnonzero(measured)
    first, last = int(idx[0]), int(idx[-1])
    lea = measured.copy()
    n_up = max(1, int(round(p.groove_extent_um / px)))
    lo, hi = first, last
    found = [False, False]
    for _ in range(2):
        fit = _robust_quadratic(x, np.where(lea, profile, np.nan))
        rs = _lowpass_1d(profile - fit, px, p.groove_smooth_um)
        centre = int(np.median(np.flatnonzero(lea)))
        edges = []
        for k, d in enumerate((-1, 1)):
            edge = None
            i = centre
            while first <= i <= last:
                if np.isfinite(rs[i]) and rs[i] > p.groove_rise_um:
                    seg = rs[i : i + n_up] if d > 0 else rs[max(i - n_up + 1, 0) : i + 1]
                    seg = seg[np.isfinite(seg)]
                    if seg.size and np.all(seg > p.groove_rise_um):
                        j = i
                        while first < j < last and not (np.isfinite(rs[j]) and rs[j] <= 0.25 * p.groove_rise_um):
                            j -= d
                        edge = j
                        break
                i += d
            found[k] = edge is not None
            edges.append(edge if edge is not None else (first if d < 0 else last))
        lo, hi = edges
        if hi - lo < 16:
            lo, hi = first, last
            found = [False, False]
            break
        lea = measured & (np.arange(len(profile)) >= lo) & (np.arange(len(profile)) <= hi)
    for k, side in enumerate(("left", "right")):
        if not found[k]:
            notes.append(f"no {side} groove found: the land runs to the end of the measured data")
    return lo, hi, notes


# --------------------------------------------------------------------------- preparation


def prepare_land(scan: Scan, params: BulletParams | None = None) -> PreparedLand:
    """Prepare one land-engraved-area scan: crosscut, grooves, curvature, signature.

    Parameters
    ----------
    scan : Scan
        Height map (µm) of one land-engraved area, raw (grooves and curvature
        included) or already cropped; the striae may run along either axis.
    params : BulletParams, optional

    Returns
    -------
    PreparedLand

    Raises
    ------
    ScanError
        If the scan is not a height map, is too coarse for the striae, holds
        too little land, or is flat.

    References
    ----------
    E. Hare, H. Hofmann, A. Carriquiry (2017), doi:10.1214/17-AOAS1080
    (stable crosscut, groove removal, curvature removal, signature).
    """
    p = params or BulletParams()
    src = scan.source
    notes: list[str] = []
    if scan.modality != "height":
        raise ScanError(src, "a bullet land needs a height map (3-D topography); this is an intensity image")
    # 1. axis: make the striae run along the rows' direction
    axis, share = striae_axis(scan.values, scan.pixel_x_um, scan.pixel_y_um,
                              short_cutoff_um=p.short_cutoff_um, long_cutoff_um=p.long_cutoff_um)
    transposed = axis == "x"
    v = np.array(scan.values.T if transposed else scan.values, dtype=np.float64)
    px, py = (scan.pixel_y_um, scan.pixel_x_um) if transposed else (scan.pixel_x_um, scan.pixel_y_um)
    if transposed:
        notes.append(f"striae run along the scan's x axis (vote {share:.2f}); crosscuts taken along y")
    if px > p.short_cutoff_um / 2:
        raise ScanError(src, f"the spacing across the land is {px:g} µm: too coarse for striae "
                             f"(at most {p.short_cutoff_um / 2:g} µm is needed)")
    width_um = v.shape[1] * px
    if width_um < p.min_length_um:
        raise ScanError(src, f"the scan is only {width_um:.0f} µm across the land; at least "
                             f"{p.min_length_um:.0f} µm are needed to compare")
    finite = np.isfinite(v)
    if not finite.any() or (np.nanmax(v) - np.nanmin(v)) <= 0:
        raise ScanError(src, "the surface is constant: there is nothing to compare")
    # 2. stable crosscut: slabs along the striae, neighbours compared
    k = max(1, int(round(p.crosscut_step_um / py)))
    n_slabs = v.shape[0] // k
    stability = float("nan")
    tilt_px_per_row = 0.0
    if n_slabs >= 2:
        slabs = _slab_profiles(v, k)
        cores = _core_residuals(slabs, px, p)
        # striae run along the bullet: neighbouring crosscuts agree at a lag of at most the
        # tilt allowance; oblique marks (tank rash, scratches) agree only further out
        max_lag = math.tan(math.radians(p.max_tilt_deg)) * k * py / px + 1.0
        # a crosscut spans the land: slabs measured across less than min_overlap of the widest one (a
        # scan's corner, where a turned or partly out-of-focus field holds a stub of each row) are not
        # candidates; short stubs agree with each other all too easily and the band went there
        width = np.isfinite(slabs).sum(axis=1)
        whole = width >= p.min_overlap * width.max()
        stab = np.full(n_slabs - 1, np.nan)
        for i in range(n_slabs - 1):
            if whole[i] and whole[i + 1]:
                stab[i] = _profile_ccf(cores[i], cores[i + 1], p.min_overlap, max_lag)[0]
        good = np.isfinite(stab)
        if not good.any():
            raise ScanError(src, "no two neighbouring crosscuts overlap: the scan holds too little land")
        best = float(np.nanmax(stab))
        thr = min(p.stable_ccf, best)
        i0, i1 = _stable_run(np.where(good, stab, -np.inf), thr, p.stable_ccf)
        if best < p.stable_ccf:
            notes.append(f"no stable crosscut (neighbouring crosscuts agree at most {best:.2f} < {p.stable_ccf:g}, "
                         "damaged or weakly marked land): the most stable pair is used")
        r0, r1 = i0 * k, (i1 + 2) * k
        stability = float(np.median(stab[i0 : i1 + 1]))
        tilt_px_per_row = _band_tilt(cores, i0, i1 + 1, k, px, py, p)
    else:
        r0, r1 = 0, v.shape[0]
        notes.append("the scan is too short along the striae to check crosscut stability: all rows are averaged")
    # 3. band profile, tilt undone
    band = v[r0:r1]
    if abs(tilt_px_per_row) * (r1 - r0) > 0.5:
        # a stria at x in the band's first row lies at x - lag in its last row
        shifts = -(np.arange(r0, r1) - 0.5 * (r0 + r1 - 1)) * tilt_px_per_row
        band = _shift_rows(band, shifts)
    m = np.isfinite(band)
    cnt = m.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        profile = np.where(m, band, 0.0).sum(axis=0) / cnt
    profile[cnt < 0.5 * band.shape[0]] = np.nan
    if np.isfinite(profile).sum() * px < p.min_length_um:
        raise ScanError(src, "too few points were measured across the land in its stable region "
                             f"(less than {p.min_length_um:.0f} µm)")
    # 4. grooves
    g_lo, g_hi, gnotes = _find_grooves(profile, px, p)
    notes.extend(gnotes)
    margin = int(round(p.groove_margin_um / px))
    lo, hi = g_lo + margin, g_hi - margin
    if (hi - lo + 1) * px < p.min_length_um:
        raise ScanError(src, f"the land between the grooves is only {max(hi - lo + 1, 0) * px:.0f} µm wide; "
                             f"at least {p.min_length_um:.0f} µm are needed to compare")
    land = profile[lo : hi + 1]
    xl = np.arange(len(land)) * px
    # 5. curvature, spikes, band-pass
    resid = land - _robust_quadratic(xl, land)
    smooth = _lowpass_1d(resid, px, p.groove_smooth_um)
    s = robust_std(resid - smooth)
    if np.isfinite(s) and s > 0:
        spikes = np.abs(resid - smooth) > p.outlier_sigma * s
        if spikes.any():
            resid[spikes] = np.nan
            notes.append(f"{int(spikes.sum())} spike points removed")
    sig = _bandpass_1d(resid, px, p.short_cutoff_um, p.long_cutoff_um)
    # 6. canonical spacing
    sig = _resample_1d(sig, px, p.pixel_um)
    meas = np.flatnonzero(np.isfinite(sig))
    if meas.size < 2 or (meas[-1] - meas[0] + 1) * p.pixel_um < p.min_length_um:
        raise ScanError(src, f"the land signature is shorter than {p.min_length_um:.0f} µm")
    x0_um = (lo + 0.5) * px + meas[0] * p.pixel_um  # column j is centred at (j + 0.5) px
    sig = sig[meas[0] : meas[-1] + 1].astype(np.float32)
    rms = float(np.sqrt(np.nanmean(sig.astype(np.float64) ** 2)))
    if not rms > 0:
        raise ScanError(src, "the land signature is flat: no striae to compare")
    desc = land_descriptor(sig, p.pixel_um, p)
    return PreparedLand(
        signature=sig,
        pixel_um=p.pixel_um,
        descriptor=desc,
        rms_um=rms,
        transposed=transposed,
        band_um=(r0 * py, r1 * py),
        grooves_um=((g_lo + 0.5) * px, (g_hi + 0.5) * px),
        x0_um=float(x0_um),
        stability=stability,
        tilt_deg=math.degrees(math.atan2(-tilt_px_per_row * px, py)),
        source=src,
        sha256=scan.sha256,
        notes=tuple(notes),
    )


def _shift_rows(band: np.ndarray, shifts_px: np.ndarray) -> np.ndarray:
    """Shift each row by a fraction of a sample (linear interpolation; NaN stays out)."""
    n = band.shape[1]
    src = np.arange(n, dtype=np.float64)[None, :] + np.asarray(shifts_px, dtype=np.float64)[:, None]
    j = np.floor(src).astype(np.int64)
    f = src - j
    ok = (j >= 0) & (j + 1 < n)
    jj = np.clip(j, 0, n - 2)
    rows = np.arange(band.shape[0])[:, None]
    val = (1 - f) * band[rows, jj] + f * band[rows, jj + 1]
    return np.where(ok, val, np.nan)


def _resample_1d(values: np.ndarray, pixel_in_um: float, pixel_out_um: float) -> np.ndarray:
    """Resample a (low-passed) profile to another spacing by linear interpolation; NaN spreads to neighbours."""
    if abs(pixel_in_um - pixel_out_um) < 1e-9 * pixel_out_um:
        return np.asarray(values, dtype=np.float64).copy()
    v = np.asarray(values, dtype=np.float64)
    n_out = int(math.floor((len(v) - 1) * pixel_in_um / pixel_out_um)) + 1
    pos = np.arange(n_out) * (pixel_out_um / pixel_in_um)
    j = np.minimum(np.floor(pos).astype(np.int64), len(v) - 2) if len(v) > 1 else np.zeros(n_out, np.int64)
    f = pos - j
    if len(v) == 1:
        return v.copy()
    out = (1 - f) * v[j] + f * v[j + 1]
    exact = f < 1e-9
    out[exact] = v[j[exact]]
    return out


# --------------------------------------------------------------------------- stage 7: descriptors


def land_descriptor(signature: np.ndarray, pixel_um: float, params: BulletParams | None = None) -> np.ndarray:
    """Shift-invariant index descriptor of a land signature (L2-normalised float32).

    The periodogram of the (Hann-tapered) signature is sampled at fixed
    frequencies between ``1 / descriptor_max_wavelength_um`` and
    ``1 / descriptor_min_wavelength_um``, every ``1 / descriptor_length_um``
    cycles per µm. A shift of the profile changes only the phase of its
    Fourier coefficients, so the power does not depend on where the
    grooves were cut. The log power is reduced to its deviation from a
    straight line in log-log coordinates: the overall level and slope of
    the spectrum (instrument, filtering, striation depth) are common to all
    lands, while the pattern of peaks and dips belongs to the land's
    particular striae. Two scans of the same land have correlated patterns,
    different lands do not; the inner product of two descriptors is that
    correlation.

    Parameters
    ----------
    signature : ndarray (n,)
        Land signature in µm, NaN = missing (counted as zero after the mean
        is removed).
    pixel_um : float
        Spacing of ``signature``.
    params : BulletParams, optional
        Descriptor band.

    Returns
    -------
    ndarray (params.descriptor_dim,), float32
    """
    from ._kernels_nb import dft_power

    p = params or BulletParams()
    s = np.asarray(signature, dtype=np.float64)
    m = np.isfinite(s)
    if m.sum() < 8:
        raise ValueError("too few measured points for a land descriptor")
    n = len(s)
    w = np.hanning(n + 2)[1:-1]
    z = np.where(m, s - s[m].mean(), 0.0) * w
    f = p.descriptor_frequencies
    power = dft_power(np.ascontiguousarray(z), float(pixel_um), np.ascontiguousarray(f))
    floor = max(float(power.max()) * 1e-12, 1e-300)
    L = np.log(power + floor)
    A = np.stack([np.ones_like(f), np.log(f)], axis=1)
    coef, *_ = np.linalg.lstsq(A, L, rcond=None)
    r = L - A @ coef
    nrm = float(np.linalg.norm(r))
    return (r / nrm if nrm > 0 else r).astype(np.float32)


def bullet_descriptor(land_descriptors: np.ndarray) -> np.ndarray:
    """Bullet-level index descriptor: the normalised mean of its land descriptors.

    A mean does not depend on the order of the lands nor on which land was
    scanned first, so one vector per bullet serves a search by bullet; the
    inner product of two bullet descriptors is (up to normalisation) the
    average similarity over all 36 land pairs, in which the 6 same-land
    pairs of a same-barrel bullet stand out.
    """
    d = np.asarray(land_descriptors, dtype=np.float64)
    if d.ndim != 2 or len(d) == 0:
        raise ValueError("need at least one land descriptor")
    v = d.mean(axis=0)
    nrm = float(np.linalg.norm(v))
    return (v / nrm if nrm > 0 else v).astype(np.float32)


def prepare_bullet(lands: Sequence[Scan | None], params: BulletParams | None = None) -> PreparedBullet:
    """Prepare the lands of one bullet (in land order; ``None`` = land not scanned).

    Raises
    ------
    ScanError
        If any scan fails (the message names the file), or no land is given.
    """
    p = params or BulletParams()
    if len(lands) == 0 or all(l is None for l in lands):
        raise ScanError(None, "a bullet needs at least one scanned land")
    if len(lands) > 255:
        raise ValueError(f"a bullet has at most 255 lands, got {len(lands)}")
    prepared = tuple(None if s is None else prepare_land(s, p) for s in lands)
    desc = bullet_descriptor(np.stack([l.descriptor for l in prepared if l is not None]))
    return PreparedBullet(lands=prepared, pixel_um=p.pixel_um, descriptor=desc)
