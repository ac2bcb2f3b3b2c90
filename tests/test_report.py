"""Reports: the evidence geometry, the figures' content, the self-contained HTML, the PDF and the CLI."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import pytest

from ibin.cli import main
from ibin.correlate import CMCParams, compare_prepared
from ibin.features import prepare_cartridge
from ibin.report import (
    BulletEvidence,
    CellOutline,
    add_scale_bar,
    bullet_lead_figure,
    cartridge_evidence,
    cartridge_lead_figure,
    draw_cells,
    figure_png,
    plot_land_scores,
    plot_surface,
    roc_curve,
    roc_figure,
    score_histogram_figure,
    warp_into,
)
from ibin.report._figures import new_figure, nice_length_um
from ibin.synth import cartridge_case


@pytest.fixture(scope="module")
def moved_pair():
    """One breech face scanned twice: the second copy rotated by 30° and shifted (200, -120) µm."""
    a, _ = cartridge_case(500, 0, pixel_um=12.5, rotation_deg=0.0, shift_um=(0.0, 0.0), difficulty=0.0)
    b, _ = cartridge_case(500, 0, pixel_um=12.5, rotation_deg=30.0, shift_um=(200.0, -120.0), difficulty=0.0)
    pa, pb = prepare_cartridge(a), prepare_cartridge(b)
    return pa, pb, compare_prepared(pa, pb)


@pytest.fixture(scope="module")
def pairs(synth_cases):
    """A same-firearm and a different-firearm pair of the shared synthetic cases, compared."""
    same = (synth_cases[(0, 0)][0], synth_cases[(0, 1)][0])
    diff = (synth_cases[(0, 0)][0], synth_cases[(1, 1)][0])
    return {k: (a, b, compare_prepared(a, b)) for k, (a, b) in {"same": same, "diff": diff}.items()}


def _pearson(a, b):
    m = np.isfinite(a) & np.isfinite(b)
    return float(np.corrcoef(a[m], b[m])[0, 1]), int(m.sum())


# ---------------------------------------------------------------- evidence


def test_aligned_lead_lies_on_the_query(moved_pair):
    """The reported alignment, applied by the report's warp, puts the moved copy back on the original."""
    pa, pb, r = moved_pair
    assert abs(r.rotation_deg + 30.0) < 2.0  # B turned 30° counter-clockwise: it goes back by -30°
    ev = cartridge_evidence(pa, pb, r)
    rho, n = _pearson(ev.query_surface, ev.lead_aligned)
    assert n > 0.5 * np.isfinite(pa.surface).sum()
    assert rho > 0.8 and abs(rho - r.ccf) < 0.03, (rho, r.ccf)
    # and the unaligned lead does not
    raw = np.full(pa.surface.shape, np.nan, np.float32)
    h, w = min(pa.surface.shape[0], pb.surface.shape[0]), min(pa.surface.shape[1], pb.surface.shape[1])
    raw[:h, :w] = pb.surface[:h, :w]
    assert _pearson(ev.query_surface, raw)[0] < 0.3


