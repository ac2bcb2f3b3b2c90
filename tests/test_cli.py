"""The command line, called as ``main([...])`` on synthetic scans written to a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ibin.cli import main
from ibin.scan import save_x3p
from ibin.synth import cartridge_case


@pytest.fixture(scope="module")
def scans(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("scans")
    out = {}
    for f in range(3):
        for s in range(2):
            scan, _ = cartridge_case(300 + f, s, pixel_um=12.5)
            p = d / f"f{f}-s{s}.x3p"
            save_x3p(scan, p)
            out[p.stem] = p
    bad = d / "broken.x3p"
    bad.write_bytes(b"PK\x03\x04 this is not really a zip")
    out["broken"] = bad
    return out


@pytest.fixture()
def db(tmp_path, scans) -> Path:
    path = tmp_path / "db"
    files = [str(scans[k]) for k in ("f0-s0", "f1-s0", "f2-s0", "f0-s1", "f1-s1")]
    assert main(["ingest", str(path), *files, "--meta", "caliber=9mm", "--meta", "agency=lab-1"]) == 0
    return path


def test_ingest_summary_and_dedup(db, scans, capsys):
    capsys.readouterr()
    assert main(["ingest", str(db), str(scans["f0-s0"])]) == 0
    out = capsys.readouterr().out
    assert "already on file as f0-s0" in out and "0 added, 1 already on file, 0 failed" in out


def test_batch_with_a_bad_file(db, scans, capsys):
    before = sorted(p.name for p in (db / "store").iterdir()), (db / "store" / "seg-000001.ibf").stat().st_size
    rc = main(["ingest", str(db), str(scans["broken"]), str(scans["f2-s1"])])
    captured = capsys.readouterr()
    assert rc == 1
    assert str(scans["broken"]) in captured.err and "zip" in captured.err
    assert "1 added, 0 already on file, 1 failed" in captured.out
    assert main(["info", str(db), "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["exhibits"] == 6
    # how each space is searched is stated: few signatures, exact search
    assert "exact" in info["spaces"]["cartridge-polar/height"]["search"]
    assert info["spaces"]["cartridge/height"]["search"] == "FAISS Flat, exact"
    # and how the index file was read: in place, from a file of version 2
    assert info["spaces"]["cartridge/height"]["file_version"] == 2 and info["spaces"]["cartridge/height"]["read_in_place"]
    assert before[1] < (db / "store" / "seg-000001.ibf").stat().st_size


def test_search_file_json_contract(db, scans, capsys):
    capsys.readouterr()
    assert main(["search", str(db), str(scans["f2-s1"]), "--format", "json", "--top", "3"]) == 0
    ll = json.loads(capsys.readouterr().out)
    assert set(ll) >= {"query", "leads", "database", "timing_ms"}
    assert ll["query"] == {"id": "f2-s1", "file": str(scans["f2-s1"]), "kind": "cartridge"}
    assert ll["database"]["exhibits"] == 5 and ll["database"]["path"] == str(db)
    assert set(ll["timing_ms"]) >= {"candidates", "rerank", "total"}
    leads = ll["leads"]
    assert [l["rank"] for l in leads] == [1, 2, 3]
    for key in ("id", "score", "cmc", "ccf", "rotation_deg", "dx_um", "dy_um", "metadata"):
        assert key in leads[0]
    assert leads[0]["id"] == "f2-s0"  # the same firearm comes first
    assert leads[0]["metadata"] == {"agency": "lab-1", "caliber": "9mm"}
    assert leads[0]["score"] > leads[1]["score"]


def test_search_all_jsonl_never_lists_self(db, capsys):
    capsys.readouterr()
    assert main(["search", str(db), "--all", "--format", "json", "--top", "4"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 5
    for line in lines:
        ll = json.loads(line)
        q = ll["query"]["id"]
        ids = [l["id"] for l in ll["leads"]]
        assert q not in ids and len(ids) == 4
        if q in ("f0-s0", "f0-s1", "f1-s0", "f1-s1"):
            mate = q[:2] + ("-s1" if q.endswith("s0") else "-s0")
            assert ids[0] == mate


def test_search_by_id_and_filter(db, capsys):
    capsys.readouterr()
    assert main(["search", str(db), "--id", "f1-s0", "--filter", "agency=lab-1", "--format", "csv"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("query,rank,id,score,cmc")
    assert out[1].split(",")[2] == "f1-s1"
    assert main(["search", str(db), "--id", "f1-s0", "--filter", "agency=other", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["leads"] == []


def test_table_output(db, scans, capsys):
    capsys.readouterr()
    assert main(["search", str(db), str(scans["f0-s1"])]) == 0
    out = capsys.readouterr().out
    assert "Lead list for f0-s1" in out and "rank" in out and "f0-s0" in out


def test_compare_json(scans, capsys):
    capsys.readouterr()
    assert main(["compare", str(scans["f1-s0"]), str(scans["f1-s1"]), "--format", "json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["cmc"] >= 6 and -180 <= d["rotation_deg"] <= 180
    assert {"score", "ccf", "dx_um", "dy_um", "cells"} <= set(d)
    assert main(["compare", str(scans["f1-s0"]), str(scans["f2-s0"]), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["cmc"] < 6


def test_errors_exit_nonzero_with_message(tmp_path, scans, capsys):
    capsys.readouterr()
    assert main(["search", str(tmp_path / "nodb"), str(scans["f0-s0"])]) == 2
    assert "no such database" in capsys.readouterr().err
    assert main(["compare", str(scans["broken"]), str(scans["f0-s0"])]) == 2
    assert str(scans["broken"]) in capsys.readouterr().err
    assert main(["ingest", str(tmp_path / "db2"), str(scans["f0-s0"]), "--meta", "novalue"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert main(["ingest", str(tmp_path / "db3"), str(scans["f0-s0"]), "--id", "a", "--id", "b"]) == 2
    with pytest.raises(SystemExit):
        main(["search"])


def test_info_text(db, capsys):
    capsys.readouterr()
    assert main(["info", str(db)]) == 0
    out = capsys.readouterr().out
    assert "exhibits   5" in out and "cartridge/height" in out and "faiss" in out
    # how the index files were read: the ingest wrote the spectral one (read in place); the polar
    # signatures have no file yet (info opens the database read-only), so their index is made from the catalog
    assert "cartridge/height: 5 vectors of 256 values, IDMap2,Flat; file version 2, vectors read in place" in out
    assert "cartridge-polar/height: 5 vectors of 512 values, IDMap2,Flat\n" in out
    assert not (db / "index" / "cartridge-polar-height.faiss").exists()


def test_batch_reuses_pairs_consistently(db):
    """search --all derives B-vs-A from A-vs-B: it must equal a direct comparison."""
    from ibin import SearchParams, open_database, search_exhibits

    from ibin.correlate import compare_prepared
    from ibin.features import PreparedCartridge

    with open_database(db) as d:
        batch = {ll.query_id: ll for ll in search_exhibits(d, params=SearchParams(top=4))}
        q = PreparedCartridge.from_arrays(*d.load(d.get("f1-s1")))
        c = PreparedCartridge.from_arrays(*d.load(d.get("f1-s0")))
    direct = compare_prepared(q, c)
    lead = next(l for l in batch["f1-s1"].leads if l.id == "f1-s0")
    assert lead.score == pytest.approx(direct.score)
    assert lead.rotation_deg == pytest.approx(direct.rotation_deg, abs=1e-6)
    assert (lead.dx_um, lead.dy_um) == pytest.approx((direct.dx_um, direct.dy_um), abs=1e-6)
    back = next(l for l in batch["f1-s0"].leads if l.id == "f1-s1")
    assert back.rotation_deg == pytest.approx(-direct.rotation_deg, abs=1e-6)


def test_screen_stage_keeps_the_mate(db, scans, capsys):
    """With fewer full comparisons than candidates, the coarse screen chooses them."""
    capsys.readouterr()
    assert main(["search", str(db), str(scans["f1-s1"]), "--top", "2", "--verify", "2", "--format", "json"]) == 0
    ll = json.loads(capsys.readouterr().out)
    assert ll["leads"][0]["id"] == "f1-s0" and len(ll["leads"]) == 2
    assert "screen" in ll["timing_ms"]


def test_parallel_sweep_matches_serial(db, capsys):
    """search --all with two worker processes gives the same lead lists as one process."""
    capsys.readouterr()
    assert main(["search", str(db), "--all", "--format", "json", "--top", "3", "--processes", "1"]) == 0
    serial = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert main(["search", str(db), "--all", "--format", "json", "--top", "3", "--processes", "2"]) == 0
    parallel = [json.loads(l) for l in capsys.readouterr().out.splitlines()]
    assert [l["query"]["id"] for l in serial] == [l["query"]["id"] for l in parallel]
    for a, b in zip(serial, parallel):
        assert [x["id"] for x in a["leads"]] == [x["id"] for x in b["leads"]]
        assert [x["score"] for x in a["leads"]] == pytest.approx([x["score"] for x in b["leads"]], abs=1e-3)


def _lists(path: Path) -> dict[str, dict]:
    return {d["query"]["id"]: d for d in map(json.loads, path.read_text().splitlines())}


def test_sweep_output_resumes_after_an_interruption(db, tmp_path, capsys):
    """--output FILE: a sweep cut off mid-write resumes on FILE, redoing only what is missing."""
    full = tmp_path / "full.jsonl"
    assert main(["search", str(db), "--all", "--top", "3", "--output", str(full)]) == 0
    assert "5 lead lists written to" in capsys.readouterr().out
    whole = _lists(full)
    assert len(whole) == 5 and len(full.read_text().splitlines()) == 5
    # an interrupted run: two lists on disk, the third cut off mid-write
    raw = full.read_bytes().split(b"\n")
    cut = tmp_path / "cut.jsonl"
    cut.write_bytes(raw[0] + b"\n" + raw[1] + b"\n" + raw[2][: len(raw[2]) // 2])
    assert main(["search", str(db), "--all", "--top", "3", "--output", str(cut)]) == 0
    got = capsys.readouterr()
    assert "3 lead lists written" in got.out and "2 already there" in got.out
    assert "cut off mid-write" in got.err
    lines = cut.read_text().splitlines()
    assert len(lines) == 5  # the partial line replaced, nothing listed twice
    resumed = _lists(cut)
    assert set(resumed) == set(whole)
    for q, d in whole.items():
        assert [l["id"] for l in resumed[q]["leads"]] == [l["id"] for l in d["leads"]]
        assert [l["score"] for l in resumed[q]["leads"]] == pytest.approx([l["score"] for l in d["leads"]], abs=1e-3)
    # run again: nothing left to do, the file unchanged
    before = cut.read_bytes()
    assert main(["search", str(db), "--all", "--top", "3", "--output", str(cut)]) == 0
    assert "0 lead lists written" in capsys.readouterr().out and cut.read_bytes() == before
    # a last line written whole but for its newline is kept: nothing redone, the newline added
    nonl = tmp_path / "nonl.jsonl"
    nonl.write_bytes(before[:-1])
    assert main(["search", str(db), "--all", "--top", "3", "--output", str(nonl)]) == 0
    got = capsys.readouterr()
    assert "0 lead lists written" in got.out and "5 already there" in got.out and "cut off" not in got.err
    assert nonl.read_bytes() == before


def test_sweep_output_refuses_a_file_it_did_not_write(db, tmp_path, capsys):
    """A damaged line, or lead lists of another database, stop the run and leave the file as it was."""
    full = tmp_path / "full.jsonl"
    assert main(["search", str(db), "--id", "f0-s0", "--top", "2", "--output", str(full)]) == 0
    good = full.read_text()
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n" + good)
    capsys.readouterr()
    assert main(["search", str(db), "--all", "--output", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "line 1" in err
    assert bad.read_text() == "not json\n" + good
    other = tmp_path / "other.jsonl"
    d = json.loads(good)
    d["database"]["path"] = str(tmp_path / "another-db")
    other.write_text(json.dumps(d) + "\n")
    assert main(["search", str(db), "--all", "--output", str(other)]) == 2
    assert "another database" in capsys.readouterr().err
    assert json.loads(other.read_text()) == d
    # the same as a last line without its newline: refused too, not taken for a cut-off write and dropped
    other.write_text(json.dumps(d))
    assert main(["search", str(db), "--all", "--output", str(other)]) == 2
    assert "another database" in capsys.readouterr().err
    assert other.read_text() == json.dumps(d)
    assert main(["search", str(db), "--all", "--output", str(other), "--format", "csv"]) == 2


def test_progress_without_a_terminal_prints_a_line_now_and_then():
    """Off a terminal (a sweep left running for hours) progress is a plain line per interval, with the time left."""
    import io

    from ibin.cli._common import Progress

    s = io.StringIO()
    p = Progress(100, "search", stream=s, every_s=3600)
    p.update(1)
    assert s.getvalue() == ""  # not before the interval
    p = Progress(100, "search", stream=s, every_s=0)
    p.start -= 10  # 25 done in 10 s: 30 s for the 75 left
    p.update(25, "x")
    line = s.getvalue()
    assert line.startswith("search: 25/100 (25.0 %)") and line.endswith("s left\n") and "\r" not in line
    assert "30 s left" in line or "29 s left" in line or "31 s left" in line


def test_lead_list_log_syncs_the_folder_of_the_file_it_creates(tmp_path, monkeypatch):
    """A new output file's name is made durable in its folder; reopening an existing file does not need to."""
    import ibin.leads

    synced = []
    monkeypatch.setattr(ibin.leads, "fsync_dir", lambda p: synced.append(p))
    out = tmp_path / "sub" / "lists.jsonl"
    out.parent.mkdir()
    ibin.leads.LeadListLog(out, str(tmp_path / "db")).close()
    assert out.exists() and synced == [out.parent.resolve()]
    ibin.leads.LeadListLog(out, str(tmp_path / "db")).close()
    assert synced == [out.parent.resolve()]


def test_a_database_prepared_by_other_features_is_refused_by_name(db, scans, capsys):
    """Exhibits prepared by another features version are never compared; both commands say which versions."""
    import sqlite3

    from ibin.features import FEATURES_VERSION

    with sqlite3.connect(db / "catalog.sqlite") as c:
        (key, value), = c.execute("SELECT key, value FROM settings WHERE key LIKE 'features/cartridge/%'")
        c.execute("UPDATE settings SET value = ? WHERE key = ?", (value.replace(FEATURES_VERSION, "cartridge-0"), key))
    capsys.readouterr()
    assert main(["search", str(db), str(scans["f2-s1"])]) == 2
    err = capsys.readouterr().err
    assert "'cartridge-0'" in err and repr(FEATURES_VERSION) in err and "new database" in err
    assert main(["ingest", str(db), str(scans["f2-s1"])]) == 1
    captured = capsys.readouterr()
    assert "'cartridge-0'" in captured.err and "0 added, 0 already on file, 1 failed" in captured.out
    assert main(["info", str(db), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["exhibits"] == 5  # nothing on file was touched
