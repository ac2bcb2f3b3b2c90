"""Bullets: land preparation, profile correlation, phase, engine and lead lists.

Ground truth comes from :func:`ibin.synth.bullet_lands` (raw land scans with
known barrel, land order, placement and damage) and from Hamby set 44
(``../shared/data/bullet/hamby44``, skipped when absent).
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from ibin.correlate import (
    ProfileParams,
    ProfileSet,
    ccf_matrix,
    compare_bullets,
    compare_profiles,
    phase_scores,
    striae_features,
)
from ibin.errors import ScanError
from ibin.features import BulletParams, PreparedBullet, land_descriptor, prepare_bullet, prepare_land, striae_axis
from ibin.scan import Scan, load_scan
from ibin.synth import bullet_lands, land_pattern

from .conftest import shared_path

PX = 3.125  # synthetic scans: coarse enough to be quick, fine enough for the 8 µm short cut-off
LENGTH_UM = 500.0


def profiles(prep: PreparedBullet) -> ProfileSet:
    return ProfileSet([None if l is None else l.signature for l in prep.lands], prep.pixel_um)


@pytest.fixture(scope="module")
def syn():
    """Prepared synthetic bullets: barrel 11 shots 0 and 1 (shot 1 stored transposed, land 2 of shot 0
    with tank rash), barrel 12 shot 0."""
    out = {}
    for key, (barrel, shot, kw) in {
        "a": (11, 0, {"damaged": (2,)}),
        "b": (11, 1, {"transposed": True}),
        "c": (12, 0, {}),
    }.items():
        scans, truth = bullet_lands(barrel, shot, pixel_um=PX, length_um=LENGTH_UM, **kw)
        out[key] = (prepare_bullet(scans), truth, scans)
    return out


# --------------------------------------------------------------------------- profile correlation


def _pearson_all_lags(a, b, min_n):
    """Slow reference: Pearson correlation at every lag (a[i] with b[i - lag])."""
    best = (-2.0, None)
    for lag in range(-(len(b) - 1), len(a)):
        i = np.arange(max(0, lag), min(len(a), len(b) + lag))
        x, y = a[i], b[i - lag]
        ok = np.isfinite(x) & np.isfinite(y)
        if ok.sum() < max(min_n, 3):
            continue
        r = np.corrcoef(x[ok], y[ok])[0, 1]
        if r > best[0]:
            best = (r, lag)
    return best


@pytest.mark.parametrize("lag_um", [-120.0, -37.5, 0.0, 61.5, 300.0])
def test_shifted_signature_found_at_its_lag(lag_um):
    """Known answer: the same striae seen through windows shifted by lag_um are found at that lag."""
    px = 1.5
    s = np.arange(1200) * px
    a = land_pattern(5, 2, s)
    b = land_pattern(5, 2, s + lag_um) + np.random.default_rng(1).normal(0, 0.05, s.size)
    b[400:430] = np.nan  # a drop-out must not matter
    r = compare_profiles(a, b, px)
    assert r.lag_um == pytest.approx(lag_um, abs=px / 2)
    assert r.ccf > 0.98
    exhaustive = compare_profiles(a, b, px, ProfileParams(coarse_factor=1))
    assert exhaustive.lag_um == r.lag_um and exhaustive.ccf == pytest.approx(r.ccf, abs=1e-9)


def test_ccf_kernel_equals_slow_reference():
    rng = np.random.default_rng(3)
    px = 1.5
    a = np.convolve(rng.normal(size=400), np.ones(7) / 7, "same")
    b = np.convolve(rng.normal(size=330), np.ones(7) / 7, "same")
    a[50:60] = np.nan
    b[200:215] = np.nan
    p = ProfileParams(coarse_factor=1, min_overlap_um=0.0)
    r = compare_profiles(a, b, px, p)
    need = 0.75 * min(np.isfinite(a).sum(), np.isfinite(b).sum())
    ref_r, ref_lag = _pearson_all_lags(a, b, need)
    assert r.ccf == pytest.approx(ref_r, abs=1e-9)
    assert r.lag_um == pytest.approx(ref_lag * px)


def test_minimum_overlap_in_um():
    s = np.arange(200) * 1.5  # 300 µm: shorter than the 350 µm minimum overlap
    a = land_pattern(1, 0, s)
    r = compare_profiles(a, a.copy(), 1.5)
    assert math.isnan(r.ccf)
    r = compare_profiles(a, a.copy(), 1.5, ProfileParams(min_overlap_um=250.0))
    assert r.ccf == pytest.approx(1.0)


def test_striae_features_separate_same_from_different():
    s = np.arange(1200) * 1.5
    a = land_pattern(2, 0, s)
    same = striae_features(a, land_pattern(2, 0, s + 30.0), 30.0, 1.5)
    diff = striae_features(a, land_pattern(3, 0, s), 0.0, 1.5)
    assert same["cms"] > 3 * max(diff["cms"], 1) and same["mismatches"] < diff["mismatches"]
    assert same["d_um"] < 0.05 < diff["d_um"]


def test_phase_scores_count_missing_as_zero():
    m = np.full((3, 3), 0.1)
    m[0, 1], m[1, 2], m[2, 0] = 0.9, 0.8, np.nan  # phase 1, one comparison missing
    s = phase_scores(m)
    assert np.argmax(s) == 1 and s[1] == pytest.approx((0.9 + 0.8) / 3)
    frag = phase_scores(np.array([[0.2, 0.7, np.nan], [np.nan] * 3, [np.nan] * 3]), fragment=True)
    assert np.nanargmax(frag) == 1 and frag[1] == pytest.approx(0.7)


# --------------------------------------------------------------------------- preparation


def test_striae_axis_detected_both_ways(syn):
    scan = syn["a"][2][0]
    assert striae_axis(scan.values, PX, PX)[0] == "y"
    assert striae_axis(scan.values.T, PX, PX)[0] == "x"
    assert all(l.transposed for l in syn["b"][0].lands)
    assert not any(l.transposed for l in syn["a"][0].lands)


def test_grooves_found_at_the_shoulders(syn):
    prep, truth, _ = syn["a"]
    for land, edges in zip(prep.lands, truth.land_edges_um):
        assert land.grooves_um[0] == pytest.approx(edges[0], abs=15.0)
        assert land.grooves_um[1] == pytest.approx(edges[1], abs=15.0)
        # the signature starts inside the land, a margin in from the left shoulder
        assert edges[0] + 30.0 < land.x0_um < edges[0] + 80.0


def test_stable_band_avoids_tank_rash_and_break_off(syn):
    prep, truth, _ = syn["a"]
    damaged = prep.lands[2]
    assert damaged.band_um[0] >= 0.45 * LENGTH_UM - 25.0  # the scratched nose side is left out
    for land in prep.lands:
        assert land.stability >= 0.9
        assert land.band_um[1] - land.band_um[0] >= 50.0


def test_signature_is_canonical_and_nan_aware(syn):
    p = BulletParams()
    for land in syn["a"][0].lands:
        assert land.pixel_um == p.pixel_um and land.signature.dtype == np.float32
        assert np.isfinite(land.signature[[0, -1]]).all()
        assert 1700.0 < land.length_um < 1900.0
        assert land.descriptor.shape == (p.descriptor_dim,)
        assert np.linalg.norm(land.descriptor) == pytest.approx(1.0, abs=1e-5)


def test_signature_lag_matches_ground_truth(syn):
    """Two shots of the same barrel land, prepared from raw scans, align at the lag the truth implies."""
    (pa, ta, _), (pb, tb, _) = syn["a"], syn["b"]
    r = compare_bullets(profiles(pa), profiles(pb))
    assert r.phase == ta.phase_to(tb)
    for pair in r.lands:
        i, j = pair.query_land - 1, pair.lead_land - 1
        la, lb = pa.lands[i], pb.lands[j]
        # position t of b shows pattern coordinate x0_b + t - off_b; the same coordinate is at
        # x0_a + t + lag - off_a in a
        expected = (lb.x0_um - tb.offsets_um[j]) - (la.x0_um - ta.offsets_um[i])
        # the striae tilt by up to 1° (truth) and the band centre sits up to ~150 µm from the middle row
        assert pair.lag_um == pytest.approx(expected, abs=6.0)


@pytest.mark.parametrize("tilt", [3.0, -2.0])
def test_tilted_striae_are_straightened(tilt):
    """Known answer: a tilt of the striae is measured and undone before the band is averaged."""
    kw = dict(n_lands=1, pixel_um=PX, length_um=600.0, breakoff=False)
    tilted = prepare_land(bullet_lands(5, 0, tilt_deg=tilt, **kw)[0][0])
    straight = prepare_land(bullet_lands(5, 0, tilt_deg=0.0, **kw)[0][0])
    assert tilted.tilt_deg == pytest.approx(tilt, abs=0.3)
    assert tilted.band_um[1] - tilted.band_um[0] > 400.0
    assert compare_profiles(tilted.signature, straight.signature, 1.5).ccf > 0.99


def test_descriptor_is_shift_invariant():
    px = 1.5
    s = np.arange(1250) * px
    d0 = land_descriptor(land_pattern(4, 1, s), px)
    d_shift = land_descriptor(land_pattern(4, 1, s + 90.0), px)
    d_other = land_descriptor(land_pattern(4, 2, s), px)
    assert float(d0 @ d_shift) > 0.7
    assert abs(float(d0 @ d_other)) < 0.4


def test_prepared_bullet_round_trip(syn):
    prep = syn["a"][0]
    arrays, attrs = prep.to_arrays()
    back = PreparedBullet.from_arrays(arrays, attrs)
    assert back.n_positions == prep.n_positions and back.present == prep.present
    for a, b in zip(prep.lands, back.lands):
        np.testing.assert_allclose(b.signature, a.signature, atol=2e-3 * a.rms_um + 1e-4)
        assert b.grooves_um == pytest.approx(a.grooves_um, abs=0.01) and b.notes == a.notes
    np.testing.assert_allclose(back.descriptor, prep.descriptor)


# --------------------------------------------------------------------------- bullets


@pytest.mark.parametrize("k", range(6))
def test_rotated_lands_matched_at_phase_k(syn, k):
    """Known answer: B's lands listed starting k places later are matched k phases earlier."""
    (pa, ta, _), (pb, tb, _) = syn["a"], syn["b"]
    base = ta.phase_to(tb)
    rotated = PreparedBullet(lands=pb.lands[k:] + pb.lands[:k], pixel_um=pb.pixel_um, descriptor=pb.descriptor)
    r = compare_bullets(profiles(pa), profiles(rotated), features=False)
    assert r.phase == (base - k) % 6
    assert r.score > 0.8 and r.phase_margin > 0.4