def test_correlation_surface_peaks_at_the_reported_alignment(moved_pair, pairs):
    for pa, pb, r in [moved_pair, pairs["same"]]:
        ev = cartridge_evidence(pa, pb, r)
        assert ev.correlation.shape == (len(ev.shift_um), len(ev.shift_um))
        assert ev.shift_um[0] == -ev.shift_um[-1] and ev.shift_um[len(ev.shift_um) // 2] == 0
        # the centre is the registration's own CCF (same alignment, one interpolation instead of two)
        assert abs(ev.ccf_at_alignment - r.ccf) < 0.05, (ev.ccf_at_alignment, r.ccf)
        dx, dy = ev.peak_offset_um
        assert abs(dx) <= 2 * ev.pixel_um and abs(dy) <= 2 * ev.pixel_um
        # the rotation profile peaks at the reported rotation
        k = int(np.nanargmax(ev.rotation_ccf))
        assert abs((ev.rotation_deg[k] - r.rotation_deg + 180) % 360 - 180) <= 3.0


def test_cells_are_where_they_matched(pairs):
    """Each cell drawn on the aligned lead covers lead texture that correlates with the query cell as reported."""
    pa, pb, r = pairs["same"]
    ev = cartridge_evidence(pa, pb, r)
    assert len(ev.cells_query) == len(ev.cells_lead) == r.cmc_ab.cell_count
    assert ev.cmc_drawn == r.cmc_ab.cmc >= 6
    px, cs = ev.pixel_um, int(round(CMCParams().cell_um / ev.pixel_um))
    checked = 0
    for cq, cl, cell in zip(ev.cells_query, ev.cells_lead, r.cmc_ab.cells):
        assert cq.ccf == cell.ccf and cq.congruent == cell.congruent
        np.testing.assert_allclose(cq.centre_um, (cell.x_um, cell.y_um))
        side = np.linalg.norm(np.diff(cl.corners_um, axis=0), axis=1)
        np.testing.assert_allclose(side, CMCParams().cell_um, rtol=1e-9)
        if not cell.congruent:
            continue
        # congruent cells sit within the congruence tolerance of where the query has them
        assert np.hypot(*np.subtract(cl.centre_um, cq.centre_um)) < 2 * CMCParams().xy_threshold_um
        x0, y0 = (np.array(cl.centre_um) / px - cs / 2).round().astype(int)
        q0x, q0y = (np.array(cq.centre_um) / px - cs / 2).round().astype(int)
        if min(x0, y0, q0x, q0y) < 0:
            continue
        a = ev.query_surface[q0y : q0y + cs, q0x : q0x + cs]
        b = ev.lead_aligned[y0 : y0 + cs, x0 : x0 + cs]
        if a.shape != (cs, cs) or b.shape != (cs, cs) or (np.isfinite(a) & np.isfinite(b)).sum() < cs * cs / 3:
            continue
        assert abs(_pearson(a, b)[0] - cell.ccf) < 0.12, (cell, _pearson(a, b))
        checked += 1
    assert checked >= 3


def test_warp_into_keeps_missing_data_missing():
    v = np.arange(100, dtype=np.float32).reshape(10, 10)
    v[4, 4] = np.nan
    out = warp_into(v, np.array([[1.0, 0, 2.0], [0, 1.0, 1.0]]), (10, 10))  # shift x by 2, y by 1
    assert np.isnan(out[5, 6]) and out[5, 5] == v[4, 3]
    assert np.isnan(out[0]).all() and np.isnan(out[:, :2]).all()


def test_evidence_refuses_mixed_grids(pairs):
    pa, pb, r = pairs["same"]
    from dataclasses import replace

    with pytest.raises(ValueError, match="different grids"):
        cartridge_evidence(pa, replace(pb, pixel_um=25.0), r)


# ---------------------------------------------------------------- figures


@pytest.mark.parametrize("span, expected", [(3500.0, 500.0), (1000.0, 200.0), (12000.0, 2000.0), (40.0, 10.0)])
def test_nice_lengths(span, expected):
    assert nice_length_um(span) == expected


@pytest.mark.parametrize("pixel_um, shape", [(12.5, (266, 300)), (3.125, (900, 700))])
def test_scale_bar_matches_micrometres(pixel_um, shape):
    fig = new_figure(4, 4)
    ax = fig.add_axes([0.05, 0.05, 0.9, 0.9])
    plot_surface(ax, np.random.default_rng(0).normal(size=shape), pixel_um)
    fig.canvas.draw()
    bars = [p for p in ax.patches if p.get_gid() == "scale-bar"]
    labels = [t for t in ax.texts if t.get_gid() == "scale-bar-label"]
    assert len(bars) == 1 and len(labels) == 1
    m = re.fullmatch(r"([\d.]+) (µm|mm)", labels[0].get_text())
    length_um = float(m.group(1)) * (1000.0 if m.group(2) == "mm" else 1.0)
    # in data units (one per grid point) ...
    assert bars[0].get_width() * pixel_um == pytest.approx(length_um)
    # ... and on screen: the bar's share of the image's width is the length's share of the scan's width
    t = ax.transData
    bar_px = t.transform((bars[0].get_x() + bars[0].get_width(), 0))[0] - t.transform((bars[0].get_x(), 0))[0]
    img_px = t.transform((shape[1] - 0.5, 0))[0] - t.transform((-0.5, 0))[0]
    assert bar_px / img_px == pytest.approx(length_um / (shape[1] * pixel_um), rel=1e-6)


def test_scale_bar_explicit_length_and_bad_pixel():
    fig = new_figure(3, 3)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(np.zeros((100, 200)))
    bar, label = add_scale_bar(ax, 2.0, length_um=100.0)
    assert bar.get_width() == 50.0 and label.get_text() == "100 µm"
    with pytest.raises(ValueError):
        add_scale_bar(ax, 0.0)


def test_cells_drawn_match_the_cmc_count(pairs):
    for name in ("same", "diff"):
        pa, pb, r = pairs[name]
        ev = cartridge_evidence(pa, pb, r, query_id="q", lead_id="l")
        fig = cartridge_lead_figure(ev, rank=1)
        surfaces = fig.axes[:2]  # the query with its cells, the aligned lead with the cells where they matched
        for ax in surfaces:
            coll = {c.get_gid(): c for c in ax.collections if c.get_gid()}
            assert len(coll["cells-congruent"].get_paths()) == r.cmc_ab.cmc
            assert len(coll["cells-other"].get_paths()) == r.cmc_ab.cell_count - r.cmc_ab.cmc
            # solid blue for congruent cells, dashed orange for the others (line style carries it in grey)
            assert coll["cells-congruent"].get_linestyle()[0][1] is None
            assert coll["cells-other"].get_linestyle()[0][1] is not None
            labels = coll["cell-ccf"]
            assert len(labels.get_paths()) == r.cmc_ab.cell_count
            assert sorted(labels.ibin_texts) == sorted(f"{c.ccf:.2f}".replace("0.", ".", 1) if c.ccf >= 0 else
                                                       f"{c.ccf:.1f}" for c in r.cmc_ab.cells)
            assert any(p.get_gid() == "scale-bar" for p in ax.patches)
        assert any(p.get_gid() == "scale-bar" for p in fig.axes[2].patches)  # the overlay too
        png = figure_png(fig)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_draw_cells_styles():
    fig = new_figure(3, 3)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(np.zeros((50, 50)))
    sq = np.array([[0, 0], [100, 0], [100, 100], [0, 100]], float)
    cells = [CellOutline(sq + 50, (100.0, 100.0), 0.8, True), CellOutline(sq + 300, (350.0, 350.0), 0.3, False),
             CellOutline(sq + 400, (450.0, 450.0), 0.55, True)]
    yes, no = draw_cells(ax, cells, 12.5)
    assert len(yes.get_paths()) == 2 and len(no.get_paths()) == 1
    np.testing.assert_allclose(yes.get_paths()[0].vertices[:4], (sq + 50) / 12.5 - 0.5)
    from matplotlib.colors import to_rgba

    assert tuple(yes.get_edgecolor()[0]) == to_rgba("#0072B2") and tuple(no.get_edgecolor()[0]) == to_rgba("#E69F00")


def test_surface_colormap_is_monotonic_grey_with_white_missing():
    fig = new_figure(3, 3)
    ax = fig.add_axes([0, 0, 1, 1])
    im = plot_surface(ax, np.array([[np.nan, -3.0], [0.0, 3.0]]), 1.0, scale_bar=False)
    cmap = im.get_cmap()
    rgb = cmap(np.linspace(0, 1, 32))[:, :3]
    assert np.allclose(rgb[:, 0], rgb[:, 1]) and np.allclose(rgb[:, 1], rgb[:, 2])  # grey: no hue to confuse
    assert np.all(np.diff(rgb[:, 0]) > 0) and rgb[-1, 0] < 0.9  # monotonic, and white stays free ...
    assert tuple(cmap.get_bad()) == (1.0, 1.0, 1.0, 1.0)  # ... for missing data


def test_bullet_figures_from_synthetic_lands():
    rng = np.random.default_rng(3)
    n, px = 6, 1.5625
    base = [np.cumsum(rng.normal(size=800)) * 0.05 for _ in range(n)]
    phase = 2
    lead = [None] * n
    for i in range(n):
        lead[(i + phase) % n] = np.roll(base[i], 7) + rng.normal(scale=0.05, size=800)
    scores = np.array([[np.corrcoef(base[i], lead[j])[0, 1] for j in range(n)] for i in range(n)])
    ev = BulletEvidence("bullet-Q", "bullet-L", base, lead, px, scores, phase, lags_um=[7 * px] * n, score=0.9)
    assert ev.matched_pairs == [(i, (i + phase) % n) for i in range(n)]
    assert int(np.nanargmax(ev.phase_means)) == phase
    fig = bullet_lead_figure(ev, rank=1)
    score_ax = fig.axes[0]
    tiles = [p for p in score_ax.patches if p.get_gid() == "phase-tile"]
    assert sorted((round(t.get_y() + 0.5), round(t.get_x() + 0.5)) for t in tiles) == ev.matched_pairs
    # one signature panel per matched land pair, the lead moved by its lag
    sig_axes = [ax for ax in fig.axes if any(l.get_gid() == "signature-lead" for l in ax.lines)]
    assert len(sig_axes) == n
    line = next(l for l in sig_axes[0].lines if l.get_gid() == "signature-lead")
    assert line.get_xdata()[0] == pytest.approx(7 * px)
    assert any(l.get_gid() == "scale-bar" for l in sig_axes[-1].lines)
    assert figure_png(fig)[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(land_scores=np.zeros((6, 6)), phase=6), "phase"),
        (dict(land_scores=np.zeros((5, 6)), phase=0), "signatures"),
        (dict(land_scores=np.zeros(6), phase=0), "2-D"),
    ],
)
def test_bullet_evidence_is_validated(kwargs, match):
    sig = [np.zeros(10)] * 6
    with pytest.raises(ValueError, match=match):
        BulletEvidence("q", "l", sig, sig, 1.0, **kwargs)


