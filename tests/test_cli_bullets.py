"""Bullets through the engine and the command line, on synthetic land scans written as X3P files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ibin.cli import main
from ibin.scan import save_x3p
from ibin.synth import bullet_lands, cartridge_case

PX = 3.125


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Land files of four bullets: barrel 21 shots 0 and 1, barrel 22 shot 0, barrel 23 shot 0; truths."""
    d = tmp_path_factory.mktemp("bullets")
    out = {}
    for name, (barrel, shot) in {"A0": (21, 0), "A1": (21, 1), "B0": (22, 0), "C0": (23, 0)}.items():
        scans, truth = bullet_lands(barrel, shot, pixel_um=PX, length_um=400.0)
        paths = []
        for i, s in enumerate(scans):
            p = d / f"{name}-land{i + 1}.x3p"
            save_x3p(s, p)
            paths.append(str(p))
        out[name] = (paths, truth)
    bad = d / "broken-land.x3p"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    out["bad"] = str(bad)
    case, _ = cartridge_case(400, 0, pixel_um=12.5)
    save_x3p(case, d / "case.x3p")
    out["case"] = str(d / "case.x3p")
    return out


@pytest.fixture(scope="module")
def db(files, tmp_path_factory):
    path = tmp_path_factory.mktemp("db") / "db"
    assert main(["ingest", str(path), "--kind", "bullet", "--id", "A0", *files["A0"][0],
                 "--meta", "caliber=9mm", "--meta", "lands=6"]) == 0
    assert main(["ingest", str(path), "--kind", "bullet", *files["B0"][0]]) == 0  # default id: shared stem
    c_lands = list(files["C0"][0])
    c_lands[2] = "-"  # land 3 of C was not scanned
    assert main(["ingest", str(path), "--kind", "bullet", "--id", "C0", *c_lands]) == 0
    assert main(["ingest", str(path), files["case"]]) == 0
    return path


