"""Preparation: filters in physical units, breech-face region, signatures."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ibin.correlate import compare_prepared
from ibin.errors import ScanError
from ibin.features import (
    CartridgeParams,
    PreparedCartridge,
    gaussian_lowpass,
    polar_spectrum,
    prepare_cartridge,
    resample,
    rotation_hypotheses,
    spectrum_descriptor,
)
from ibin.scan import Scan, load_scan
from ibin.features._cartridge import _remove_rings
from ibin.features._roi import Circle
from ibin.synth import cartridge_case, raw_case_head

from .conftest import shared_path

RINGS_ALL = "rings about the firing-pin crater: their mean heights removed"


@pytest.mark.parametrize("pixel_um", [1.0, 2.5])
def test_gaussian_transmits_half_at_cutoff(pixel_um):
    """ISO 16610-21: 50 % amplitude transmission at the cut-off wavelength, whatever the grid."""
    cutoff = 80.0
    x = np.arange(2000) * pixel_um
    for wavelength, expected in [(cutoff, 0.5), (4 * cutoff, math.exp(-math.pi * (0.4697 / 4) ** 2)), (cutoff / 3, 0.0)]:
        z = np.tile(np.sin(2 * np.pi * x / wavelength), (8, 1))
        out = gaussian_lowpass(z, pixel_um, cutoff)
        core = slice(500, 1500)
        amp = np.sqrt(2 * np.mean(out[4, core] ** 2))
        assert amp == pytest.approx(expected, abs=0.02)


def test_lowpass_ignores_missing_points():
    z = np.full((60, 60), 3.0)
    z[20:30, 10:50] = np.nan
    out = gaussian_lowpass(z, 1.0, 20.0)
    assert np.isnan(out[25, 25])
    np.testing.assert_allclose(out[np.isfinite(out)], 3.0)  # no leakage of the hole into the mean


def test_resample_keeps_physical_extent():
    z = np.random.default_rng(0).normal(size=(100, 80))
    out = resample(z, 6.25, 12.5)
    assert out.shape == (50, 40)
    out2 = resample(z, (6.25, 3.125), 12.5)
    assert out2.shape == (50, 20)


def test_raw_scan_region_found():
    scan, truth = cartridge_case(3, 0, raw=True, pixel_um=12.5)
    p = prepare_cartridge(scan)
    assert p.primer is not None and p.firing_pin is not None
    assert p.primer.radius_um == pytest.approx(2200.0, abs=60.0)
    # the crater and the case head are outside the breech face
    assert 6.0 < p.valid_area_mm2 < math.pi * 2.2**2
    assert np.nanmax(np.abs(p.surface)) < 12  # no crater walls or spikes left (unit RMS)


def _fadul_raw(name: str, rng: np.random.Generator, **options):
    """A real Fadul breech face put back into a raw scan of the case head, and the scene's geometry."""
    return raw_case_head(load_scan(shared_path("cartridge", "fadul", f"{name}.x3p")), rng, **options)


def _from_primer_um(raw: Scan, made: dict) -> np.ndarray:
    """Each point's distance from the scene's primer centre (µm)."""
    yy, xx = np.indices(raw.values.shape)
    cx, cy = made["primer_centre_um"]
    return np.hypot(xx * raw.pixel_x_um - cx, yy * raw.pixel_y_um - cy)


@pytest.fixture(scope="module")
def fadul_raw():
    """Four real Fadul breech faces put back into raw scans of the case head (firing-pin flow-back and all)."""
    rng = np.random.default_rng(7)
    return {n: _fadul_raw(n, rng) for n in ("Fadul_1-1", "Fadul_1-2", "Fadul_2-1", "Fadul_4-1")}


def test_raw_case_head_refuses_what_is_not_a_processed_breech_face():
    with pytest.raises(ScanError, match="no unmeasured firing-pin aperture"):
        raw_case_head(Scan(np.zeros((200, 200)), 6.25, 6.25), np.random.default_rng(0))
    with pytest.raises(ScanError, match="square pixels"):
        raw_case_head(Scan(np.zeros((200, 200)), 6.25, 3.125), np.random.default_rng(0))