def test_land_scores_outline_wraps_around():
    fig = new_figure(4, 4)
    ax = fig.add_subplot(111)
    tiles = plot_land_scores(ax, np.arange(16, dtype=float).reshape(4, 4), 3)
    assert [(round(t.get_y() + 0.5), round(t.get_x() + 0.5)) for t in tiles] == [(0, 3), (1, 0), (2, 1), (3, 2)]


# ---------------------------------------------------------------- benchmark plots


def test_roc_curve_numbers():
    fpr, tpr, thr, auc = roc_curve([3, 4, 5], [0, 1, 2])
    assert auc == 1.0 and (0.0, 1.0) in set(zip(fpr, tpr))
    assert (fpr[0], tpr[0]) == (0.0, 0.0) and (fpr[-1], tpr[-1]) == (1.0, 1.0) and np.isinf(thr[0])
    rng = np.random.default_rng(1)
    s, d = rng.normal(1, 1, 300), rng.normal(0, 1, 500)
    mw = np.mean((s[:, None] > d[None]) + 0.5 * (s[:, None] == d[None]))
    assert roc_curve(s, d)[3] == pytest.approx(mw, abs=1e-12)
    assert roc_curve([1, 1], [1, 1])[3] == 0.5  # ties count half
    with pytest.raises(ValueError, match="no finite"):
        roc_curve([np.nan], [1.0])


