"""Tests of ibin.synth: synthetic cartridge-case scans with known ground truth."""

from __future__ import annotations

import itertools
import math

import cv2
import numpy as np
import pytest

from ibin.errors import ScanError
from ibin.scan import Scan
from ibin.synth import CartridgeTruth, cartridge_case, cartridge_population, firearm_pattern

PX = 12.5  # coarse grid: fast, and every physical scale is still resolved
R = 2200.0


def to_firearm_frame(scan: Scan, truth: CartridgeTruth, m: int) -> np.ndarray:
    """Resample a scan onto an ``m x m`` grid in the firearm's frame (same pixel size).

    Implements the documented mapping directly: firearm point ``u`` is at
    ``(X, Y) = R(a) u + t`` from the grid centre, ``R(a) = [[cos a, sin a], [-sin a, cos a]]``.
    """
    p = scan.pixel_x_um
    n_rows, n_cols = scan.shape
    u = (np.arange(m) - (m - 1) / 2) * p
    ux, uy = np.meshgrid(u, u)
    a = math.radians(truth.rotation_deg)
    x = math.cos(a) * ux + math.sin(a) * uy + truth.shift_x_um
    y = -math.sin(a) * ux + math.cos(a) * uy + truth.shift_y_um
    col = (x / p + (n_cols - 1) / 2).astype(np.float32)
    row = (y / p + (n_rows - 1) / 2).astype(np.float32)
    v = scan.values
    ok = np.isfinite(v)
    z = cv2.remap(np.where(ok, v, 0).astype(np.float32), col, row, cv2.INTER_LINEAR, borderValue=0)
    w = cv2.remap(ok.astype(np.float32), col, row, cv2.INTER_LINEAR, borderValue=0)
    return np.where(w > 0.999, z, np.nan)