def test_missing_land_lowers_but_does_not_break_the_score(syn):
    (pa, _, _), (pb, _, _), (pc, _, _) = syn["a"], syn["b"], syn["c"]
    full = compare_bullets(profiles(pa), profiles(pb), features=False)
    holed = PreparedBullet(lands=pb.lands[:3] + (None,) + pb.lands[4:], pixel_um=pb.pixel_um, descriptor=pb.descriptor)
    missing = compare_bullets(profiles(pa), profiles(holed), features=False)
    other = compare_bullets(profiles(pa), profiles(pc), features=False)
    assert missing.phase == full.phase
    assert other.score < missing.score < full.score
    assert missing.score > 0.7 * full.score
    assert len(missing.lands) == 5
    assert other.score < 0.4


def test_fragment_scores_its_best_land(syn):
    (pa, ta, _), (pb, tb, _) = syn["a"], syn["b"]
    frag = PreparedBullet(lands=(pb.lands[3],), pixel_um=pb.pixel_um, descriptor=pb.lands[3].descriptor)
    r = compare_bullets(profiles(frag), profiles(pa))
    assert r.fragment and len(r.lands) == 1
    expected_a_land = (3 + tb.phase_to(ta)) % 6
    assert r.lands[0].lead_land == expected_a_land + 1
    assert r.score == pytest.approx(np.nanmax(r.ccf))


