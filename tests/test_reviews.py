"""Examiners' dispositions: storage in the catalog, lead lists, ``info``, ``hits``, the audit hook."""

from __future__ import annotations

import json
import sqlite3

import pytest

from ibin.cli import main
from ibin.engine import open_database, record_disposition, search_exhibits
from ibin.errors import ExhibitNotFoundError
from ibin.index import DISPOSITION_STATUSES, Database


@pytest.fixture()
def db_path(review_db, tmp_path):
    import shutil

    p = tmp_path / "db"
    shutil.copytree(review_db.path, p)
    return p


def test_statuses():
    assert DISPOSITION_STATUSES == ("not reviewed", "no hit", "hit")


def test_record_is_per_pair_latest_wins_history_kept(db_path):
    db = open_database(db_path)
    try:
        assert db.reviews.of("f0-s0") == {}  # no table yet: nothing recorded, nothing fails
        d = record_disposition(db, "f0-s0", "f0-s1", "hit", comment="breech-face marks agree", user="ann")
        assert (d.status, d.by, d.comment) == ("hit", "ann", "breech-face marks agree") and d.at
        # the verdict belongs to the pair: seen from the other exhibit too
        assert db.reviews.get("f0-s1", "f0-s0").status == "hit"
        record_disposition(db, "f0-s1", "f0-s0", "no hit", comment="on second look", user="bob")
        assert db.reviews.get("f0-s0", "f0-s1").status == "no hit"
        assert db.reviews.get("f0-s0", "f0-s1").by == "bob"
        hist = db.reviews.history("f0-s0", "f0-s1")
        assert [(h.status, h.by, h.query) for h in hist] == [("hit", "ann", "f0-s0"), ("no hit", "bob", "f0-s1")]
        assert db.reviews.get("f0-s0", "f1-s0").status == "not reviewed"
        assert db.reviews.get("f0-s0", "f1-s0").by is None
    finally:
        db.close()


@pytest.mark.parametrize(
    "args, error",
    [
        (("f0-s0", "f0-s1", "maybe"), ValueError),
        (("f0-s0", "f0-s0", "hit"), ValueError),
        (("f0-s0", "nope", "hit"), ExhibitNotFoundError),
        (("nope", "f0-s0", "hit"), ExhibitNotFoundError),
    ],
)
def test_bad_dispositions_are_refused_and_nothing_is_written(db_path, args, error):
    db = open_database(db_path)
    try:
        with pytest.raises(error):
            record_disposition(db, *args, user="ann")
        with pytest.raises(ValueError, match="control"):
            record_disposition(db, "f0-s0", "f0-s1", "hit", comment="bad\x00comment")
        assert db.reviews.of("f0-s0") == {}
        assert db.reviews.summary()["reviewed_pairs"] == 0
    finally:
        db.close()


def test_catalog_refuses_inconsistent_rows(db_path):
    """The table's CHECK constraints hold even for writers that bypass the library."""
    db = open_database(db_path)
    record_disposition(db, "f0-s0", "f0-s1", "hit")
    db.close()
    con = sqlite3.connect(db_path / "catalog.sqlite")
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("INSERT INTO dispositions (exhibit_a, exhibit_b, query, status, at) VALUES (2, 1, 2, 'hit', 'x')")
    with pytest.raises(sqlite3.IntegrityError):
        con.execute("INSERT INTO dispositions (exhibit_a, exhibit_b, query, status, at) VALUES (1, 2, 1, 'perhaps', 'x')")
    con.close()