def test_roc_and_histogram_figures(tmp_path):
    rng = np.random.default_rng(2)
    same, diff = rng.normal(12, 4, 63), rng.normal(2, 1, 717)
    fig = roc_figure(same, diff, tmp_path / "roc.png")
    assert (tmp_path / "roc.png").read_bytes()[:4] == b"\x89PNG"
    line = next(l for l in fig.axes[0].lines if l.get_gid() == "roc")
    fpr, tpr, _, auc = roc_curve(same, diff)
    np.testing.assert_allclose(line.get_xdata(), fpr)
    np.testing.assert_allclose(line.get_ydata(), tpr)
    assert f"AUC {auc:.3f}" in fig.axes[0].get_legend().get_texts()[-1].get_text()
    fig = score_histogram_figure(same, diff, tmp_path / "hist.pdf", threshold=6, bins=30)
    assert (tmp_path / "hist.pdf").read_bytes()[:4] == b"%PDF"
    edges = np.histogram_bin_edges(np.concatenate([same, diff]), bins=30)
    for gid, data in (("hist-same", same), ("hist-diff", diff)):
        poly = next(p for p in fig.axes[0].patches if p.get_gid() == gid)
        # the step outline's plateaus are the counts per bin
        heights = poly.get_xy()[1 : 2 * len(edges) - 1 : 2, 1]
        np.testing.assert_allclose(heights, np.histogram(data, bins=edges)[0])