def test_ccf_matrix_shapes_and_missing():
    s = np.arange(1000) * 1.5
    A = ProfileSet([land_pattern(1, 0, s), None], 1.5)
    B = ProfileSet([land_pattern(1, 0, s + 15), land_pattern(1, 1, s), None], 1.5)
    c, lag, ov = ccf_matrix(A, B)
    assert c.shape == (2, 3)
    assert np.isnan(c[1]).all() and np.isnan(c[:, 2]).all()
    assert c[0, 0] > 0.99 and lag[0, 0] == pytest.approx(15.0) and ov[0, 0] > 1400


# --------------------------------------------------------------------------- bad input


def test_bad_land_scans_raise_clear_errors(tmp_path):
    with pytest.raises(ScanError, match="height map"):
        prepare_land(Scan(np.random.default_rng(0).random((50, 400)), PX, PX, modality="intensity", source="img.png"))
    with pytest.raises(ScanError, match="constant"):
        prepare_land(Scan(np.zeros((50, 400)), PX, PX, source="flat.x3p"))
    with pytest.raises(ScanError, match="only .* µm across the land"):
        prepare_land(Scan(np.random.default_rng(0).random((50, 60)), PX, PX, source="narrow.x3p"))
    with pytest.raises(ScanError, match="too coarse"):
        prepare_land(Scan(np.random.default_rng(0).random((50, 100)), 10.0, 10.0, source="coarse.x3p"))
    bad = tmp_path / "land.x3p"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ScanError) as e:
        load_scan(bad)
    assert str(bad) in str(e.value)