def test_hits_link_cases_and_groups(db_path, capsys):
    db = open_database(db_path)
    try:
        record_disposition(db, "f0-s0", "f0-s1", "hit", user="ann")
        record_disposition(db, "f1-s0", "f1-s1", "hit", user="ann")
        record_disposition(db, "f1-s1", "f0-s1", "hit", user="bob")  # a third link joins both pairs
        record_disposition(db, "f0-s0", "f1-s0", "no hit", user="ann")
        hits = db.reviews.hits()
        assert len(hits) == 3
        by_pair = {frozenset((h.exhibit_a, h.exhibit_b)): h for h in hits}
        h = by_pair[frozenset(("f0-s0", "f0-s1"))]
        assert {h.case_a, h.case_b} == {"case-A", "case-B"} and h.links_cases
        groups = db.reviews.linked_groups()
        assert groups == [{"exhibits": ["f0-s0", "f0-s1", "f1-s0", "f1-s1"], "cases": ["case-A", "case-B"]}]
        s = db.reviews.summary()
        assert s == {"reviewed_pairs": 4, "no hit": 1, "hit": 3, "hits_linking_cases": 2}
        # withdrawing a verdict removes the hit
        record_disposition(db, "f1-s1", "f0-s1", "not reviewed", user="bob")
        assert len(db.reviews.hits()) == 2
    finally:
        db.close()
    capsys.readouterr()
    assert main(["hits", str(db_path)]) == 0
    out = capsys.readouterr().out
    assert "2 confirmed hits" in out and "links cases" in out and "f1-s0" in out
    assert main(["hits", str(db_path), "--format", "json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert len(j["hits"]) == 2 and {tuple(sorted(h["exhibits"])) for h in j["hits"]} == {("f0-s0", "f0-s1"), ("f1-s0", "f1-s1")}
    assert main(["info", str(db_path), "--format", "json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["reviews"] == {"reviewed_pairs": 3, "no hit": 1, "hit": 2, "hits_linking_cases": 2}
    assert main(["info", str(db_path)]) == 0
    assert "reviews    3 leads reviewed: 2 hit, 1 no hit" in capsys.readouterr().out


def test_no_hits_message(db_path, capsys):
    capsys.readouterr()
    assert main(["hits", str(db_path)]) == 0
    assert "no confirmed hits" in capsys.readouterr().out


def test_search_output_carries_dispositions(db_path, review_db, capsys):
    db = open_database(db_path)
    record_disposition(db, "f0-s1", "f0-s0", "hit", comment="same slide", user="ann")
    db.close()
    capsys.readouterr()
    assert main(["search", str(db_path), "--id", "f0-s0", "--format", "json", "--top", "3"]) == 0
    ll = json.loads(capsys.readouterr().out)
    d = {l["id"]: l["disposition"] for l in ll["leads"]}
    assert d["f0-s1"]["status"] == "hit" and d["f0-s1"]["by"] == "ann" and d["f0-s1"]["comment"] == "same slide"
    others = [v for k, v in d.items() if k != "f0-s1"]
    assert others and all(v == {"status": "not reviewed", "comment": "", "by": None, "at": None} for v in others)
    assert main(["search", str(db_path), "--id", "f0-s0", "--top", "3"]) == 0
    table = capsys.readouterr().out
    assert "review" in table.splitlines()[1] and " hit " in table
    # a scan file already on file shows the verdicts of its exhibit
    assert main(["search", str(db_path), str(review_db.scans["f0-s0"]), "--format", "json", "--top", "3"]) == 0
    ll = json.loads(capsys.readouterr().out)
    assert {l["id"]: l["disposition"]["status"] for l in ll["leads"]}["f0-s1"] == "hit"


def test_audit_log_receives_dispositions_when_present(db_path, monkeypatch):
    """A database with an audit log (``Database.audit(event, **details)``) gets every disposition."""
    calls = []
    monkeypatch.setattr(Database, "audit", lambda self, event, **details: calls.append((event, details)), raising=False)
    db = open_database(db_path)
    try:
        record_disposition(db, "f0-s0", "f1-s0", "no hit", comment="different firing pin", user="ann")
    finally:
        db.close()
    assert calls == [("disposition", {"query": "f0-s0", "lead": "f1-s0", "status": "no hit",
                                      "comment": "different firing pin", "by": "ann"})]


def test_readonly_database_without_table_reads_empty(db_path):
    db = open_database(db_path, readonly=True)
    try:
        assert db.reviews.of("f0-s0") == {} and db.reviews.hits() == [] and db.reviews.history("f0-s0", "f0-s1") == []
        ll = next(iter(search_exhibits(db, ["f0-s0"])))
        assert all(l.extra["disposition"]["status"] == "not reviewed" for l in ll.leads)
    finally:
        db.close()


def test_deleting_an_exhibit_removes_its_dispositions(db_path):
    db = open_database(db_path)
    try:
        record_disposition(db, "f0-s0", "f0-s1", "hit")
        record_disposition(db, "f1-s0", "f1-s1", "hit")
        db.delete("f0-s1")
        assert [(h.exhibit_a, h.exhibit_b) for h in db.reviews.hits()] == [("f1-s0", "f1-s1")]
        assert db.reviews.of("f0-s0") == {}
    finally:
        db.close()
