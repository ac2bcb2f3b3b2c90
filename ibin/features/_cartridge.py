"""Cartridge-case preparation: from a scan to the arrays the index and re-rank use.

Stages, in order (each one a function call in :func:`prepare_cartridge`):

1. square pixels: resample if the x and y spacings differ;
2. form removal: robust least-squares plane and quadric on a coarse copy
   (heights only), used to find
3. the breech-face region: primer outline and firing-pin impression
   (:func:`~ibin.features._roi.find_breech_face`), whose own form (a robust
   quadric fitted to the region) is then subtracted from the heights, so
   that tilt cannot leak through the filter's edges;
4. outliers: spikes further than ``outlier_sigma`` robust deviations from the
   local (short-cut-off) mean are removed;
5. resampling to the canonical ``pixel_um`` (area average = anti-aliasing);
   on a scan with a firing-pin impression, the mean height of each ring
   about the impression is then removed (the crater's rim and the primer
   that flowed back into the aperture are round about the pin and alike on
   every case; :func:`_remove_rings`): on a raw scan all of it, on one
   segmented before only its slow part (what a mask drawn tight around the
   aperture left of the flow-back), so that concentric marks stay; and the
   slow part of each ring's first harmonics in angle, the crescent that an
   off-centre strike leaves;
6. Gaussian band-pass between ``short_cutoff_um`` and ``long_cutoff_um``
   (ISO 16610-21, NaN-aware), edges eroded by ``edge_erosion_um``;
7. crop to the region and scale to unit RMS;
8. signatures: polar power spectrum and its rotation-invariant descriptor;
   anchored polar signatures around the firing-pin aperture and the primer
   centre.

Already-processed scans (NaN outside the breech face, levelled and
band-passed like the CSAFE Fadul files) pass through the same stages: the
region detection sees that every measured point lies on the breech face and
keeps the region whole, and filtering an already filtered surface again
within the same band changes it little.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import ScanError
from ..scan import Scan
from ._filters import block_mean, check_band, gaussian_bandpass, level_polynomial, resample, robust_std
from ._roi import Circle, find_breech_face
from ._polar import PolarParams, anchors_of, from_vector, polar_signature, to_vector
from ._spectrum import polar_spectrum, spectrum_descriptor

__all__ = ["CartridgeParams", "PreparedCartridge", "prepare_cartridge", "FEATURES_VERSION", "quantize", "dequantize"]

#: Version of the prepared-array layout and of the preparation method; stored
#: with every database so that exhibits prepared differently are never mixed.
FEATURES_VERSION = "cartridge-7"

_Q_SCALE = 25.0  # int8 storage: unit-RMS values * 25, clipped to +-127 (5.08 sigma)
_Q_MISSING = -128


@dataclass(frozen=True)
class CartridgeParams:
    """Parameters of cartridge-case preparation, all in µm.

    Attributes
    ----------
    pixel_um : float
        Canonical comparison grid. 12.5 µm samples the 40 µm short cut-off
        at more than three points per wavelength.
    short_cutoff_um, long_cutoff_um : float
        Gaussian band-pass (ISO 16610-21) limits. 40 and 400 µm are the
        values of Song et al. (2014) for breech-face topography; the band
        holds the individual breech-face marks and removes instrument noise
        and the primer's form.
    firing_pin_margin_um, primer_margin_um : float
        Measured material removed around a firing-pin crater and inside a
        primer edge found on a raw scan (roll-over zones).
    edge_erosion_um : float
        The region is eroded by this much after filtering so that filter
        edge effects at missing data (and roll-off left at the border of an
        already-processed region) do not enter comparisons.
    outlier_sigma : float
        Spike threshold, in robust standard deviations of the short-wave
        residual.
    min_area_mm2 : float
        A breech-face region smaller than this is refused as too small to
        compare (four 400 µm cells).
    ring_harmonics : int
        Harmonics in angle (1 to this) of each ring about the firing pin
        whose slow part is removed with the rings' means: what turns over
        a quarter-turn or more about the pin, as the flowed-back primer of
        an off-centre strike does (:func:`_remove_rings`); 0 removes the
        means alone.
    spectrum_rings, spectrum_orientations, spectrum_harmonics : int
        Size of the polar power spectrum and of the descriptor
        (``2 * rings * harmonics`` values).

    References
    ----------
    J. Song, W. Chu, M. Tong, J. Soons, "3D topography measurements on
    correlation cells - a new approach to forensic ballistics
    identifications", Meas. Sci. Technol. 25:064005, 2014.
    doi:10.1088/0957-0233/25/6/064005
    """

    pixel_um: float = 12.5
    short_cutoff_um: float = 40.0
    long_cutoff_um: float = 400.0
    firing_pin_margin_um: float = 100.0
    primer_margin_um: float = 100.0
    edge_erosion_um: float = 25.0
    outlier_sigma: float = 8.0
    min_area_mm2: float = 0.64
    ring_harmonics: int = 4
    spectrum_rings: int = 16
    spectrum_orientations: int = 64
    spectrum_harmonics: int = 8

    def __post_init__(self) -> None:
        check_band(self.pixel_um, self.short_cutoff_um, self.long_cutoff_um)

    @property
    def descriptor_dim(self) -> int:
        return 2 * self.spectrum_rings * self.spectrum_harmonics

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, eq=False)
class PreparedCartridge:
    """A cartridge case ready for the index and the re-rank.

    Attributes
    ----------
    surface : ndarray (rows, cols), float32
        Band-passed breech face on the canonical grid, scaled to unit RMS,
        NaN outside the region.
    pixel_um : float
        Spacing of ``surface``.
    rms : float
        RMS of the band-passed surface before scaling (µm for heights).
    modality : {"height", "intensity"}
    spectrum : ndarray (rings, orientations), float32
        Polar log power spectrum (rotation hypotheses).
    coarse : ndarray, float32
        ``surface`` on a 4x coarser grid (4 x 4 block means, unit RMS), for
        the screening stage of a search.
    polar : ndarray (anchors, rings, harmonics), complex64
        Anchored polar signatures (:func:`ibin.features.polar_signature`),
        one per anchor in ``anchors``.
    anchors : tuple of str
        The anchor of each polar signature: ``"firing_pin"``, ``"primer"``
        or ``"centroid"``.
    descriptor : ndarray (d,), float32
        L2-normalised rotation-invariant index descriptor.
    primer, firing_pin : Circle or None
        Detected geometry, in µm in the frame of ``surface``.
    origin_um : (float, float)
        Position (x, y) in the scan's frame (µm from its top-left corner) of
        the top-left corner of ``surface``.
    scan_size_um : (float, float)
        Width and height of the scan the surface came from (its centre is
        the rotation centre of reported alignments).
    notes : tuple of str
        How the scan was prepared.
    """

    surface: np.ndarray
    pixel_um: float
    rms: float
    modality: str
    spectrum: np.ndarray
    descriptor: np.ndarray
    coarse: np.ndarray | None = None
    polar: np.ndarray | None = None
    anchors: tuple[str, ...] = ()
    primer: Circle | None = None
    firing_pin: Circle | None = None
    origin_um: tuple[float, float] = (0.0, 0.0)
    scan_size_um: tuple[float, float] = (0.0, 0.0)
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def scan_centre_um(self) -> tuple[float, float]:
        return (self.scan_size_um[0] / 2.0, self.scan_size_um[1] / 2.0)

    @property
    def valid_area_mm2(self) -> float:
        return float(np.isfinite(self.surface).sum()) * self.pixel_um**2 * 1e-6

    # ------------------------------------------------------------------ storage
    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict]:
        """Compact arrays and JSON-able attributes for the feature store.

        The surface is stored as int8 (unit-RMS values times 25, -128 =
        missing): quantisation noise is 0.012 RMS, far below the
        correlations that matter.
        """
        s = self.surface
        q = quantize(s)
        arrays = {"surface_q": q, "spectrum": self.spectrum.astype(np.float32), "descriptor": self.descriptor,
                  "coarse_q": quantize(self.coarse if self.coarse is not None else block_mean(s, 4))}
        if self.polar is not None:
            arrays["polar"] = to_vector(self.polar)
        attrs = {
            "pixel_um": self.pixel_um,
            "rms": self.rms,
            "modality": self.modality,
            "primer": None if self.primer is None else asdict(self.primer),
            "firing_pin": None if self.firing_pin is None else asdict(self.firing_pin),
            "anchors": list(self.anchors),
            "origin_um": [float(self.origin_um[0]), float(self.origin_um[1])],
            "scan_size_um": [float(self.scan_size_um[0]), float(self.scan_size_um[1])],
            "notes": list(self.notes),
            "version": FEATURES_VERSION,
        }
        return arrays, attrs

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], attrs: dict) -> "PreparedCartridge":
        s = dequantize(arrays["surface_q"])
        circ = lambda d: None if d is None else Circle(**d)  # noqa: E731
        return cls(
            surface=s,
            pixel_um=float(attrs["pixel_um"]),
            rms=float(attrs["rms"]),
            modality=str(attrs["modality"]),
            spectrum=np.asarray(arrays["spectrum"], dtype=np.float32),
            descriptor=np.asarray(arrays["descriptor"], dtype=np.float32),
            coarse=dequantize(arrays["coarse_q"]) if "coarse_q" in arrays else None,
            polar=from_vector(arrays["polar"], PolarParams().rings_kept) if "polar" in arrays else None,
            anchors=tuple(attrs.get("anchors", ())),
            primer=circ(attrs.get("primer")),
            firing_pin=circ(attrs.get("firing_pin")),
            origin_um=tuple(float(v) for v in attrs.get("origin_um", (0.0, 0.0))),
            scan_size_um=tuple(float(v) for v in attrs.get("scan_size_um", (0.0, 0.0))),
            notes=tuple(attrs.get("notes", ())),
        )


def quantize(values: np.ndarray) -> np.ndarray:
    """Unit-RMS values as int8 (times 25, clipped to +-127; -128 = missing)."""
    v = np.asarray(values, dtype=np.float32)
    q = np.clip(np.rint(np.nan_to_num(v, nan=0.0) * _Q_SCALE), -127, 127).astype(np.int8)
    q[~np.isfinite(v)] = _Q_MISSING
    return q


def dequantize(q: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quantize` (float32, NaN = missing)."""
    q = np.asarray(q)
    s = q.astype(np.float32) / _Q_SCALE
    s[q == _Q_MISSING] = np.nan
    return s