# --------------------------------------------------------------------------- real data: Hamby 44


@pytest.fixture(scope="module")
def hamby():
    d = shared_path("bullet", "hamby44")
    with open(d / "key.csv", newline="") as f:
        key = list(csv.DictReader(f))
    lands = {row["file"]: prepare_land(load_scan(d / row["file"])) for row in key}
    return key, lands


@pytest.mark.realdata
def test_hamby44_land_auc(hamby):
    key, lands = hamby
    names = [r["file"] for r in key]
    S = ProfileSet([lands[n].signature for n in names], BulletParams().pixel_um)
    c, _, _ = ccf_matrix(S, S)
    same, diff = [], []
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            (same if key[i]["land_id"] == key[j]["land_id"] else diff).append(c[i, j])
    s, d = np.array(same)[:, None], np.array(diff)[None, :]
    auc = float(np.mean((s > d) + 0.5 * (s == d)))
    assert len(same) == 9 and auc >= 0.99


@pytest.mark.realdata
def test_hamby44_bullets_matched_at_the_right_phase(hamby):
    _, lands = hamby
    b1 = [lands[f"Barrel_1-Bullet_1-Land_{k}.x3p"].signature for k in range(1, 7)]
    b2 = [lands[f"Barrel_1-Bullet_2-Land_{k}.x3p"].signature for k in range(1, 7)]
    r = compare_bullets(ProfileSet(b1, 1.5), ProfileSet(b2, 1.5))
    # bullet 1 land k matches bullet 2 land k - 2 (mod 6): phase -2 = 4
    assert r.phase == 4
    assert {(l.query_land, l.lead_land) for l in r.lands} == {(k, (k - 3) % 6 + 1) for k in range(1, 7)}
    assert r.score > 0.8 and r.phase_margin > 0.3


@pytest.mark.realdata
def test_hamby44_questioned_k_matches_land_ae(hamby):
    _, lands = hamby
    k = ProfileSet([lands["Unknown-Bullet_K-Land_1.x3p"].signature], 1.5)
    b1 = ProfileSet([lands[f"Barrel_1-Bullet_1-Land_{i}.x3p"].signature for i in range(1, 7)], 1.5)
    r = compare_bullets(k, b1)
    assert r.fragment and r.lands[0].lead_land == 5  # bullet 1 land 5 is barrel 1 land AE