def ncc(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised correlation over the points both arrays measured."""
    ok = np.isfinite(a) & np.isfinite(b)
    x = a[ok] - a[ok].mean()
    y = b[ok] - b[ok].mean()
    return float(x @ y / math.sqrt((x @ x) * (y @ y)))


def auc(same: list[float], diff: list[float]) -> float:
    """Probability that a same-firearm score beats a different-firearm one (ties count half)."""
    s = np.asarray(same)[:, None]
    d = np.asarray(diff)[None, :]
    return float(np.mean((s > d) + 0.5 * (s == d)))


def pair_scores(scans: dict, score) -> tuple[list[float], list[float]]:
    same, diff = [], []
    for k1, k2 in itertools.combinations(sorted(scans), 2):
        (same if k1[0] == k2[0] else diff).append(score(scans[k1], scans[k2]))
    return same, diff


# --------------------------------------------------------------------------- basics


def test_same_seeds_same_scan_and_other_shot_differs():
    a, ta = cartridge_case(5, 2, pixel_um=PX)
    b, tb = cartridge_case(5, 2, pixel_um=PX)
    c, tc = cartridge_case(5, 3, pixel_um=PX)
    np.testing.assert_array_equal(a.values, b.values)
    assert ta == tb
    assert tc != ta
    assert a.shape == c.shape
    assert not np.array_equal(a.values, c.values, equal_nan=True)
    ra, _ = cartridge_case(5, 2, pixel_um=PX, raw=True)
    rb, _ = cartridge_case(5, 2, pixel_um=PX, raw=True)
    np.testing.assert_array_equal(ra.values, rb.values)


@pytest.mark.parametrize("pixel_um", [12.5, 25.0])
@pytest.mark.parametrize("raw", [False, True])
def test_grid_and_metadata(pixel_um, raw):
    scan, truth = cartridge_case(3, 1, pixel_um=pixel_um, raw=raw, difficulty=0.25)
    size = (2.6 if raw else 1.6) * R
    h, w = scan.extent_um
    assert h == w and abs(w - size) <= pixel_um / 2 + 1e-9
    assert scan.pixel_x_um == scan.pixel_y_um == pixel_um
    assert scan.modality == "height" and scan.source is None
    assert scan.values.dtype == np.float64
    assert dict(scan.info) == {"synthetic": "cartridge", "firearm": "3", "shot": "1", "difficulty": "0.25"}
    assert truth.firearm == 3 and truth.shot == 1 and truth.difficulty == 0.25
    assert 0.0 <= truth.rotation_deg < 360.0
    assert abs(truth.shift_x_um) <= 150.0 and abs(truth.shift_y_um) <= 150.0
    other, _ = cartridge_case(3, 1, pixel_um=pixel_um, raw=raw, size_um=2000.0)
    assert abs(other.extent_um[1] - 2000.0) <= pixel_um / 2 + 1e-9


def test_processed_scan_is_the_breech_face_annulus():
    scan, truth = cartridge_case(4, 0, pixel_um=PX)
    v = scan.values
    n = v.shape[0]
    r = np.hypot(*np.meshgrid((np.arange(n) - (n - 1) / 2) * PX, (np.arange(n) - (n - 1) / 2) * PX))
    assert np.isnan(v[r > R + 75]).all()  # outside the primer (its centre is within 50 µm per axis)
    valid = np.isfinite(v)
    assert 0.55 < valid.mean() < 0.9
    assert abs(np.nanmean(v)) < 1e-6  # levelled
    assert 0.8 < np.nanstd(v) < 2.5  # heights of a few µm, like the Fadul files
    # the firing-pin aperture, where the truth puts the firearm's aperture, is masked
    pat = firearm_pattern(4, pixel_um=PX)
    m = pat.shape[0]
    rows, cols = np.nonzero(np.isnan(pat))
    ux, uy = (cols.mean() - (m - 1) / 2) * PX, (rows.mean() - (m - 1) / 2) * PX
    a = math.radians(truth.rotation_deg)
    x = math.cos(a) * ux + math.sin(a) * uy + truth.shift_x_um
    y = -math.sin(a) * ux + math.cos(a) * uy + truth.shift_y_um
    j, i = int(round(x / PX + (n - 1) / 2)), int(round(y / PX + (n - 1) / 2))
    assert np.isnan(v[i - 2 : i + 3, j - 2 : j + 3]).all()


def test_given_rotation_and_shift_change_nothing_else():
    scan, truth = cartridge_case(9, 4, pixel_um=PX)
    again, t2 = cartridge_case(
        9, 4, pixel_um=PX, rotation_deg=truth.rotation_deg + 720.0, shift_um=(truth.shift_x_um, truth.shift_y_um)
    )
    np.testing.assert_allclose(t2.rotation_deg, truth.rotation_deg, atol=1e-9)
    np.testing.assert_allclose(again.values, scan.values, atol=1e-4)
    _, t3 = cartridge_case(9, 4, pixel_um=PX, rotation_deg=-90.0, shift_um=(10.0, -20.0))
    assert (t3.rotation_deg, t3.shift_x_um, t3.shift_y_um) == (270.0, 10.0, -20.0)


# --------------------------------------------------------------------------- the firearm pattern


def test_firearm_pattern():
    a = firearm_pattern(1, pixel_um=PX)
    b = firearm_pattern(2, pixel_um=PX)
    assert a.shape == b.shape and a.shape[0] % 2 == 1 and a.shape[0] * PX > 2 * R
    assert 0.8 < np.nanstd(a) < 1.2  # about 1 µm RMS
    assert abs(ncc(a, b)) < 0.1  # firearms differ
    a[:] = 0.0  # a copy: the cached pattern is not touched
    np.testing.assert_array_equal(firearm_pattern(1, pixel_um=PX), firearm_pattern(1, pixel_um=PX))
    assert np.nanstd(firearm_pattern(1, pixel_um=PX)) > 0.5
    # firing-pin aperture: a NaN disc of radius 0.5-1.0 mm within 0.3 mm of the centre
    for f in range(6):
        p = firearm_pattern(f, pixel_um=PX)
        m = p.shape[0]
        rows, cols = np.nonzero(np.isnan(p))
        radius = math.sqrt(len(rows) / math.pi) * PX
        offset = math.hypot(rows.mean() - (m - 1) / 2, cols.mean() - (m - 1) / 2) * PX
        assert 480 < radius < 1020 and offset < 310


def test_firearm_pattern_is_resolution_independent():
    fine = firearm_pattern(6, pixel_um=6.25)
    coarse = firearm_pattern(6, pixel_um=PX)
    hf, hc = (fine.shape[0] - 1) // 2, (coarse.shape[0] - 1) // 2  # both centred on the origin
    h = min(hf // 2, hc)
    f = slice(hf - 2 * h, hf + 2 * h + 1, 2)
    c = slice(hc - h, hc + h + 1)
    assert ncc(fine[f, f], coarse[c, c]) > 0.97


def test_scans_are_resolution_independent():
    fine, _ = cartridge_case(2, 5, pixel_um=PX, size_um=281 * PX)
    coarse, _ = cartridge_case(2, 5, pixel_um=25.0, size_um=141 * 25.0)
    assert fine.shape == (281, 281) and coarse.shape == (141, 141)
    assert ncc(fine.values[::2, ::2], coarse.values) > 0.95


# --------------------------------------------------------------------------- ground truth


def test_rotation_convention_matches_the_documentation():
    """rotation_deg=90 with no shift is ``np.rot90`` (counter-clockwise as displayed) of the pattern."""
    n = 281  # odd: the grid centre is a point, like the pattern's origin
    scan, _ = cartridge_case(7, 0, pixel_um=PX, difficulty=0.0, rotation_deg=90.0, shift_um=(0.0, 0.0), size_um=n * PX)
    pat = firearm_pattern(7, pixel_um=PX)
    k = (pat.shape[0] - n) // 2
    ccw = np.rot90(pat)[k : k + n, k : k + n]
    cw = np.rot90(pat, -1)[k : k + n, k : k + n]
    assert ncc(scan.values, ccw) > 0.85
    assert abs(ncc(scan.values, cw)) < 0.1


def test_truth_maps_the_scan_back_onto_the_firearm_pattern():
    pat = firearm_pattern(8, pixel_um=PX)
    m = pat.shape[0]
    scan, truth = cartridge_case(8, 3, pixel_um=PX, difficulty=0.0)
    assert ncc(to_firearm_frame(scan, truth, m), pat) > 0.85
    wrong = CartridgeTruth(8, 3, (truth.rotation_deg + 20.0) % 360.0, truth.shift_x_um, truth.shift_y_um, 0.0)
    assert abs(ncc(to_firearm_frame(scan, wrong, m), pat)) < 0.15


def test_aligned_correlation_separates_firearms_at_default_difficulty():
    m = 2 * int(math.ceil(3000.0 / PX)) + 1
    scans = {(f, s): to_firearm_frame(*cartridge_case(f, s, pixel_um=PX), m) for f in range(3) for s in range(2)}
    same, diff = pair_scores(scans, ncc)
    assert min(same) > 0.3
    assert max(abs(d) for d in diff) < 0.1


def test_naive_unaligned_correlation_does_not_separate_firearms():
    """Global correlation without rotation alignment must not score perfectly; aligned must."""
    scans = {(f, s): cartridge_case(f, s, pixel_um=PX) for f in range(4) for s in range(3)}
    same, diff = pair_scores({k: v[0].values for k, v in scans.items()}, ncc)
    assert len(same) == 12 and len(diff) == 54
    assert auc(same, diff) < 0.9
    m = 2 * int(math.ceil(3000.0 / PX)) + 1
    framed = {k: to_firearm_frame(s, t, m) for k, (s, t) in scans.items()}
    same, diff = pair_scores(framed, ncc)
    assert auc(same, diff) == 1.0


def test_difficulty_controls_the_shared_signal():
    m = 2 * int(math.ceil(3000.0 / PX)) + 1

    def same_firearm(d: float) -> float:
        a = to_firearm_frame(*cartridge_case(11, 0, pixel_um=PX, difficulty=d), m)
        b = to_firearm_frame(*cartridge_case(11, 1, pixel_um=PX, difficulty=d), m)
        return ncc(a, b)

    easy, medium, hard = same_firearm(0.0), same_firearm(0.5), same_firearm(1.0)
    assert easy > 0.8
    assert easy > medium > hard
    assert 0.3 < medium < 0.65
    assert hard < 0.25


def test_partial_contact_share_grows_with_difficulty():
    from ibin.synth import _contact_weight, _grid, _shot_params

    xs = _grid(282, PX)
    for d, lo, hi in [(0.0, 0.0, 0.0), (0.5, 0.13, 0.22), (1.0, 0.28, 0.42)]:
        sp = _shot_params(3, 2, d)
        w = _contact_weight(sp, xs, R)
        in_primer = (xs[None, :] - sp.primer_x_um) ** 2 + (xs[:, None] - sp.primer_y_um) ** 2 <= R**2
        weak = float(np.mean(w[in_primer] < 0.5))
        assert lo - 0.03 <= weak <= hi + 0.03, (d, weak)


# --------------------------------------------------------------------------- raw scans


def test_raw_scan_has_primer_gap_crater_and_outliers():
    scan, truth = cartridge_case(4, 2, pixel_um=PX, raw=True)
    v = scan.values
    n = v.shape[0]
    c = (np.arange(n) - (n - 1) / 2) * PX
    xx, yy = np.meshgrid(c, c)
    r = np.hypot(xx, yy)
    # primer plane: fit on the outer primer face (clear of the crater and of the edge)
    face = (r > 1550) & (r < 2000) & np.isfinite(v)
    A = np.column_stack([np.ones(face.sum()), xx[face], yy[face]])
    coef, *_ = np.linalg.lstsq(A, v[face], rcond=None)
    resid = v - (coef[0] + coef[1] * xx + coef[2] * yy)
    assert np.nanmedian(np.abs(resid[face])) < 3.0  # a flat primer face carrying µm-scale marks
    assert math.degrees(math.atan(math.hypot(coef[1], coef[2]))) < 2.5  # tilt of the mounting
    # firing-pin crater: 100-300 µm deep where the truth puts the aperture
    pat = firearm_pattern(4, pixel_um=PX)
    m = pat.shape[0]
    rows, cols = np.nonzero(np.isnan(pat))
    ux, uy = (cols.mean() - (m - 1) / 2) * PX, (rows.mean() - (m - 1) / 2) * PX
    a = math.radians(truth.rotation_deg)
    ax = math.cos(a) * ux + math.sin(a) * uy + truth.shift_x_um
    ay = -math.sin(a) * ux + math.cos(a) * uy + truth.shift_y_um
    near = np.hypot(xx - ax, yy - ay) < 150
    assert np.nanmedian(resid[near]) < -80
    assert np.nanmin(resid[r < 1500]) > -350
    # gap ring: deep and narrow just outside the primer
    assert np.nanmin(resid[(r > R - 80) & (r < R + 230)]) < -40
    # case head: near the primer's level (+-20 µm, plus gentle curvature)
    head = r > R + 300
    assert abs(np.nanmedian(resid[head])) < 45
    # dropouts on steep walls, and isolated spikes
    assert 0 < np.isnan(v).mean() < 0.05
    med = cv2.medianBlur(np.nan_to_num(v, nan=0.0).astype(np.float32), 3)
    spikes = np.abs(np.nan_to_num(v, nan=0.0) - med) > 25
    spikes[:2] = spikes[-2:] = False
    spikes[:, :2] = spikes[:, -2:] = False
    assert 1 <= (spikes & np.isfinite(v) & (r < R - 200)).sum() + (spikes & np.isfinite(v) & (r > R + 300)).sum()


def test_raw_and_processed_share_the_breech_face():
    proc, truth = cartridge_case(6, 1, pixel_um=PX)
    raw, truth_raw = cartridge_case(6, 1, pixel_um=PX, raw=True)
    assert truth == truth_raw
    m = 2 * int(math.ceil(3000.0 / PX)) + 1
    a = to_firearm_frame(proc, truth, m)
    b = to_firearm_frame(raw, truth, m)
    # the raw breech face, high-passed like the processed one (700 µm Gaussian cut-off, NaN-aware)
    b[np.isnan(a)] = np.nan
    ok = np.isfinite(b).astype(np.float32)
    sigma = 0.187 * 700.0 / PX
    low = cv2.GaussianBlur(np.nan_to_num(b).astype(np.float32), (0, 0), sigma) / np.maximum(
        cv2.GaussianBlur(ok, (0, 0), sigma), 1e-6
    )
    b = b - low
    b[np.abs(b) > 10] = np.nan  # spikes
    assert ncc(a, b) > 0.7


# --------------------------------------------------------------------------- populations and errors


def test_population():
    pop = list(cartridge_population(3, 2, seed=1, pixel_um=25.0))
    ids = [e for e, _, _ in pop]
    assert ids == ["syn-f0000-s00", "syn-f0000-s01", "syn-f0001-s00", "syn-f0001-s01", "syn-f0002-s00", "syn-f0002-s01"]
    firearms = [t.firearm for _, _, t in pop]
    assert firearms == [2**32, 2**32, 2**32 + 1, 2**32 + 1, 2**32 + 2, 2**32 + 2]
    assert [t.shot for _, _, t in pop] == [0, 1] * 3
    assert all(s.info["firearm"] == str(t.firearm) for _, s, t in pop)
    first, _ = cartridge_case(2**32, 0, pixel_um=25.0)
    np.testing.assert_array_equal(pop[0][1].values, first.values)
    other = next(iter(cartridge_population(1, 1, seed=0, pixel_um=25.0)))
    assert other[2].firearm == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"difficulty": 1.5},
        {"difficulty": float("nan")},
        {"pixel_um": 0.5},
        {"pixel_um": 30.0},
        {"shift_um": (400.0, 0.0)},
        {"shift_um": (1.0,)},
        {"size_um": -5.0},
        {"primer_radius_um": 0.0},
    ],
)
def test_bad_arguments_raise_scan_error(kwargs):
    with pytest.raises(ScanError):
        cartridge_case(1, 1, **kwargs)


@pytest.mark.parametrize("firearm, shot", [(-1, 0), (0, -3), (True, 0), (1.5, 0), ("1", 0)])
def test_bad_seeds_raise(firearm, shot):
    with pytest.raises(ValueError):  # ScanError is a ValueError
        cartridge_case(firearm, shot)


def test_population_checks_arguments_on_call():
    with pytest.raises(ScanError):
        cartridge_population(0, 2)
    with pytest.raises(ScanError):
        cartridge_population(2, 2, seed=-1)
    with pytest.raises(ScanError):
        cartridge_population(2, 2, difficulty=-0.1)
