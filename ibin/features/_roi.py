"""Breech-face region of interest: primer outline and firing-pin impression.

The breech face marks the primer around the firing-pin impression. On a raw
scan of a cartridge-case head, the primer face is the large near-planar
region enclosed by the deep gap ring that separates the primer from the case
head; the firing-pin impression is a deep crater inside it. On an already
processed scan (NaN outside the breech face, like the CSAFE Fadul files) the
same analysis finds the measured annulus and its missing centre, and removes
nothing more than the filter edges.

The detection works on a coarse copy of the scan (about 20 µm/px) and in
physical units throughout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ._filters import gaussian_lowpass, level_polynomial, resample, robust_std

__all__ = ["BreechFaceROI", "find_breech_face"]


@dataclass(frozen=True)
class Circle:
    """A circle in micrometres, in the scan's own frame (origin at the top-left corner)."""

    x_um: float
    y_um: float
    radius_um: float


@dataclass(frozen=True)
class BreechFaceROI:
    """Where the breech-face impression is on a scan.

    Attributes
    ----------
    mask : ndarray of bool
        On the scan's grid: True on the breech face.
    primer : Circle or None
        The primer outline, when its edge is inside the field of view.
    firing_pin : Circle or None
        The firing-pin impression (or the already-masked hole where it was).
    notes : tuple of str
        How the region was found, for the record.
    segmented : bool
        Every measured point lay on the breech face: the scan was segmented
        before (a processed scan such as the CSAFE Fadul files), not a raw
        scan of the case head.
    """

    mask: np.ndarray
    primer: Circle | None
    firing_pin: Circle | None
    notes: tuple[str, ...]
    segmented: bool = False


def _fit_circle(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float]:
    """Algebraic least-squares circle (Kasa 1976) through points, then trimmed refits."""
    cx = cy = r = float("nan")
    keep = np.ones(x.size, bool)
    for _ in range(4):
        if keep.sum() < 8:
            break
        A = np.c_[2 * x[keep], 2 * y[keep], np.ones(keep.sum())]
        b = x[keep] ** 2 + y[keep] ** 2
        (cx, cy, c), *_ = np.linalg.lstsq(A, b, rcond=None)
        r = math.sqrt(max(c + cx * cx + cy * cy, 0.0))
        d = np.abs(np.hypot(x - cx, y - cy) - r)
        keep = d <= max(np.percentile(d, 80), 1e-9)
    return float(cx), float(cy), float(r)