def test_raw_crater_rings_removed_and_only_their_slow_part_on_processed_scans(fadul_raw):
    raw, made = fadul_raw["Fadul_1-1"]
    p = prepare_cartridge(raw)
    assert RINGS_ALL in p.notes
    assert p.firing_pin is not None
    fp = p.firing_pin
    # found about the crater the scene was made with (its origin moves with the crop)
    x, y = fp.x_um + p.origin_um[0], fp.y_um + p.origin_um[1]
    assert math.dist((x, y), made["aperture_centre_um"]) < 50.0
    processed = prepare_cartridge(load_scan(shared_path("cartridge", "fadul", "Fadul_1-1.x3p")))
    assert RINGS_ALL not in processed.notes
    assert RINGS_ALL + " (the slow part, the scan segmented before)" in processed.notes


def test_ring_removal_on_a_segmented_scan_keeps_fine_concentric_marks():
    """Smoothed across rings, the removal takes the flowed-back primer's slow rise and leaves finer rings.

    A turned breech face carries concentric marks about the pin; removing every ring's mean took them too.
    """
    px = 12.5
    yy, xx = np.indices((240, 240))
    r = np.hypot((xx + 0.5) * px - 1500.0, (yy + 0.5) * px - 1500.0)
    ripple = np.sin(2 * np.pi * r / 80.0)  # concentric marks, 80 µm apart
    rise = 6.0 * np.exp(-(((r - 700.0) / 250.0) ** 2))  # flow-back kept by a tight mask, over ~500 µm
    c = np.where((r > 500.0) & (r < 1450.0), ripple + rise, np.nan)
    out = c.copy()
    _remove_rings(out, px, Circle(1500.0, 1500.0, 500.0), 20.0, 40.0, whole_means=False, harmonics=4)
    ok = np.isfinite(out) & (r > 560.0) & (r < 1390.0)  # away from the profile's ends
    left = out[ok] - ripple[ok]
    assert np.sqrt(np.mean(left**2)) < 0.15 * np.sqrt(np.mean(rise[ok] ** 2))  # the rise is gone
    kept = np.sum(out[ok] * ripple[ok]) / np.sum(ripple[ok] ** 2)
    assert kept > 0.9  # the marks stay
    every = c.copy()
    _remove_rings(every, px, Circle(1500.0, 1500.0, 500.0), 20.0, 40.0, whole_means=True)
    assert abs(np.sum(every[ok] * ripple[ok]) / np.sum(ripple[ok] ** 2)) < 0.5  # all of it: marks gone too


def test_flowback_kept_by_a_mask_does_not_make_different_firearms_agree():
    """A scan cut round at the breech face with the crater unmeasured looks processed, flow-back and all.

    With the ring means kept on scans segmented before, these pairs of different firearms reached 6 or more
    congruent cells (1,478 of 2,151 such pairs in three benchmark runs); the mates must still reach it.
    """
    rng = np.random.default_rng(7)
    p = {n: prepare_cartridge(_fadul_raw(n, rng, crater_measured=False, case_head=False)[0])
         for n in ("Fadul_1-1", "Fadul_1-2", "Fadul_2-1", "Fadul_5-1")}
    assert all("already segmented" in " ".join(q.notes) for q in p.values())
    assert compare_prepared(p["Fadul_1-1"], p["Fadul_1-2"]).cmc >= 6
    others = [compare_prepared(p["Fadul_1-1"], p[n]).cmc for n in ("Fadul_2-1", "Fadul_5-1")]
    assert all(o < 6 for o in others), others


def test_raw_flowback_does_not_make_different_firearms_agree(fadul_raw):
    """The primer flowed back around the crater is alike on every case: left in, different firearms agree.

    With the ring means kept, these Fadul pairs of different firearms reached 6 or more congruent cells
    (the identification criterion); the mates must still reach it.
    """
    a = prepare_cartridge(fadul_raw["Fadul_1-1"][0])
    mate = compare_prepared(a, prepare_cartridge(fadul_raw["Fadul_1-2"][0]))
    others = [compare_prepared(a, prepare_cartridge(fadul_raw[n][0])) for n in ("Fadul_2-1", "Fadul_4-1")]
    assert mate.cmc >= 6
    assert all(o.cmc < 6 for o in others), [o.cmc for o in others]
    assert all(o.score < mate.score for o in others)


def test_raw_rings_removed_when_the_crater_was_not_measured():
    """An instrument that cannot follow the crater's walls leaves it NaN; the flowed-back ring is still there.

    With the rings removed only where the crater was measured, Fadul_5-1 reached 18 cells against Fadul_1-1.
    """
    rng = np.random.default_rng(7)
    p = {n: prepare_cartridge(_fadul_raw(n, rng, crater_measured=False)[0])
         for n in ("Fadul_1-1", "Fadul_1-2", "Fadul_5-1")}
    assert RINGS_ALL in p["Fadul_5-1"].notes
    assert compare_prepared(p["Fadul_1-1"], p["Fadul_1-2"]).cmc >= 6
    assert compare_prepared(p["Fadul_1-1"], p["Fadul_5-1"]).cmc < 6