def _local_mean3(v: np.ndarray) -> np.ndarray:
    """Mean of the measured points in each 3 x 3 neighbourhood (NaN where none)."""
    import cv2

    m = np.isfinite(v)
    s = cv2.blur(np.where(m, v, 0.0), (3, 3), borderType=cv2.BORDER_CONSTANT)
    w = cv2.blur(m.astype(np.float64), (3, 3), borderType=cv2.BORDER_CONSTANT)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(w > 0, s / w, np.nan)


def _erode(m: np.ndarray, iterations: int) -> np.ndarray:
    """Binary erosion by a 3 x 3 square, ``iterations`` times; outside the grid counts as empty."""
    import cv2

    padded = np.pad(m.astype(np.uint8), iterations)
    out = cv2.erode(padded, np.ones((3, 3), np.uint8), iterations=iterations)
    return out[iterations:-iterations, iterations:-iterations].astype(bool)


def prepare_cartridge(scan: Scan, params: CartridgeParams | None = None) -> PreparedCartridge:
    """Prepare a cartridge-case scan (raw or already processed) for comparison.

    Parameters
    ----------
    scan : Scan
        Height map (µm) or ring-light intensity image of the case head.
    params : CartridgeParams, optional

    Returns
    -------
    PreparedCartridge

    Raises
    ------
    ScanError
        If the scan is too coarse for the breech-face band, is flat, or its
        breech-face region is too small to compare.
    """
    p = params or CartridgeParams()
    src = scan.source
    notes: list[str] = []
    # 1. square pixels
    px = min(scan.pixel_x_um, scan.pixel_y_um)
    v = np.array(scan.values, dtype=np.float64)
    if not math.isclose(scan.pixel_x_um, scan.pixel_y_um, rel_tol=1e-3):
        v = resample(v, (scan.pixel_y_um, scan.pixel_x_um), px)
        notes.append(f"resampled to square {px:g} µm pixels")
    if px > p.short_cutoff_um / 2:
        raise ScanError(
            src,
            f"pixel size {px:g} µm is too coarse for breech-face comparison: the {p.short_cutoff_um:g} µm "
            f"short cut-off needs at most {p.short_cutoff_um / 2:g} µm/px",
        )
    extent = min(v.shape) * px
    if extent < 4 * p.long_cutoff_um / 2:
        raise ScanError(src, f"the scan covers only {extent:.0f} µm; a breech face needs at least {2 * p.long_cutoff_um:.0f} µm")
    finite = np.isfinite(v)
    if robust_std(v[finite]) == 0 and np.nanstd(v) == 0:
        raise ScanError(src, "the surface is constant: there is nothing to compare")
    # 2.-3. form removal happens inside the region detection (on a coarse
    # copy); the band-pass below removes the form from the surface itself
    # 3. breech-face region
    roi = find_breech_face(
        v, px, modality=scan.modality,
        firing_pin_margin_um=p.firing_pin_margin_um, primer_margin_um=p.primer_margin_um,
    )
    notes.extend(roi.notes)
    v[~roi.mask] = np.nan
    # 3b. form: a robust least-squares quadric fitted to the breech face itself
    # is subtracted before filtering. The band-pass alone removes form only
    # where its kernel lies whole on measured points; within a kernel of the
    # aperture or the region's edge the normalised convolution leaves the slope
    # times the offset of the measured points' centroid, ~0.2 µm per degree of
    # tilt at 400 µm, as large as the marks, and at the same places on every
    # case. cmcR likewise removes a trend (a median plane) before its Gaussian
    # filter (preProcess_removeTrend, then preProcess_gaussFilter; Zemmels et
    # al. 2023); the quadric also takes the primer's dome.
    if scan.modality == "height":
        v, _ = level_polynomial(v, order=2)
    # 4. spikes: points far from the mean of their 3 x 3 neighbourhood
    resid = v - _local_mean3(v)
    s = robust_std(resid[::3, ::3])
    if np.isfinite(s) and s > 0:
        spikes = np.abs(resid) > p.outlier_sigma * s
        n_sp = int(spikes.sum())
        if n_sp:
            v[spikes] = np.nan
            notes.append(f"{n_sp} outlier points removed")
    # 5. canonical grid
    c = resample(v, px, p.pixel_um)
    # 5b. what is round about the firing pin
    if scan.modality == "height" and roi.firing_pin is not None:
        _remove_rings(c, p.pixel_um, roi.firing_pin, p.short_cutoff_um / 2, p.short_cutoff_um,
                      whole_means=not roi.segmented, harmonics=p.ring_harmonics)
        notes.append("rings about the firing-pin crater: their mean heights removed"
                     + (" (the slow part, the scan segmented before)" if roi.segmented else ""))
        if p.ring_harmonics > 0:
            notes.append(f"rings about the firing-pin crater: the slow part of their harmonics 1-{p.ring_harmonics} "
                         "in angle removed (a crescent of an off-centre strike)")
    # 6. band-pass, edges eroded
    bp = gaussian_bandpass(c, p.pixel_um, p.short_cutoff_um, p.long_cutoff_um)
    m = np.isfinite(bp)
    er = int(round(p.edge_erosion_um / p.pixel_um))
    if er > 0:
        m = _erode(m, er)
    bp[~m] = np.nan
    area_mm2 = m.sum() * p.pixel_um**2 * 1e-6
    if area_mm2 < p.min_area_mm2:
        raise ScanError(
            src,
            f"the breech-face region is only {area_mm2:.2f} mm²; at least {p.min_area_mm2:g} mm² are needed "
            "to compare (is this a cartridge-case scan?)",
        )
    # 7. crop and scale
    rows = np.flatnonzero(m.any(axis=1))
    cols = np.flatnonzero(m.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    bp = bp[r0:r1, c0:c1]
    rms = float(np.sqrt(np.nanmean(bp**2)))
    if not rms > 0:
        raise ScanError(src, "the breech-face region is flat after filtering: there is nothing to compare")
    surface = (bp / rms).astype(np.float32)
    shift = lambda circ: None if circ is None else Circle(circ.x_um - c0 * p.pixel_um, circ.y_um - r0 * p.pixel_um, circ.radius_um)  # noqa: E731
    # 8. signatures
    coarse = resample(surface, p.pixel_um, 2 * p.pixel_um)
    spec = polar_spectrum(
        coarse, 2 * p.pixel_um,
        short_wavelength_um=max(1.25 * p.short_cutoff_um, 5 * p.pixel_um), long_wavelength_um=p.long_cutoff_um,
        n_rings=p.spectrum_rings, n_orientations=p.spectrum_orientations,
    )
    desc = spectrum_descriptor(spec, harmonics=p.spectrum_harmonics)
    primer, firing_pin = shift(roi.primer), shift(roi.firing_pin)
    anchors = anchors_of(np.isfinite(surface), p.pixel_um, firing_pin, primer)
    polar = np.stack([polar_signature(surface, p.pixel_um, (x, y)) for _, x, y in anchors])
    return PreparedCartridge(
        surface=surface,
        pixel_um=p.pixel_um,
        rms=rms,
        modality=scan.modality,
        spectrum=spec,
        descriptor=desc,
        coarse=block_mean(surface, 4),
        polar=polar,
        anchors=tuple(name for name, _, _ in anchors),
        primer=primer,
        firing_pin=firing_pin,
        origin_um=(float(c0 * p.pixel_um), float(r0 * p.pixel_um)),
        scan_size_um=(float(scan.shape[1] * scan.pixel_x_um), float(scan.shape[0] * scan.pixel_y_um)),
        notes=tuple(notes),
    )


def _remove_rings(c: np.ndarray, pixel_um: float, centre: Circle, ring_um: float, slow_um: float, *,
                  whole_means: bool, harmonics: int = 0) -> None:
    """Subtract, in place, what is round about ``centre``: each ring's mean height and its slow turn about it.

    The crater's rim and the primer that flowed back into the firing-pin
    aperture are shaped by a round pin in a round hole: about the pin's axis
    they are rings, raised micrometres to tens, alike on cases fired by any
    gun. Breech-face marks (filing, milling, granular texture) are not round
    about the pin, so a ring's mean over its whole circumference holds
    little of them. A ring only partly on the breech face has a mean that is
    a local mean of its arc, so its mean is removed in proportion to the
    share of the circumference measured.

    ``whole_means``: remove every ring's mean (a raw scan, whose crater's rim
    is sharp); otherwise only the slow part of the ring profile, its means
    smoothed by a Gaussian of ``slow_um`` (µm) across rings, weighted by the
    points in each (with 40 µm, half of a radial wavelength of 213 µm is
    removed, 82 % of one of 400 µm, under 1 % of one of 80 µm). A scan
    segmented before had the crater and its sharp rim cut away by whoever
    drew its mask; what is left round about the pin is the flowed-back
    primer a tight mask kept, which rises over hundreds of micrometres,
    while the finer concentric marks of a turned breech face stay.
    Processed Fadul scans that had all of their ring profile removed lost a
    congruent cell in their weakest mate and gained one in their strongest
    different-firearm pair.

    ``harmonics``: a pin that strikes off the aperture's axis leaves the
    flowed-back primer a crescent, not a ring: higher on one side of the pin
    than on the other, a height that turns slowly about the pin. Each whole
    ring's (at least half its circumference measured) first ``harmonics``
    harmonics in angle (least squares, after its mean) are taken too, their
    coefficients smoothed across rings like the slow means (``slow_um``),
    so that what is removed varies over a quarter-turn or more about the pin
    and over hundreds of micrometres out from it; a breech face's own marks,
    finer across the rings or not round about the pin, stay. Fadul breech
    faces made raw with the crater half its clearance off the aperture's
    centre (3 seeds, 717 different-firearm pairs each): 311-378 pairs of
    different firearms at 6 congruent cells or more without the harmonics;
    with 1, 2, 3, 4 or 6 of them 100-132, 27-34, 5-12, 1-6 and 0-2, the
    weakest mates 13-16, 12-13, 12-14, 13-15 and 9-13 cells.
    """
    from scipy.ndimage import gaussian_filter1d

    yy, xx = np.indices(c.shape)
    dx = (xx + 0.5) * pixel_um - centre.x_um
    dy = (yy + 0.5) * pixel_um - centre.y_um
    ok = np.isfinite(c)
    bins = (np.hypot(dx, dy)[ok] / ring_um).astype(np.intp)
    n = np.bincount(bins)
    circumference = 2 * math.pi * (np.arange(n.size) + 0.5) * ring_um * ring_um / pixel_um**2
    cover = np.minimum(n / circumference, 1.0)

    def slow(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
        """Values per ring smoothed across rings, weighted (the rings' axis first)."""
        shape = (-1,) + (1,) * (values.ndim - 1)
        den = gaussian_filter1d(weight, slow_um / ring_um, mode="nearest").reshape(shape)
        num = gaussian_filter1d(values * weight.reshape(shape), slow_um / ring_um, axis=0, mode="nearest")
        return num / np.maximum(den, 1e-12)

    mean = np.bincount(bins, weights=c[ok]) / np.maximum(n, 1)
    if not whole_means:
        mean = slow(mean, n.astype(np.float64))
    c[ok] -= (cover * mean)[bins]
    if harmonics <= 0:
        return
    theta = np.arctan2(dy[ok], dx[ok])
    basis = np.concatenate([(np.cos(k * theta), np.sin(k * theta)) for k in range(1, harmonics + 1)])
    left = c[ok]
    m = basis.shape[0]
    gram = np.empty((n.size, m, m))
    rhs = np.empty((n.size, m))
    for i in range(m):
        rhs[:, i] = np.bincount(bins, weights=basis[i] * left, minlength=n.size)
        for j in range(i, m):
            gram[:, i, j] = gram[:, j, i] = np.bincount(bins, weights=basis[i] * basis[j], minlength=n.size)
    whole = cover >= 0.5  # on a shorter arc the harmonics are ill-determined (and alike)
    gram[~whole] = np.eye(m)
    rhs[~whole] = 0.0
    coef = slow(np.linalg.solve(gram, rhs[..., None])[..., 0], n * whole.astype(np.float64))
    coef[~whole] = 0.0
    c[ok] -= np.einsum("im,mi->i", coef[bins], basis)
