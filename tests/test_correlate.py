"""Registration, masked NCC and Congruent Matching Cells against known ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ibin.correlate import CMCParams, ComparisonParams, compare_prepared, masked_ncc
from ibin.correlate._ncc import FixedSpectra, fft_shape, shift_window
from ibin.features import prepare_cartridge
from ibin.synth import cartridge_case

PX = 12.5


def _pearson(a, b):
    m = np.isfinite(a) & np.isfinite(b)
    x, y = a[m] - a[m].mean(), b[m] - b[m].mean()
    return float(x @ y / math.sqrt((x @ x) * (y @ y)))


def test_masked_ncc_equals_pearson_over_the_overlap():
    rng = np.random.default_rng(3)
    f = rng.normal(size=(20, 24)).astype(np.float32)
    g = rng.normal(size=(18, 22)).astype(np.float32)
    f[rng.random(f.shape) < 0.2] = np.nan
    g[rng.random(g.shape) < 0.2] = np.nan
    g[2:12, 3:15] = f[5:15, 7:19] + 0.3 * rng.normal(size=(10, 12))  # a shifted copy inside g
    shape = fft_shape(f.shape, g.shape, 30)
    c, n = masked_ncc(FixedSpectra(f, shape), g, min_overlap_px=10)
    win, sy, sx = shift_window(shape, 30)
    checked = 0
    for i in range(shape[0]):
        for j in range(shape[1]):
            dy, dx = sy[i], sx[j]
            if abs(dy) >= 15 or abs(dx) >= 15:
                continue
            # fixed[y, x] vs moving[y - dy, x - dx]
            a = np.full((60, 60), np.nan, np.float32)
            b = np.full((60, 60), np.nan, np.float32)
            a[20:40, 20:44] = f
            b[20 + dy : 38 + dy, 20 + dx : 42 + dx] = g
            ov = int((np.isfinite(a) & np.isfinite(b)).sum())
            if ov >= 10:
                assert n[0, i, j] == ov
                assert c[0, i, j] == pytest.approx(_pearson(a, b), abs=2e-4)
                checked += 1
    assert checked > 200
    c, _ = masked_ncc(FixedSpectra(f, shape), g, min_overlap_px=100)
    k = np.unravel_index(np.argmax(np.where(win, c[0], -1)), c[0].shape)
    assert (sy[k[0]], sx[k[1]]) == (3, 4)  # g[y-3, x-4] ~ f[y, x]


def _brute_cell_ncc(cell, region, o, min_frac):
    """Pearson of ``cell`` at every offset of ``region`` over the points both measured; -1 where too few."""
    need = min_frac * np.isfinite(cell).sum()
    s = cell.shape[0]
    out = np.full((o, o), -1.0)
    for y in range(o):
        for x in range(o):
            w = region[y : y + s, x : x + s]
            m = np.isfinite(cell) & np.isfinite(w)
            if m.sum() >= max(need, 2) and np.ptp(cell[m]) > 0 and np.ptp(w[m]) > 0:
                out[y, x] = _pearson(cell, w)
    return out


def _cells_and_regions(rng, n_c, s, R):
    cells = rng.normal(size=(n_c, s, s)).astype(np.float32)
    regions = rng.normal(size=(2, n_c, R, R)).astype(np.float32)
    for k in range(n_c):  # each cell hidden in its first region, at an offset of its own
        y, x = rng.integers(0, R - s + 1, 2)
        regions[0, k, y : y + s, x : x + s] = cells[k] + 0.5 * rng.normal(size=(s, s))
    cells[rng.random(cells.shape) < 0.25] = np.nan
    regions[rng.random(regions.shape) < 0.25] = np.nan
    cells[0, :, : s // 2 + 2] = np.nan  # one cell measured on less than half its square
    regions[1, 1, : R // 2 + 3] = np.nan  # and a region mostly missing: offsets that overlap too little
    cells[2, :, :] = 1.5  # a constant cell: no correlation anywhere
    return cells, regions


def test_cell_search_equals_pearson_over_the_overlap():
    """The CMC cell search (FFT sums, then a Numba kernel) picks the offset where the masked Pearson correlation peaks."""
    from ibin.correlate._cmc import _best_cell_offsets

    rng = np.random.default_rng(11)
    s, R = 8, 20
    o = R - s + 1
    cells, regions = _cells_and_regions(rng, 5, s, R)
    best = _best_cell_offsets(cells, regions, o)
    assert best.shape == (2, 5)
    for t in range(2):
        for k in range(5):
            ref = _brute_cell_ncc(cells[k], regions[t, k], o, 0.5)
            got = ref.ravel()[best[t, k]]
            assert got == pytest.approx(ref.max(), abs=1e-4)
    assert (best[:, 2] == 0).all()  # nothing scores: the first offset, as argmax of all -1
    for k in (1, 3, 4):  # hidden cells are found where they were put
        ref = _brute_cell_ncc(cells[k], regions[0, k], o, 0.5)
        assert best[0, k] == int(np.argmax(ref)) and ref.max() > 0.7


def test_cell_neighbourhood_equals_pearson_over_the_overlap():
    from ibin.correlate._kernels_nb import cell_pearson_neighbourhood

    rng = np.random.default_rng(12)
    s = 8
    cells, regions = _cells_and_regions(rng, 5, s, s + 2)
    regions[1, 1] = rng.normal(size=(s + 2, s + 2))
    regions[1, 1, :5] = np.nan  # the top row of offsets overlaps too little of the cell, the bottom one enough
    out = cell_pearson_neighbourhood(cells, regions, 0.5, np.empty((2, 5, 9)))
    for t in range(2):
        for k in range(5):
            ref = _brute_cell_ncc(cells[k], regions[t, k], 3, 0.5).ravel()
            assert out[t, k] == pytest.approx(ref, abs=1e-6)
    assert (out[:, 2] == -1).all()
    assert (out[1, 1, :3] == -1).all() and (out[1, 1, 6:] > -1).all()


def test_cell_grid_fractions():
    from ibin.correlate._cmc import _cell_grid

    rng = np.random.default_rng(13)
    yy, xx = np.mgrid[:90, :70]
    valid = ((yy - 50) ** 2 + (xx - 30) ** 2 < 45**2) & (rng.random((90, 70)) > 0.3)
    cs = 16
    cells = _cell_grid(valid, cs, 0.35)
    assert cells and len({(y, x) for y, x, _ in cells}) == len(cells)
    ys, xs = {y for y, _, _ in cells}, {x for _, x, _ in cells}
    assert all((y - min(ys)) % cs == 0 for y in ys) and all((x - min(xs)) % cs == 0 for x in xs)
    # the whole measured region is covered by the grid, which overhangs it equally on each side
    r = np.flatnonzero(valid.any(axis=1))
    c = np.flatnonzero(valid.any(axis=0))
    ny, nx = -(-(r[-1] + 1 - r[0]) // cs), -(-(c[-1] + 1 - c[0]) // cs)
    oy, ox = r[0] + ((r[-1] + 1 - r[0]) - ny * cs) // 2, c[0] + ((c[-1] + 1 - c[0]) - nx * cs) // 2
    kept = {(y, x): f for y, x, f in cells}
    for i in range(ny):
        for j in range(nx):
            y, x = oy + i * cs, ox + j * cs
            frac = valid[max(y, 0) : max(y + cs, 0), max(x, 0) : max(x + cs, 0)].sum() / cs**2
            assert ((y, x) in kept) == (frac >= 0.35)
            if (y, x) in kept:
                assert kept[(y, x)] == frac
    assert oy < 0 or ox < 0 or oy + ny * cs > 90 or ox + nx * cs > 70  # the case of a grid leaving the image is covered


def _truth_map(theta_deg, shift_um, n_px):
    """Where a point of scan B lands in scan A when B = A rotated by theta about the grid centre and shifted."""
    c = np.array([n_px * PX / 2.0, n_px * PX / 2.0])
    t = math.radians(-theta_deg)
    R = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])
    return lambda p: (np.asarray(p) - c - np.asarray(shift_um)) @ R.T + c


def _transformed(values: np.ndarray, theta_deg: float, shift_px: tuple[int, int]) -> np.ndarray:
    """``values`` rotated counter-clockwise (as displayed) about the grid centre, then shifted (rows, cols)."""
    import cv2

    h, w = values.shape
    m = np.isfinite(values)
    A = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), theta_deg, 1.0)
    A[:, 2] += (shift_px[1], shift_px[0])
    v = cv2.warpAffine(np.where(m, values, 0).astype(np.float32), A, (w, h), flags=cv2.INTER_LINEAR)
    k = cv2.warpAffine(m.astype(np.float32), A, (w, h), flags=cv2.INTER_LINEAR)
    return np.where(k > 0.999, v, np.nan)


@pytest.mark.parametrize("theta,shift_px", [(0.0, (0, 0)), (37.0, (10, -6)), (180.0, (-5, 3)), (291.5, (0, 12))])
def test_rotation_and_translation_recovered(theta, shift_px):
    """B is A rotated by theta about the grid centre and shifted: the alignment must map B back onto A."""
    from ibin.scan import Scan

    scan, _ = cartridge_case(7, 1, pixel_um=PX)
    n = scan.shape[0] + 60
    canvas = np.full((n, n), np.nan)
    canvas[30:-30, 30:-30] = scan.values
    a = prepare_cartridge(Scan(canvas, PX, PX))
    b = prepare_cartridge(Scan(_transformed(canvas, theta, shift_px), PX, PX))
    r = compare_prepared(a, b)
    expected_rot = ((-theta) + 180.0) % 360.0 - 180.0
    assert abs(((r.rotation_deg - expected_rot) + 180) % 360 - 180) < 0.75
    truth = _truth_map(theta, (shift_px[1] * PX, shift_px[0] * PX), n)
    c = n * PX / 2
    pts = np.array([[c + 1200 * math.cos(t), c + 1200 * math.sin(t)] for t in np.linspace(0, 2 * math.pi, 8, endpoint=False)])
    err = np.hypot(*(r.alignment.apply(pts) - truth(pts)).T)
    assert err.max() < 30.0  # µm: about two canonical pixels, 1.2 mm from the centre
    assert r.cmc >= 0.8 * r.cells and r.ccf > 0.8  # the same surface: nearly every cell agrees


def test_same_firearm_above_different(synth_cases):
    same, diff = [], []
    keys = sorted(synth_cases)
    for i, ka in enumerate(keys):
        for kb in keys[i + 1 :]:
            r = compare_prepared(synth_cases[ka][0], synth_cases[kb][0])
            (same if ka[0] == kb[0] else diff).append(r)
    assert min(r.cmc for r in same) >= 6  # the NIST identification criterion
    assert max(r.cmc for r in diff) < 6
    assert min(r.score for r in same) > max(r.score for r in diff)


def test_symmetric(synth_cases):
    a, b = synth_cases[(0, 0)][0], synth_cases[(0, 1)][0]
    ab, ba = compare_prepared(a, b), compare_prepared(b, a)
    assert ab.score == ba.score and ab.cmc == ba.cmc
    assert ab.rotation_deg == pytest.approx(-ba.rotation_deg, abs=1e-9)
    # composing the two alignments is the identity
    p = np.array([[1500.0, 900.0], [400.0, 2100.0]])
    np.testing.assert_allclose(ab.alignment.apply(ba.alignment.apply(p)), p, atol=1e-6)


def test_impossible_threshold_gives_no_cells(synth_cases):
    a, b = synth_cases[(0, 0)][0], synth_cases[(0, 1)][0]
    strict = ComparisonParams(cmc=CMCParams(ccf_threshold=1.01))
    r = compare_prepared(a, b, strict)
    assert r.cmc == 0 and r.cells > 0
    assert all(not c.congruent for c in r.cmc_ab.cells)


def test_thresholds_scale_with_units(synth_cases):
    """Tighter position tolerance can only remove congruent cells, never add."""
    a, b = synth_cases[(1, 0)][0], synth_cases[(1, 1)][0]
    loose = compare_prepared(a, b).cmc
    tight = compare_prepared(a, b, ComparisonParams(cmc=CMCParams(xy_threshold_um=12.5))).cmc
    assert tight <= loose


def test_grids_must_match(synth_cases):
    a = synth_cases[(0, 0)][0]
    from dataclasses import replace

    with pytest.raises(ValueError, match="different grids"):
        compare_prepared(a, replace(a, pixel_um=6.25))


def test_screen_ranks_mates_and_estimates_rotation(synth_cases):
    from ibin.correlate import Pyramid, QueryScreen

    q = synth_cases[(0, 0)][0]
    cands = {k: v[0] for k, v in synth_cases.items() if k != (0, 0)}
    shape = tuple(np.max([Pyramid(c.surface, PX).levels[4].shape for c in cands.values()], axis=0))
    qs = QueryScreen(Pyramid(q.surface, PX).levels[4], 4 * PX, q.spectrum, shape)
    scores = {k: qs.score(Pyramid(c.surface, PX).levels[4], c.spectrum) for k, c in cands.items()}
    best = max(scores, key=lambda k: scores[k][0])
    assert best == (0, 1)
    full = compare_prepared(q, cands[(0, 1)])
    assert abs(((scores[best][1] - full.rotation_deg) + 180) % 360 - 180) <= 2.5  # the screen's angle grid


def test_screen_rotation_hint_is_used_in_the_alignment_convention(synth_cases):
    """With no spectral hypothesis, the screen finds the mate only at the hinted rotation (candidate onto query)."""
    from ibin.correlate import Pyramid, QueryScreen, ScreenParams

    q, mate = synth_cases[(0, 0)][0], synth_cases[(0, 1)][0]
    cq, cm = Pyramid(q.surface, PX).levels[4], Pyramid(mate.surface, PX).levels[4]
    truth = compare_prepared(q, mate).rotation_deg
    qs = QueryScreen(cq, 4 * PX, q.spectrum, cm.shape, ScreenParams(hypotheses_with_hint=0))
    right, rot = qs.score(cm, mate.spectrum, truth)
    wrong, _ = qs.score(cm, mate.spectrum, truth + 90.0)
    assert abs(((rot - truth) + 180) % 360 - 180) <= 2.5
    assert right > wrong + 0.1
    # several hints: the right one among them is enough; no hint falls back to the spectral hypotheses
    assert qs.score(cm, mate.spectrum, [truth + 90.0, truth])[0] == pytest.approx(right)
    assert qs.score(cm, mate.spectrum)[0] == pytest.approx(right, abs=0.05)


def test_screen_in_batches_equals_one_by_one(synth_cases):
    """Candidates screened together get the scores each gets alone, in their order, whatever the batch size."""
    from ibin.correlate import Pyramid, QueryScreen

    q = synth_cases[(0, 0)][0]
    cands = [(Pyramid(c.surface, PX).levels[4], c.spectrum) for k, (c, _, _) in sorted(synth_cases.items()) if k != (0, 0)]
    shape = tuple(np.max([g.shape for g, _ in cands], axis=0))
    qs = QueryScreen(Pyramid(q.surface, PX).levels[4], 4 * PX, q.spectrum, (shape[0] - 4, shape[1] - 4))
    items = [(g, s, None) for g, s in cands]
    items += [(g, s, [10.0 * i, 200.0]) for i, (g, s) in enumerate(cands)]  # with hints
    items.insert(3, (np.full((20, 20), np.nan), cands[0][1], None))  # nothing measured
    alone = [qs.score(*it) for it in items]
    assert alone[3] == (-1.0, 0.0) and all(a[0] > 0 for i, a in enumerate(alone) if i != 3)
    assert len({a for i, a in enumerate(alone) if i != 3}) > 5  # the candidates really differ
    for batch in (1, 3, 64):
        assert qs.score_many(items, batch=batch) == alone


@pytest.mark.parametrize("shape, shift", [((90, 90), 20), ((48, 50), 7), ((30, 32), 0), ((16, 18), 12)])
def test_inverse_near_zero_is_the_inverse_transform_there(shape, shift):
    from scipy import fft

    from ibin.correlate._ncc import inverse_near_zero

    rng = np.random.default_rng(5)
    x = rng.normal(size=(3,) + shape).astype(np.float32)
    X = fft.rfft2(x, shape)
    got = inverse_near_zero(X, shape, shift)
    H, W = shape
    rows = [i % H for i in range(-shift, shift + 1)] if 2 * shift + 1 < H else list(range(H))
    cols = [j % W for j in range(-shift, shift + 1)] if 2 * shift + 1 < W else list(range(W))
    assert got.shape == (3, len(rows), len(cols))
    # the same shifts: compare as sets of (row, col) -> value
    order_r = sorted(rows)
    order_c = sorted(cols)
    np.testing.assert_allclose(got, x[:, order_r][:, :, order_c], rtol=0, atol=2e-5)


@pytest.mark.parametrize("shape", [(40, 100), (101, 37), (64, 64)])
def test_pyramid_grid_keeps_every_point_at_any_rotation(shape):
    """Turned about its widened grid's centre, a surface keeps all its measured points, whatever its box."""
    from ibin.correlate import Pyramid
    from ibin.correlate._ncc import rotate_stack

    s = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    p = Pyramid(s, 12.5)
    g, g2, (oy, ox) = p.wide()
    assert g.shape[0] % 4 == 0 and g.shape[1] % 4 == 0 and oy % 2 == 0 and ox % 2 == 0
    np.testing.assert_array_equal(g[oy : oy + shape[0], ox : ox + shape[1]], s)
    t2 = p.levels[2]
    np.testing.assert_array_equal(g2[oy // 2 : oy // 2 + t2.shape[0], ox // 2 : ox // 2 + t2.shape[1]], t2)
    n = np.isfinite(g).sum()
    for angle in (30.0, 45.0, 90.0, 137.0):
        # exact for quarter turns; elsewhere bilinear interpolation loses about one point in four along the edge
        kept = np.isfinite(rotate_stack(g, [angle], interpolation="nearest")[0]).sum()
        assert kept >= n - 2 * (shape[0] + shape[1]) * (angle % 90 != 0), angle


def test_a_scan_turned_a_quarter_keeps_all_its_congruent_cells():
    """Fadul_Q's region is 226 x 266 pixels: a quarter turn used to push 20 pixels off each end (16 of 21 cells)."""
    from ibin.scan import Scan, load_scan

    from .conftest import shared_path

    s = load_scan(shared_path("cartridge", "fadul", "Fadul_Q.x3p"))
    a = prepare_cartridge(s)
    assert a.surface.shape[0] != a.surface.shape[1]
    b = prepare_cartridge(Scan(np.rot90(np.asarray(s.values)), s.pixel_x_um, s.pixel_y_um))
    r = compare_prepared(a, b)
    assert r.cmc_ab.cmc == r.cmc_ab.cell_count and r.cmc_ba.cmc == r.cmc_ba.cell_count
    assert abs(abs(r.alignment.rotation_deg) - 90.0) < 1.0