def test_crescent_of_an_off_centre_strike_removed_and_marks_kept():
    """The flowed-back primer about a pin off the aperture's axis: a crescent, its height turning about the pin.

    Its slow turn goes with the harmonics; filing marks across the face (not round about the pin) stay.
    """
    px = 12.5
    yy, xx = np.indices((240, 240))
    x, y = (xx + 0.5) * px, (yy + 0.5) * px
    pin, aperture = (1500.0, 1500.0), (1650.0, 1500.0)  # the crater 150 µm off the aperture's centre
    d_pin = np.hypot(x - pin[0], y - pin[1])
    inner = np.maximum(d_pin - 500.0, 0.0)  # from the crater's rim ...
    outer = np.maximum(900.0 - np.hypot(x - aperture[0], y - aperture[1]), 0.0)  # ... to the aperture's edge
    crescent = 6.0 * np.sin(np.pi * inner / (inner + outer + 1e-9))
    marks = np.sin(2 * np.pi * (0.8 * x + 0.6 * y) / 150.0)  # filing marks, 150 µm apart
    c = np.where((d_pin > 500.0) & (d_pin < 1450.0), crescent + marks, np.nan)
    ok = np.isfinite(c) & (d_pin > 560.0) & (d_pin < 1390.0)
    for harmonics, left_at_most in ((0, None), (4, 0.12)):
        out = c.copy()
        _remove_rings(out, px, Circle(*pin, 500.0), 20.0, 40.0, whole_means=True, harmonics=harmonics)
        left = np.sqrt(np.mean((out[ok] - marks[ok]) ** 2)) / np.sqrt(np.mean(crescent[ok] ** 2))
        if left_at_most is None:
            assert left > 0.3  # ring means alone leave its turn about the pin (0.43 of its RMS)
        else:
            assert left < left_at_most  # 0.08
            assert np.sum(out[ok] * marks[ok]) / np.sum(marks[ok] ** 2) > 0.95  # the marks stay (0.99)


def test_raw_flowback_of_an_off_centre_strike_does_not_make_different_firearms_agree():
    """The crater off the aperture's centre: the flowed-back primer is a crescent about it, not a ring.

    With each ring's mean alone removed the crescent stayed, and these pairs of different firearms reached 6,
    7 and 4 congruent cells (cartridge-6).
    """
    rng = np.random.default_rng(7)
    p = {n: prepare_cartridge(_fadul_raw(n, rng, crater_offset=0.5)[0])
         for n in ("Fadul_1-1", "Fadul_1-2", "Fadul_2-1", "Fadul_5-1", "Fadul_9-1")}
    assert compare_prepared(p["Fadul_1-1"], p["Fadul_1-2"]).cmc >= 6
    others = [compare_prepared(p["Fadul_1-1"], p[n]).cmc for n in ("Fadul_2-1", "Fadul_5-1", "Fadul_9-1")]
    assert all(o < 6 for o in others), others


def test_raw_case_head_centred_crater_drawn_as_before():
    """crater_offset=0 must leave the scene as it was (the raw benchmarks' earlier rows depend on it).

    The fingerprint was read off the code before ``crater_offset`` existed
    (a worktree of da21141^): measured points, the sums of heights and of
    their squares, and seven heights (µm), to float rounding.
    """
    scan = load_scan(shared_path("cartridge", "fadul", "Fadul_1-1.x3p"))
    a, _ = raw_case_head(scan, np.random.default_rng(3))
    v = a.values
    ok = np.isfinite(v)
    assert v.shape == (735, 735) and int(ok.sum()) == 521443
    assert float(np.nansum(v)) == pytest.approx(-3884411.4590931013, rel=1e-9)
    assert float(np.nansum(v * v)) == pytest.approx(1135791563.1315885, rel=1e-9)
    points = [(0, 0), (105, 190), (210, 673), (315, 285), (419, 459), (524, 47), (629, 534)]
    heights = [-75.12316021109295, -36.417362066059425, 51.68558997979609, -103.16679215994567,
               23.703893354590196, -70.22302693078643, 27.789662366990665]
    np.testing.assert_allclose([v[i, j] for i, j in points], heights, rtol=0, atol=1e-9)
    b, _ = raw_case_head(scan, np.random.default_rng(3), crater_offset=0.0)
    np.testing.assert_array_equal(a.values, b.values)
    _, off = raw_case_head(scan, np.random.default_rng(3), crater_offset=0.5)
    shift = math.dist(off["crater_centre_um"], off["aperture_centre_um"])
    assert shift == pytest.approx(0.5 * (off["aperture_radius_um"] - off["crater_radius_um"]), rel=1e-6)