# ---------------------------------------------------------------- the report


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags, self.img = [], [], 0

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.img += tag == "img"
        for k, v in attrs:
            if k in ("src", "href", "action", "srcset", "poster", "data") and v is not None:
                self.refs.append(v)


def _check_self_contained(html: str) -> _Refs:
    p = _Refs()
    p.feed(html)
    assert "script" not in p.tags and "link" not in p.tags and "iframe" not in p.tags
    assert all(r.startswith("data:image/png;base64,") or r.startswith("#") for r in p.refs), \
        [r[:40] for r in p.refs if not r.startswith(("data:", "#"))]
    style = re.search(r"<style>(.*?)</style>", html, re.S).group(1)
    assert "url(" not in style and "@import" not in style
    return p


def test_report_for_an_exhibit(review_db, tmp_path, capsys):
    out = tmp_path / "r.html"
    capsys.readouterr()
    assert main(["report", str(review_db.path), "--id", "f0-s0", "-o", str(out), "--pictures", "2",
                 "--pdf", str(tmp_path / "r.pdf")]) == 0
    msg = capsys.readouterr().out
    assert str(out) in msg and "3 leads, 2 with pictures" in msg
    html = out.read_text(encoding="utf-8")
    p = _check_self_contained(html)
    assert p.img == 1 + 2  # the query and two leads
    assert html.count('<section class="lead"') == 2
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td><td>(.*?)</td>", html)
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    assert 'href="#lead-1">f0-s1</a>' in html  # the same firearm leads, linked to its pictures
    assert "not reviewed" in html and "case=case-B" in html
    pdf = (tmp_path / "r.pdf").read_bytes()
    assert pdf[:5] == b"%PDF-" and len(re.findall(rb"/Type\s*/Page\b", pdf)) == 1 + 2


def test_report_for_a_scan_file_and_the_library(review_db, tmp_path):
    from ibin.engine import SearchParams, open_database
    from ibin.report import build_report, render_html

    db = open_database(review_db.path, readonly=True)
    try:
        rep = build_report(db, scan=review_db.scans["f1-s1"], params=SearchParams(top=2), pictures=1)
    finally:
        db.close()
    assert rep.leads.query_id == "f1-s1" and len(rep.leads) == 2 and len(rep.pictures) == 1
    assert rep.query_metadata == {"case": "case-B", "firearm": "firearm-401"}  # the scan is on file
    pic = rep.pictures[0]
    assert pic.png[:4] == b"\x89PNG" and pic.note == ""
    assert pic.evidence.comparison.score == pytest.approx(pic.lead.score, abs=1e-4)
    _check_self_contained(render_html(rep))