def test_ingest_ids_dedup_and_vectors(db, files, capsys):
    capsys.readouterr()
    assert main(["ingest", str(db), "--kind", "bullet", "--id", "again", *files["A0"][0]]) == 0
    assert "already on file as A0" in capsys.readouterr().out
    assert main(["info", str(db), "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["by_kind"] == {"bullet": 3, "cartridge": 1}
    assert info["spaces"]["bullet/land"]["vectors"] == 6 + 6 + 5
    assert info["spaces"]["bullet/bullet"]["vectors"] == 3
    from ibin import open_database

    with open_database(db, readonly=True) as d:
        assert d.get("B0").kind == "bullet"  # the id the land files share


def test_search_by_bullet_json_contract(db, files, capsys):
    """A second bullet of barrel 21, its lands starting elsewhere, finds A0 first at the true phase."""
    paths, truth = files["A1"]
    capsys.readouterr()
    assert main(["search", str(db), "--kind", "bullet", *paths, "--format", "json", "--top", "3"]) == 0
    ll = json.loads(capsys.readouterr().out)
    assert ll["query"]["kind"] == "bullet" and ll["database"]["exhibits"] == 3
    lead = ll["leads"][0]
    assert lead["id"] == "A0" and lead["metadata"] == {"caliber": "9mm", "lands": "6"}
    assert lead["phase"] == truth.phase_to(files["A0"][1])
    assert len(lead["lands"]) == 6
    for pair in lead["lands"]:
        assert {"query_land", "lead_land", "ccf", "lag_um"} <= set(pair)
        assert (pair["lead_land"] - pair["query_land"]) % 6 == lead["phase"]
        assert pair["ccf"] > 0.7
    assert lead["score"] > ll["leads"][1]["score"] + 0.3
    assert [l["rank"] for l in ll["leads"]] == [1, 2, 3]


def test_search_with_a_fragment(db, files, capsys):
    """One land of A1 returns the bullet holding the same barrel land, and which land it is."""
    paths, truth = files["A1"]
    a0 = files["A0"][1]
    capsys.readouterr()
    assert main(["search", str(db), "--kind", "bullet", paths[4], "--format", "json"]) == 0
    ll = json.loads(capsys.readouterr().out)
    lead = ll["leads"][0]
    assert lead["id"] == "A0" and lead["fragment"] is True
    barrel_land = truth.barrel_lands[4]
    assert lead["lands"][0]["lead_land"] == a0.barrel_lands.index(barrel_land) + 1
    assert lead["score"] == pytest.approx(lead["lands"][0]["ccf"], abs=1e-4)


def test_missing_land_lead(db, files, capsys):
    """C0 was filed with land 3 missing: a full scan of C0 still finds it, with five land pairs."""
    capsys.readouterr()
    assert main(["search", str(db), "--kind", "bullet", *files["C0"][0], "--format", "json"]) == 0
    lead = json.loads(capsys.readouterr().out)["leads"][0]
    assert lead["id"] == "C0" and lead["phase"] == 0 and len(lead["lands"]) == 5
    assert 3 not in [p["lead_land"] for p in lead["lands"]]
    assert 0.6 < lead["score"] < 0.9  # five of six lands: about 5/6 of a full match


def test_search_id_and_all(db, capsys):
    capsys.readouterr()
    assert main(["search", str(db), "--id", "A0", "--format", "json"]) == 0  # kind from the exhibit
    ll = json.loads(capsys.readouterr().out)
    assert ll["query"] == {"id": "A0", "file": ll["query"]["file"], "kind": "bullet"}
    assert "A0" not in [l["id"] for l in ll["leads"]]
    assert main(["search", str(db), "--all", "--format", "json"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert sorted(l["query"]["kind"] for l in lines) == ["bullet", "bullet", "bullet", "cartridge"]
    for l in lines:
        assert l["query"]["id"] not in [x["id"] for x in l["leads"]]
    assert main(["search", str(db), "--all", "--kind", "bullet", "--format", "json"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3


def test_table_shows_phase(db, files, capsys):
    capsys.readouterr()
    assert main(["search", str(db), "--kind", "bullet", *files["A1"][0]]) == 0
    out = capsys.readouterr().out
    assert "Lead list for" in out and "phase" in out and "A0" in out


def test_compare_bullets_json_and_text(files, capsys):
    a, ta = files["A0"]
    b, tb = files["A1"]
    capsys.readouterr()
    assert main(["compare", "--kind", "bullet", *a, "--vs", *b, "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["phase"] == ta.phase_to(tb) and d["score"] > 0.7
    assert len(d["ccf_matrix"]) == 6 and all(len(r) == 6 for r in d["ccf_matrix"])
    assert len(d["lag_um_matrix"]) == 6 and len(d["lands"]) == 6
    assert main(["compare", "--kind", "bullet", *a, "--vs", *files["B0"][0]]) == 0
    out = capsys.readouterr().out
    assert "phase" in out and "A1" in out and "B6" in out


def test_bad_land_files_give_clear_errors(db, files, capsys, tmp_path):
    capsys.readouterr()
    lands = list(files["B0"][0])
    lands[1] = files["bad"]
    assert main(["ingest", str(db), "--kind", "bullet", "--id", "broken", *lands]) == 1
    err = capsys.readouterr()
    assert files["bad"] in err.err and "zip" in err.err
    assert "0 added, 0 already on file, 1 failed" in err.out
    assert main(["compare", "--kind", "bullet", files["bad"], "--vs", *files["B0"][0]]) == 2
    assert files["bad"] in capsys.readouterr().err
    assert main(["compare", "--kind", "bullet", *files["A0"][0]]) == 2
    assert "--vs" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path / "x"), "--kind", "bullet", "--id", "a", "--id", "b", *files["A0"][0]]) == 2
    assert "one bullet" in capsys.readouterr().err
    assert main(["search", str(db), files["A0"][0][0], files["A0"][0][1]]) == 2  # two files but not a bullet
    assert "--kind bullet" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path / "y"), "--kind", "bullet", "-", "-"]) == 1
    assert "at least one scanned land" in capsys.readouterr().err


def test_library_api_batches_bullets(files, tmp_path):
    """ingest(kind="bullet") takes a list of bullets (each a list of lands), ids one per bullet."""
    import ibin

    with ibin.open_database(tmp_path / "lib", create=True) as d:
        rep = ibin.ingest(d, [files["A0"][0], files["B0"][0]], kind="bullet", ids=["x", "y"])
        assert [r.status for r in rep.results] == ["added", "added"] and [r.id for r in rep.results] == ["x", "y"]
        ll = ibin.search(d, files["A1"][0], kind="bullet", params=ibin.SearchParams(top=1))
        assert ll.ids == ["x"] and ll[0].extra["phase"] == files["A1"][1].phase_to(files["A0"][1])
        cmp = ibin.compare(files["A0"][0], files["A1"][0], kind="bullet")
        assert cmp.phase == files["A0"][1].phase_to(files["A1"][1])
    assert Path(tmp_path / "lib" / "ibin-db.json").exists()


def test_bullet_report(db, files, tmp_path, capsys):
    """ibin report for a bullet: land score matrix with the phase, aligned signatures, self-contained HTML."""
    import base64
    import re

    capsys.readouterr()
    out = tmp_path / "bullet.html"
    assert main(["report", str(db), "--kind", "bullet", *files["A1"][0], "-o", str(out), "--pictures", "1",
                 "--top", "2"]) == 0
    html = out.read_text()
    text = re.sub(r'src="data:image/png;base64,[^"]+"', "", html)  # base64 pictures may spell anything
    assert "A0" in text and "sequence average maximum" in text and "CMC" not in text
    assert "http://" not in html and "https://" not in html
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(pngs) >= 2  # the query's lands and the lead's pictures
    assert all(base64.b64decode(p)[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
    from ibin import open_database
    from ibin.report import build_report

    with open_database(db, readonly=True) as d:
        rep = build_report(d, scan=files["A1"][0], kind="bullet", pictures=1)
    ev = rep.pictures[0].evidence
    assert rep.leads.leads[0].id == "A0"
    assert rep.pictures[0].png is not None and rep.pictures[0].note == ""
    # the matched phase of the picture is the lead list's
    assert ev.phase == rep.leads.leads[0].extra["phase"]
    assert ev.land_scores.shape == (6, 6)


def test_bullets_prepared_by_other_features_are_refused_by_name(db, files, tmp_path, capsys):
    """Bullets prepared by another bullet features version are never compared; search and ingest name both."""
    import shutil
    import sqlite3

    from ibin.features import BULLET_FEATURES_VERSION

    old = tmp_path / "old"
    shutil.copytree(db, old)
    with sqlite3.connect(old / "catalog.sqlite") as c:
        (value,) = c.execute("SELECT value FROM settings WHERE key = 'features/bullet/height'").fetchone()
        c.execute("UPDATE settings SET value = ? WHERE key = 'features/bullet/height'",
                  (value.replace(BULLET_FEATURES_VERSION, "bullet-0"),))
    capsys.readouterr()
    assert main(["search", str(old), "--kind", "bullet", *files["A1"][0]]) == 2
    err = capsys.readouterr().err
    assert "'bullet-0'" in err and repr(BULLET_FEATURES_VERSION) in err and "new database" in err
    assert main(["ingest", str(old), "--kind", "bullet", "--id", "A1", *files["A1"][0]]) == 1
    captured = capsys.readouterr()
    assert "'bullet-0'" in captured.err and "0 added, 0 already on file, 1 failed" in captured.out
    assert main(["info", str(old), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["by_kind"] == {"bullet": 3, "cartridge": 1}  # nothing was touched