def test_raw_scan_turned_in_its_grid_region_found():
    """A raw scan whose field does not reach the image border (turned, round or cropped field of view).

    The case head then ends at unmeasured margins rather than at the image border; it must not be taken
    for the primer (it was: a primer of the case head's size, the gap ring for a firing pin).
    """
    from scipy import ndimage

    scan, _ = cartridge_case(3, 0, raw=True, pixel_um=12.5)
    turned = ndimage.rotate(scan.values, 30.0, order=0, reshape=True, cval=np.nan)
    straight = prepare_cartridge(scan)
    p = prepare_cartridge(Scan(turned, 12.5, 12.5))
    assert p.primer is not None and p.primer.radius_um == pytest.approx(2200.0, abs=60.0)
    assert p.firing_pin is not None and p.firing_pin.radius_um < 1000.0
    assert p.valid_area_mm2 == pytest.approx(straight.valid_area_mm2, rel=0.05)


def test_raw_primer_found_when_the_case_head_outweighs_it():
    """A primer seated 40 µm below the case head, its crater unmeasured: the case head is the larger plane.

    The plane was fitted to the case head, the primer lay off it, and the case head was taken for the
    breech face (a "firing pin" of the primer's size).
    """
    raw, made = _fadul_raw("Fadul_B", np.random.default_rng(0), crater_measured=False)
    v, px = raw.values.copy(), raw.pixel_x_um
    v[_from_primer_um(raw, made) < made["primer_radius_um"]] -= 40.0
    p = prepare_cartridge(Scan(v, px, px))
    assert p.primer is not None and p.primer.radius_um == pytest.approx(made["primer_radius_um"], abs=40.0)
    assert p.firing_pin is not None and p.firing_pin.radius_um < made["aperture_radius_um"]
    assert RINGS_ALL in p.notes


def test_raw_scan_with_nothing_off_the_plane_is_not_taken_for_a_processed_one():
    """Crater and gap ring dropped out, the case head at the primer's height: no point lies off the plane.

    The scan was taken for a processed one (segmented before), the case head kept with the breech face and
    the flowed-back ring left in.
    """
    raw, made = _fadul_raw("Fadul_9-1", np.random.default_rng(0), crater_measured=False)
    v, px = raw.values.copy(), raw.pixel_x_um
    r = _from_primer_um(raw, made)
    ring = (r > made["primer_radius_um"]) & (r < made["primer_radius_um"] + made["gap_width_um"])
    v[ring] = np.nan
    v[~ring & (r > made["primer_radius_um"])] += made["primer_height_um"]  # the case head at the primer's height
    p = prepare_cartridge(Scan(v, px, px))
    assert not any("already segmented" in n for n in p.notes)
    assert RINGS_ALL in p.notes
    assert p.valid_area_mm2 < math.pi * (made["primer_radius_um"] / 1000) ** 2


def test_processed_scan_passes_through():
    scan, _ = cartridge_case(3, 0, pixel_um=12.5)
    p = prepare_cartridge(scan)
    assert any("already segmented" in n for n in p.notes)
    measured = np.isfinite(scan.values).sum() * 12.5**2 * 1e-6
    assert p.valid_area_mm2 > 0.8 * measured  # only the filter edges are lost


def test_fadul_passes_through_without_damage():
    scan = load_scan(shared_path("cartridge", "fadul", "Fadul_3-1.x3p"))
    p = prepare_cartridge(scan)
    measured = np.isfinite(scan.values).sum() * 6.25**2 * 1e-6
    assert any("already segmented" in n for n in p.notes)
    assert p.valid_area_mm2 > 0.75 * measured