def test_report_cli_errors(review_db, tmp_path, capsys):
    capsys.readouterr()
    assert main(["report", str(review_db.path), "-o", str(tmp_path / "x.html")]) == 2
    assert "exactly one of FILE and --id" in capsys.readouterr().err
    assert main(["report", str(review_db.path), "--id", "nope", "-o", str(tmp_path / "x.html")]) == 2
    assert "no exhibit 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()


def test_plot_scores_script(tmp_path, capsys):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / "plot_scores.py"
    spec = importlib.util.spec_from_file_location("plot_scores", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    (tmp_path / "a.json").write_text(json.dumps({"same": [9, 12], "diff": [1, 2, 3]}))
    (tmp_path / "b.json").write_text(json.dumps([{"score": 9, "same": True}, {"score": 2, "same_firearm": False}]))
    (tmp_path / "c.json").write_text(json.dumps([{"score": 9}]))
    assert mod.read_scores(tmp_path / "a.json") == ([9.0, 12.0], [1.0, 2.0, 3.0])
    assert mod.read_scores(tmp_path / "b.json") == ([9.0], [2.0])
    assert mod.main([str(tmp_path / "a.json"), "--out", str(tmp_path / "plots"), "--threshold", "6"]) == 0
    assert "AUC 1.0000" in capsys.readouterr().out
    assert (tmp_path / "plots" / "roc.png").exists() and (tmp_path / "plots" / "scores.png").exists()
    assert mod.main([str(tmp_path / "c.json"), "--out", str(tmp_path / "plots")]) == 2
    assert "'same'" in capsys.readouterr().err


def test_lead_picture_notes_instead_of_failing(review_db):
    from ibin.engine import load_prepared, open_database
    from ibin.leads import Lead
    from ibin.report import lead_picture

    db = open_database(review_db.path, readonly=True)
    try:
        q = load_prepared(db, "f0-s0")
        failed = lead_picture(db, q, Lead(rank=1, id="f0-s1", score=float("-inf"), status="failed: unreadable"),
                              query_id="f0-s0")
        assert failed.png is None and "failed: unreadable" in failed.note
        other_kind = lead_picture(db, q, Lead(rank=1, id="f0-s1", score=1.0), query_id="f0-s0", kind="toolmark")
        assert other_kind.png is None and "no pictures for toolmark leads yet" in other_kind.note
        # compared again without the search's comparison, a score that does not match is flagged
        stale = lead_picture(db, q, Lead(rank=1, id="f0-s1", score=99.0), query_id="f0-s0")
        assert stale.png is not None and "scored" in stale.note and "99.0000" in stale.note
    finally:
        db.close()


def test_report_pages_for_bullet_evidence(tmp_path):
    """A report whose pictures are bullet evidence renders (the bullet path's pictures plug into the same report)."""
    from ibin.leads import Lead, LeadList
    from ibin.report import LeadPicture, Report, render_html, write_report

    rng = np.random.default_rng(5)
    sig = [rng.normal(size=300) for _ in range(6)]
    scores = rng.uniform(0, 0.4, (6, 6))
    for i in range(6):
        scores[i, (i + 1) % 6] = 0.9
    ev = BulletEvidence("B-q", "B-l", sig, sig, 1.5625, scores, 1)
    lead = Lead(rank=1, id="B-l", score=0.9, extra={"phase": 1})
    ll = LeadList("B-q", None, "bullet", (lead,), "db", 2)
    png = figure_png(bullet_lead_figure(ev, rank=1))
    rep = Report(leads=ll, pictures=(LeadPicture(lead, png, ev),), query_png=png, created_at="2026-01-01T00:00:00+00:00")
    out = write_report(rep, tmp_path / "b.html", pdf_path=tmp_path / "b.pdf")
    assert out["pdf_bytes"] > 0 and len(re.findall(rb"/Type\s*/Page\b", (tmp_path / "b.pdf").read_bytes())) == 2
    _check_self_contained(render_html(rep))