def _contour_points(region: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    cs, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not cs:
        return np.empty(0), np.empty(0)
    c = max(cs, key=len)[:, 0, :].astype(np.float64)
    return c[:, 0], c[:, 1]


def find_breech_face(
    values: np.ndarray,
    pixel_um: float,
    *,
    modality: str = "height",
    firing_pin_margin_um: float = 100.0,
    primer_margin_um: float = 100.0,
    work_pixel_um: float = 20.0,
    deep_um: float = 50.0,
) -> BreechFaceROI:
    """Find the breech-face region on a cartridge-case scan.

    Parameters
    ----------
    values : ndarray (rows, cols)
        Heights in µm (levelled or not) or intensities, NaN = missing, on
        square pixels of ``pixel_um``.
    pixel_um : float
        Grid spacing in micrometres.
    modality : {"height", "intensity"}
        Heights are split into near-planar primer face and deep features
        (gap ring, firing-pin crater) by their distance from the fitted
        primer plane; intensities by an Otsu threshold of the smoothed image
        (the primer face is bright under ring light, the gap and the crater
        dark).
    firing_pin_margin_um, primer_margin_um : float
        Measured material removed around a detected firing-pin crater and
        inside a detected primer edge, where the surface rolls over
        (cmcR removes about 94 µm at the primer edge, Zemmels et al. 2023).
        A boundary that is already missing data (a processed scan) is not
        eroded by these margins.
    work_pixel_um : float
        Resolution of the analysis.
    deep_um : float
        Depth below (or height above) the primer plane that no breech-face
        mark reaches but a firing-pin crater, the gap ring or a case-head
        step does. A height scan with no such points was segmented before
        (e.g. a processed Fadul file) and is kept whole.

    Returns
    -------
    BreechFaceROI
    """
    notes: list[str] = []
    v = np.asarray(values, dtype=np.float64)
    valid_full = np.isfinite(v)
    work = max(work_pixel_um, pixel_um)
    w = resample(v, pixel_um, work, min_coverage=0.3)
    valid = np.isfinite(w)
    if valid.sum() < 50:
        return BreechFaceROI(valid_full, None, None, ("too few points for region detection",))

    segmented = False
    if modality == "height":
        height, tol, s2 = _off_plane(w, valid, deep_um)
        near = valid & (np.abs(height) <= tol)
        deep = valid & (height < -tol)
        far = valid & (np.abs(height) > max(6.0 * s2, deep_um))
        # a scan whose measured points all lie on the breech face (no crater,
        # gap ring or case head measured) was segmented before: keep it whole
        segmented = far.sum() < 0.005 * valid.sum()
        notes.append(
            "already segmented: every measured point is on the breech face" if segmented
            else f"primer plane: quadric fit, tolerance {tol:.1f} µm"
        )
    else:
        sm = gaussian_lowpass(w, work, 250.0)
        thr = _otsu(sm[valid])
        near = valid & (sm > thr)
        deep = valid & (sm <= thr)
        notes.append(f"primer face: smoothed intensity above Otsu threshold {thr:.3f}")
    if segmented:
        near = valid.copy()

    rad = max(1, int(round(40.0 / work)))
    border = _field_edge(valid, segmented)
    comp, touching = _face_component(near, valid, border, rad)
    if comp is None:
        return BreechFaceROI(valid_full, None, None, tuple(notes + ["no planar region found; whole scan used"]))
    if segmented and comp.sum() < 0.8 * valid.sum():
        # no point off the plane, yet the face is one of several measured
        # regions: a case head at the primer's height whose gap ring (and
        # crater) dropped out. The scan is raw after all
        segmented = False
        notes[-1] = f"primer plane: quadric fit, tolerance {tol:.1f} µm; the field holds more than the breech face"
        border = _field_edge(valid, segmented)
        comp, touching = _face_component(near, valid, border, rad)
    if touching and modality == "height" and not segmented:
        # the plane was fitted to the case head (it outweighs the primer, and
        # the primer sits further off it than the tolerance): fit again to the
        # measured points the case head encloses, and take the face found
        # there if it holds a hole, as a primer face holds its firing pin
        inside = valid & ndimage.binary_fill_holes(comp) & ~comp
        if inside.sum() >= 0.05 * valid.sum():
            h_in, tol_in, _ = _off_plane(w, inside, deep_um)
            face, touching_in = _face_component(inside & (np.abs(h_in) <= tol_in), inside, border, rad)
            hole_um2 = 0.0 if face is None else (ndimage.binary_fill_holes(face) & ~face).sum() * work**2
            if face is not None and not touching_in and hole_um2 >= math.pi * 100.0**2:
                comp, deep = face, inside & (h_in < -tol_in)
                notes.append(f"primer plane fitted again inside the case head, tolerance {tol_in:.1f} µm")
    # the firing-pin impression may reach the primer edge (a large,
    # off-centre aperture), so the primer is the convex hull of the face
    hull = _convex_hull(comp)

    # primer outline: the hull's contour away from the image border
    primer = None
    xs, ys = _contour_points(hull)
    if xs.size:
        off = ~_morph(border, 1, "dilate")[ys.astype(np.intp), xs.astype(np.intp)]
        if off.sum() >= 0.5 * xs.size and off.sum() >= 16:
            cx, cy, r = _fit_circle(xs[off], ys[off])
            if np.isfinite(r) and r * work >= 500.0:
                primer = Circle((cx + 0.5) * work, (cy + 0.5) * work, r * work)
                notes.append(f"primer outline: circle r = {primer.radius_um:.0f} µm")
    # firing-pin impression: the largest gap of the face inside the hull
    # (a hole, or a bay open to the primer edge)
    holes = hull & ~comp
    if primer is not None:
        yy, xx = np.mgrid[0 : w.shape[0], 0 : w.shape[1]]
        inside = np.hypot((xx + 0.5) * work - primer.x_um, (yy + 0.5) * work - primer.y_um) <= primer.radius_um - 2 * work
        holes &= inside
    holes = _morph(holes, rad, "open")
    firing_pin = None
    fp_mask = np.zeros_like(comp)
    hl, hn = ndimage.label(holes)
    if hn:
        ha = ndimage.sum(np.ones_like(hl), hl, index=np.arange(1, hn + 1))
        k = int(np.argmax(ha)) + 1
        if ha[k - 1] * work * work >= math.pi * 100.0**2:
            fp_mask = hl == k
            hx, hy = _contour_points(fp_mask)
            if hx.size >= 8:
                cx, cy, r = _fit_circle(hx, hy)
                if np.isfinite(r):
                    firing_pin = Circle((cx + 0.5) * work, (cy + 0.5) * work, r * work)
                    notes.append(f"firing-pin impression: circle r = {firing_pin.radius_um:.0f} µm")
    filled = hull
    measured_crater = bool((fp_mask & deep).sum() > 0.2 * max(fp_mask.sum(), 1))
    measured_outside = bool((valid & ~filled & ~_morph(filled, rad, "dilate")).sum() > 0.02 * valid.sum())

    roi = comp.copy()
    if fp_mask.any() and measured_crater and not segmented:
        grow = max(1, int(round(firing_pin_margin_um / work)))
        roi &= ~_morph(fp_mask, grow, "dilate")
        notes.append(f"firing-pin crater measured: {firing_pin_margin_um:g} µm margin removed")
    if primer is not None and measured_outside and not segmented:
        yy, xx = np.mgrid[0 : w.shape[0], 0 : w.shape[1]]
        dist = np.hypot((xx + 0.5) * work - primer.x_um, (yy + 0.5) * work - primer.y_um)
        roi &= dist <= primer.radius_um - primer_margin_um
        notes.append(f"primer edge measured: {primer_margin_um:g} µm margin removed")
    # drop specks
    lab2, n2 = ndimage.label(roi)
    if n2 > 1:
        a2 = ndimage.sum(np.ones_like(lab2), lab2, index=np.arange(1, n2 + 1))
        roi = np.isin(lab2, np.flatnonzero(a2 >= 0.02 * a2.max()) + 1)
    # back to the scan's grid
    mask = _upsample_mask(roi, v.shape) & valid_full
    return BreechFaceROI(mask, primer, firing_pin, tuple(notes), segmented=bool(segmented))


def _off_plane(w: np.ndarray, where: np.ndarray, deep_um: float) -> tuple[np.ndarray, float, float]:
    """Heights above the robust plane-then-quadric of the points ``where`` (µm), the tolerance of the plane, its scatter."""
    lev, inl = level_polynomial(w, order=1, where=where, iterations=4, clip_sigma=2.5)
    s = robust_std(lev[inl])
    # the primer face may bulge: refit a quadric on the plane's inliers
    lev2, inl2 = level_polynomial(w, order=2, where=where & (np.abs(lev) <= max(5 * s, 5.0)), iterations=3,
                                  clip_sigma=3.0)
    s2 = robust_std(lev2[inl2])
    return lev2 - float(np.median(lev2[inl2])), max(6.0 * s2, deep_um / 4.0), s2


def _field_edge(valid: np.ndarray, segmented: bool) -> np.ndarray:
    """The edge of the measured field: the image border, or the edge of the convex hull of the measured points.

    Where the field is round, turned or cropped with unmeasured margins, the
    case head ends at the hull's edge, not at the image border; unmeasured
    gaps inside the field (a dropped-out gap ring) are not its edge. A
    segmented scan has no case head: the image border serves.
    """
    field = np.ones_like(valid) if segmented else _convex_hull(valid)
    return field & ~ndimage.binary_erosion(field, border_value=0)


def _face_component(near: np.ndarray, valid: np.ndarray, border: np.ndarray, rad: int) -> tuple[np.ndarray | None, bool]:
    """The primer face among the near-planar regions, and whether it runs along the field's edge.

    Thin bridges to the case head are cut first (an opening of ``rad``). The
    case head surrounds the primer and runs along the field's edge; the
    primer face is the largest filled region that does not.
    """
    near = _morph(near, rad, "open")
    lab, n = ndimage.label(near)
    if n == 0:
        return None, False
    areas = ndimage.sum(np.ones_like(lab), lab, index=np.arange(1, n + 1))
    best, best_score, best_touch = 0, -1.0, 0.0
    for i in np.flatnonzero(areas >= 0.05 * valid.sum()) + 1:
        filled = ndimage.binary_fill_holes(lab == i)
        touch = (filled & border).sum() / max(border.sum(), 1)
        score = filled.sum() * (1.0 - min(1.0, 4.0 * touch))
        if score > best_score:
            best, best_score, best_touch = i, score, touch
    if best == 0:
        best = int(np.argmax(areas)) + 1
        best_touch = 1.0
    return lab == best, best_touch >= 0.25


def _convex_hull(m: np.ndarray) -> np.ndarray:
    import cv2

    pts = cv2.findNonZero(m.astype(np.uint8))
    out = np.zeros(m.shape, np.uint8)
    if pts is not None:
        cv2.fillConvexPoly(out, cv2.convexHull(pts), 1)
    return out.astype(bool)


def _upsample_mask(m: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    import cv2

    return cv2.resize(m.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST).astype(bool)


def _disk(r: int) -> np.ndarray:
    y, x = np.ogrid[-r : r + 1, -r : r + 1]
    return x * x + y * y <= r * r


def _morph(m: np.ndarray, r: int, op: str) -> np.ndarray:
    """Binary opening or dilation by a disc of radius ``r`` pixels (outside the grid is empty)."""
    import cv2

    k = _disk(r).astype(np.uint8)
    x = np.pad(m.astype(np.uint8), r)
    if op == "open":
        x = cv2.morphologyEx(x, cv2.MORPH_OPEN, k, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    else:
        x = cv2.dilate(x, k, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return x[r:-r, r:-r].astype(bool)


def _otsu(x: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    return float(threshold_otsu(np.asarray(x, dtype=np.float64)))