@pytest.mark.parametrize("raw", [False, True])
def test_tilt_and_dome_do_not_reach_the_prepared_surface(raw):
    """A case head held at a tilt, or a domed primer, gives the same surface and signatures.

    The band-pass alone leaks a tilt at every edge of the region (slope times
    the kernel's offset there: 0.9 RMS units at 1.5° on Fadul_3-1); the form
    fitted to the breech face is removed first.
    """
    if raw:
        scan, _ = cartridge_case(3, 0, raw=True, pixel_um=6.25)
    else:
        scan = load_scan(shared_path("cartridge", "fadul", "Fadul_3-1.x3p"))
    z = np.asarray(scan.values)
    yy, xx = np.mgrid[0 : z.shape[0], 0 : z.shape[1]] * scan.pixel_x_um
    xx, yy = xx - xx.mean(), yy - yy.mean()
    form = math.tan(math.radians(1.5)) * (0.6 * xx - 0.8 * yy) + 3.0 * (xx**2 + yy**2) / (xx**2 + yy**2).max() + 40.0
    level = prepare_cartridge(scan)
    tilted = prepare_cartridge(Scan(z + form, scan.pixel_x_um, scan.pixel_y_um))
    assert tilted.surface.shape == level.surface.shape
    assert np.array_equal(np.isfinite(tilted.surface), np.isfinite(level.surface))
    assert np.nanmax(np.abs(tilted.surface - level.surface)) < 1e-3
    assert np.abs(tilted.polar - level.polar).max() < 1e-3 * np.abs(level.polar).max()


def test_too_small_or_flat_refused():
    with pytest.raises(ScanError, match="covers only"):
        prepare_cartridge(Scan(np.random.default_rng(0).normal(size=(40, 40)), 6.25, 6.25))
    with pytest.raises(ScanError, match="constant"):
        prepare_cartridge(Scan(np.ones((400, 400)), 6.25, 6.25))
    with pytest.raises(ScanError, match="too coarse"):
        prepare_cartridge(Scan(np.random.default_rng(0).normal(size=(200, 200)), 50.0, 50.0))


def test_descriptor_is_rotation_invariant_and_discriminates():
    import itertools

    d = {}
    for f in range(5):
        for s in range(2):
            scan, _ = cartridge_case(20 + f, s, pixel_um=12.5, rotation_deg=(0.0, 123.0)[s])
            d[(f, s)] = prepare_cartridge(scan)
    same, diff = [], []
    for a, b in itertools.combinations(sorted(d), 2):
        (same if a[0] == b[0] else diff).append(float(d[a].descriptor @ d[b].descriptor))
    assert np.mean(same) > np.mean(diff) + 0.1
    assert np.linalg.norm(d[(0, 0)].descriptor) == pytest.approx(1.0, abs=1e-5)
    # the second shot was turned by 123°: bringing it onto the first needs -123 = 57 (mod 180)
    for f in range(5):
        hyp = [h for h, _ in rotation_hypotheses(d[(f, 0)].spectrum, d[(f, 1)].spectrum, count=3)]
        assert any(abs(((h - 57.0) + 90) % 180 - 90) < 3.0 for h in hyp), (f, hyp)
    # many spectra against one at once: each as alone, each with its own count
    from ibin.features._spectrum import rotation_hypotheses_many

    firsts = [d[(f, 0)].spectrum for f in range(5)]
    many = rotation_hypotheses_many(np.stack(firsts), d[(0, 1)].spectrum, count=[1, 3, 2, 3, 1])
    assert many == [rotation_hypotheses(a, d[(0, 1)].spectrum, count=k) for a, k in zip(firsts, [1, 3, 2, 3, 1])]
    assert [len(h) for h in many] == [1, 3, 2, 3, 1]


def test_spectrum_shifts_with_rotation():
    rng = np.random.default_rng(5)
    z = np.cumsum(rng.normal(size=(200, 200)), axis=1)  # strongly directional texture
    z -= gaussian_lowpass(z, 10.0, 400.0)
    P = polar_spectrum(z, 10.0, short_wavelength_um=40.0, long_wavelength_um=400.0)
    d = spectrum_descriptor(P)
    assert P.shape == (16, 64) and d.shape == (256,)
    assert np.allclose(P.mean(axis=1), 0.0, atol=1e-4)  # ring means removed


def test_storage_roundtrip():
    scan, _ = cartridge_case(4, 0, pixel_um=12.5)
    p = prepare_cartridge(scan)
    arrays, attrs = p.to_arrays()
    q = PreparedCartridge.from_arrays(arrays, attrs)
    m = np.isfinite(p.surface)
    assert np.array_equal(m, np.isfinite(q.surface))
    assert np.abs(q.surface[m] - p.surface[m]).max() <= 0.5 / 25 + 1e-6 or np.abs(p.surface[m]).max() > 5
    assert q.origin_um == p.origin_um and q.primer == p.primer
    assert arrays["surface_q"].dtype == np.int8