def _turned(scan: Scan, deg: float) -> Scan:
    """``scan`` turned counter-clockwise in its plane, on a grid enlarged to hold it (NaN outside)."""
    from scipy import ndimage

    z = np.asarray(scan.values, dtype=np.float64)
    m = np.isfinite(z).astype(np.float64)
    zr = ndimage.rotate(np.where(m > 0, z, 0.0), deg, order=1, reshape=True, cval=0.0)
    mr = ndimage.rotate(m, deg, order=1, reshape=True, cval=0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return Scan(np.where(mr > 0.99, zr / mr, np.nan), scan.pixel_x_um, scan.pixel_y_um)


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["Barrel_1-Bullet_2-Land_3.x3p", "Unknown-Bullet_S-Land_1.x3p"])
def test_hamby44_tilt_follows_a_turn_of_the_scan(name):
    """A real land turned in its plane by 3° either way is measured 3° more or less tilted, and undone.

    Striae change along a bullet: the first and last slabs of these lands' stable bands (200 and 300 µm
    apart) correlate below 0.5, and a tilt taken from them went unmeasured (0°) whatever the turn.
    """
    scan = load_scan(shared_path("bullet", "hamby44") / name)
    base = prepare_land(scan)
    for deg in (3.0, -3.0):
        land = prepare_land(_turned(scan, deg))
        assert land.tilt_deg - base.tilt_deg == pytest.approx(deg, abs=0.75)
        assert compare_profiles(land.signature, base.signature, 1.5).ccf > 0.9


@pytest.mark.realdata
@pytest.mark.parametrize("name, deg", [("Barrel_1-Bullet_1-Land_5.x3p", 6.0), ("Unknown-Bullet_I-Land_1.x3p", -6.0)])
def test_hamby44_land_at_the_helix_angle_keeps_its_band_on_whole_rows(name, deg):
    """A land scanned 6° off (the helix angle of a 9 mm 1:10" twist) is prepared across its whole width.

    On the enlarged grid, rows near the top and bottom hold only a stub of the land. Stubs agree with
    each other easily, and the band went there: "the land between the grooves is only 205 µm wide".
    The striae's tilt is measured and undone (it was beyond the former 5° allowance).
    """
    scan = load_scan(shared_path("bullet", "hamby44") / name)
    base = prepare_land(scan)
    land = prepare_land(_turned(scan, deg))
    assert land.length_um > 0.9 * base.length_um
    assert land.tilt_deg - base.tilt_deg == pytest.approx(deg, abs=1.5)
    assert compare_profiles(land.signature, base.signature, 1.5).ccf > 0.8


# --------------------------------------------------------------------------- synthetic bullets


def test_synthetic_bullets_are_reproducible_and_checked():
    a, ta = bullet_lands(3, 1, pixel_um=PX, length_um=200.0, missing=(1, 4))
    b, tb = bullet_lands(3, 1, pixel_um=PX, length_um=200.0, missing=(1, 4))
    assert a[1] is None and a[4] is None and ta.barrel_lands[1] is None
    for x, y in zip(a, b):
        if x is not None:
            np.testing.assert_array_equal(x.values, y.values)
    assert ta == tb
    # the missing lands do not change the others
    full, tf = bullet_lands(3, 1, pixel_um=PX, length_um=200.0)
    np.testing.assert_array_equal(full[0].values, a[0].values)
    assert tf.start_land == ta.start_land
    with pytest.raises(ScanError, match="missing positions"):
        bullet_lands(3, 1, missing=(6,))
    with pytest.raises(ScanError, match="pixel_um"):
        bullet_lands(3, 1, pixel_um=10.0)
    with pytest.raises(ScanError, match="at least one land"):
        bullet_lands(3, 1, n_lands=2, missing=(0, 1))


def test_synthetic_difficulty_lowers_same_land_correlation():
    s = np.arange(1200) * 1.5
    ccf = []
    for difficulty in (0.0, 1.0):
        scans, truth = bullet_lands(9, 0, n_lands=1, pixel_um=PX, length_um=300.0, difficulty=difficulty)
        scans2, truth2 = bullet_lands(9, 1, n_lands=1, pixel_um=PX, length_um=300.0, difficulty=difficulty)
        la, lb = prepare_land(scans[0]), prepare_land(scans2[0])
        ccf.append(compare_profiles(la.signature, lb.signature, la.pixel_um).ccf)
    assert ccf[0] > 0.9 and ccf[1] < ccf[0] - 0.2
    assert land_pattern(9, 0, s).std() == pytest.approx(0.5, rel=0.2)