def test_params_validated():
    with pytest.raises(ValueError):
        CartridgeParams(pixel_um=25.0, short_cutoff_um=40.0)


@pytest.mark.parametrize("theta", [0.0, 40.0, 200.0])
def test_polar_signature_rotation_is_recovered(theta):
    """A surface turned by theta about its grid centre: rotation_max finds -theta, with a high score."""
    import cv2

    from ibin.features import rotate_signature, rotation_max

    scan, _ = cartridge_case(7, 1, pixel_um=12.5)
    n = scan.shape[0] + 60  # a margin, so no part of the breech face turns out of the grid
    v = np.full((n, n), np.nan)
    v[30:-30, 30:-30] = scan.values
    m = np.isfinite(v)
    A = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), theta, 1.0)
    r = cv2.warpAffine(np.where(m, v, 0).astype(np.float32), A, (n, n))
    k = cv2.warpAffine(m.astype(np.float32), A, (n, n))
    pa = prepare_cartridge(Scan(v, 12.5, 12.5))
    pb = prepare_cartridge(Scan(np.where(k > 0.999, r, np.nan), 12.5, 12.5))
    assert pa.anchors[0] == pb.anchors[0] == "firing_pin"
    s, rot = rotation_max(pa.polar[0], pb.polar[0][None])
    assert s[0] > 0.85
    assert abs(((rot[0] + theta) + 180) % 360 - 180) <= 360 / 128  # the angle grid
    # rotating B's signature back makes the zero rotation best
    s0, rot0 = rotation_max(pa.polar[0], rotate_signature(pb.polar[0], -theta)[None])
    assert abs(rot0[0]) <= 360 / 128 and s0[0] > 0.85


def test_polar_signatures_separate_firearms(synth_cases):
    from ibin.features import rotation_max

    q = synth_cases[(0, 0)][0]
    scores = {k: float(rotation_max(q.polar[0], v[0].polar[0][None])[0][0]) for k, v in synth_cases.items() if k != (0, 0)}
    assert max(scores, key=scores.get) == (0, 1)
    assert scores[(0, 1)] > max(s for k, s in scores.items() if k[0] != 0) + 0.05


def test_rotation_max_top_agrees_with_exact_search():
    """The two-pass top-k equals an exhaustive search when the coarse pass keeps everything, and rows= searches a subset."""
    from ibin.features import rotate_signature, rotation_max
    from ibin.features._polar import from_vector, rotation_max_top, to_vector

    rng = np.random.default_rng(3)
    n, R, M = 500, 8, 32
    C = (rng.standard_normal((n, R, M)) + 1j * rng.standard_normal((n, R, M))).astype(np.complex64)
    C /= np.linalg.norm(C.reshape(n, -1), axis=1)[:, None, None]
    q = rotate_signature(C[123], 77.0)
    X = to_vector(C)
    exact, _ = rotation_max(q, from_vector(X, R))
    idx, s = rotation_max_top(q, X, 5, keep=n, exact_limit=0)
    assert idx[0] == 123 and s[0] > 0.9  # 128 rotation steps: harmonic 32 can be 1.4 degrees off
    assert np.array_equal(idx, np.argsort(-exact)[:5])
    rows = np.arange(100, 300)
    idx2, s2 = rotation_max_top(q, X, 5, rows=rows, keep=len(rows), exact_limit=0)
    assert rows[idx2[0]] == 123
    assert np.array_equal(rows[idx2], 100 + np.argsort(-exact[100:300])[:5])
    idx3, _ = rotation_max_top(q, X, 5, rows=rows)  # few signatures: the one-pass exact search
    assert np.array_equal(idx3, idx2)


def test_threaded_rotation_search_equals_one_thread():
    """Chunks shared between threads give the same scores, rotations and top-k as one thread."""
    from ibin.features import rotation_max
    from ibin.features._polar import coarse_columns, from_vector, rotation_max_top, to_vector

    rng = np.random.default_rng(5)
    n, R, M = 70_000, 8, 32  # more than one chunk in both passes
    X = rng.standard_normal((n, 2 * R * M), dtype=np.float32)
    q = from_vector(X[4321], R) * np.complex64(1.3)
    s1, r1 = rotation_max(q, from_vector(X[:20_000], R), chunk=4096)
    s2, r2 = rotation_max(q, from_vector(X[:20_000], R), chunk=4096, workers=2)
    assert np.array_equal(s1, s2) and np.array_equal(r1, r2)
    coarse = np.ascontiguousarray(X[:, coarse_columns(R, M, 24)])
    a = rotation_max_top(q, X, 10, coarse=coarse)
    b = rotation_max_top(q, X, 10, coarse=coarse, workers=2)
    assert a[0][0] == 4321 and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_first_pass_is_the_rotation_maximum_on_the_first_harmonics():
    """The first pass scores each 8-bit signature by its best inner product with the query over 4 h rotations, h harmonics."""
    from ibin.features._polar import CoarseSignatures, _first_pass, coarse_columns, to_vector

    rng = np.random.default_rng(11)
    R, M, n = 8, 32, 3000
    D = (rng.standard_normal((n, R, M)) + 1j * rng.standard_normal((n, R, M))).astype(np.complex64)
    q = (rng.standard_normal((R, M)) + 1j * rng.standard_normal((R, M))).astype(np.complex64)
    D[7] = q * np.exp(-1j * np.arange(1, M + 1) * np.deg2rad(90.0))  # the query turned by 90°, a grid angle of both h
    D[8] = q * np.exp(-1j * np.arange(1, M + 1) * np.deg2rad(180.0))  # half a turn: odd harmonics flip sign
    for h in (24, 5):  # an odd number of harmonics: one more odd than even
        exact = np.ascontiguousarray(to_vector(D)[:, coarse_columns(R, M, h)])
        coarse = CoarseSignatures.from_vectors(to_vector(D), R, M, h)
        assert coarse.codes.dtype == np.int8 and coarse.codes.shape == (n, 2 * R * h)
        got = _first_pass(q, coarse, workers=2, chunk=1000)
        # blocks of odd length: the kernel takes signatures two at a time, the last one alone. Equal to float32
        # rounding, not to the bit: BLAS may sum the rotations' products in another order for another block's
        # width (OpenBLAS on an AMD EPYC did, by up to 2e-7 of the best score; an Intel Xeon did not)
        one = _first_pass(q, coarse, workers=1, chunk=777)
        assert np.abs(one - got).max() <= 1e-6 * np.abs(got).max()
        alpha = np.arange(4 * h) * (2 * np.pi / (4 * h))

        def rotation_maximum(stored):  # (n, 2 R h) coarse_columns layout -> best score over the 4 h angles
            v = stored.reshape(n, 2, R, h)
            Dh = v[:, 0] + 1j * v[:, 1]  # (n, R, h)
            P = np.einsum("km,nkm->nm", q[:, :h].astype(np.complex128), np.conj(Dh))  # (n, h)
            return (P @ np.exp(1j * np.outer(np.arange(1, h + 1), alpha))).real.max(axis=1)

        # exactly the rotation maximum of the signatures the codes stand for ...
        ref = rotation_maximum(coarse.values())
        assert np.allclose(got, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
        # ... which are the float32 ones to within the 8-bit steps
        assert np.abs(got - rotation_maximum(exact)).max() < 0.01 * np.abs(ref).max()
        assert got.argmax() in (7, 8) and got[7] == pytest.approx((np.abs(q[:, :h]) ** 2).sum(), rel=0.01)
        assert got[8] == pytest.approx(got[7], rel=0.01)
    with pytest.raises(ValueError, match="whole harmonics"):
        _first_pass(q, CoarseSignatures(coarse.codes[:, :-1], coarse.scale), workers=1)
    with pytest.raises(ValueError, match="int8"):
        _first_pass(q, CoarseSignatures(coarse.codes.astype(np.int16), coarse.scale), workers=1)


def test_coarse_signatures_keep_each_row_to_half_a_step():
    """Rows are scaled to their own largest value (zero rows stay zero), and rows= picks rows without a full copy."""
    from ibin.features._polar import CoarseSignatures, coarse_columns

    rng = np.random.default_rng(13)
    R, M = 8, 32
    X = rng.standard_normal((50, 2 * R * M)).astype(np.float32) * np.logspace(-3, 2, 50, dtype=np.float32)[:, None]
    X[3] = 0
    c = CoarseSignatures.from_vectors(X, R, M, 24)
    ref = X[:, coarse_columns(R, M, 24)]
    step = np.abs(ref).max(axis=1) / 127
    assert np.all(np.abs(c.values() - ref) <= 0.5 * step[:, None] * (1 + 1e-5))
    assert not c.codes[3].any() and c.scale[3] == 0
    rows = np.array([9, 2, 40])
    sub = CoarseSignatures.from_vectors(X, R, M, 24, rows=rows)
    assert np.array_equal(sub.codes, c.codes[rows]) and np.array_equal(sub.scale, c[rows].scale)
    assert len(sub) == 3 and sub.nbytes == 3 * (2 * R * 24 + 4)
    # the codes of the plain quantisation: each row over its largest magnitude / 127, rounded half to even
    top = np.abs(ref).max(axis=1).astype(np.float32) / np.float32(127)
    with np.errstate(invalid="ignore", divide="ignore"):
        plain = np.clip(np.where(top[:, None] > 0, np.rint(ref / top[:, None]), 0), -127, 127).astype(np.int8)
    assert np.array_equal(plain, c.codes) and np.array_equal(top, c.scale)
    again = CoarseSignatures.from_coarse(ref)  # from float coarse signatures: the same
    assert np.array_equal(again.codes, c.codes) and np.array_equal(again.scale, c.scale)
    # a row length that is not a multiple of 16, the largest value in the last 5 for every other row
    odd = ref[:, :21].copy()
    odd[::2, 19] = -3 * np.abs(odd[::2]).max(axis=1)
    top = np.abs(odd).max(axis=1).astype(np.float32) / np.float32(127)
    with np.errstate(invalid="ignore", divide="ignore"):
        plain = np.clip(np.where(top[:, None] > 0, np.rint(odd / top[:, None]), 0), -127, 127).astype(np.int8)
    tail = CoarseSignatures.from_coarse(odd)
    assert np.array_equal(plain, tail.codes) and np.array_equal(top, tail.scale) and tail.codes[0, 19] == -127
    with pytest.raises(IndexError):
        CoarseSignatures.from_vectors(X, R, M, 24, rows=np.array([50]))


def test_coarse_signatures_in_threads_and_with_headroom_are_the_same():
    """Rows shared by threads (chunks of 65,536) and buffers with headroom give the codes of one thread."""
    from ibin.features._polar import CoarseSignatures

    rng = np.random.default_rng(14)
    R, M = 2, 4
    X = rng.standard_normal((150_000, 2 * R * M)).astype(np.float32)
    rows = np.flatnonzero(rng.random(len(X)) < 0.9)
    one = CoarseSignatures.from_vectors(X, R, M, rows=rows)
    two = CoarseSignatures.from_vectors(X, R, M, rows=rows, workers=2, headroom=100)
    assert np.array_equal(one.codes, two.codes) and np.array_equal(one.scale, two.scale)
    assert len(two.codes.base) == len(rows) + 100 and len(two.scale.base) == len(rows) + 100


def test_rotation_max_reads_vectors_in_place_and_matches_the_definition():
    """Real vectors with chosen rows score as the complex signatures, and as the maximum over the angle grid."""
    from ibin.features import rotation_max
    from ibin.features._polar import to_vector

    rng = np.random.default_rng(12)
    R, M, n, A = 8, 32, 400, 128
    D = (rng.standard_normal((n, R, M)) + 1j * rng.standard_normal((n, R, M))).astype(np.complex64)
    q = (rng.standard_normal((R, M)) + 1j * rng.standard_normal((R, M))).astype(np.complex64)
    X = to_vector(D)
    rows = np.array([399, 3, 3, 250, 0])
    s_c, r_c = rotation_max(q, D)
    s_v, r_v = rotation_max(q, X, rows=rows, chunk=2, workers=2)
    assert np.allclose(s_v, s_c[rows], rtol=1e-5, atol=1e-4) and np.array_equal(r_v, r_c[rows])
    alpha = np.arange(A) * (2 * np.pi / A)
    P = np.einsum("km,nkm->nm", q.astype(np.complex128), np.conj(D))
    S = (P @ np.exp(1j * np.outer(np.arange(1, M + 1), alpha))).real  # score at each angle grid point
    assert np.allclose(s_c, S.max(axis=1), rtol=1e-4, atol=1e-3)
    best = np.rad2deg(alpha[S.argmax(axis=1)])
    assert np.allclose(((r_c - best) + 180) % 360 - 180, 0, atol=1e-3)
    with pytest.raises(IndexError):
        rotation_max(q, X, rows=np.array([n]))
    with pytest.raises(ValueError, match="do not match"):
        rotation_max(q, X[:, :-2])
