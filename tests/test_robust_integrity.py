"""Integrity and audit: ``ibin check`` finds damage precisely, the audit log is a tamper-evident
record of every change, deletions and metadata edits leave the database consistent."""

from __future__ import annotations

import json
import shutil
import sqlite3

import numpy as np
import pytest

from ibin.cli import main
from ibin.errors import DatabaseError, ExhibitNotFoundError
from ibin.index import Database, NewExhibit, VectorIndex

SPACE = "cartridge/height"


def _ex(i: int, *, dim: int = 16, meta=None, user: str = "alice") -> NewExhibit:
    rng = np.random.default_rng(i)
    v = rng.normal(size=dim).astype(np.float32)
    v /= np.linalg.norm(v)
    return NewExhibit(
        id=f"ex{i}", kind="cartridge", modality="height", source_name=f"ex{i}.x3p",
        source_sha256=f"{i:064x}", arrays={"surface_q": rng.integers(-127, 128, (40, 50), dtype=np.int8), "v": v},
        attrs={"i": i}, vectors={SPACE: v[None]}, metadata=meta if meta is not None else {"case": "C-1"}, user=user,
    )


@pytest.fixture()
def db_path(tmp_path):
    path = tmp_path / "db"
    with Database.create(path) as db:
        for i in range(6):
            db.add(_ex(i))
        db.index(SPACE)  # writes the index file
    return path


def _check(path):
    with Database.open(path, readonly=True) as db:
        return db.check()


def _damage(rep) -> str:
    return "\n".join(str(f) for f in rep.damage)


def test_healthy_database_passes(db_path, capsys):
    rep = _check(db_path)
    assert rep.ok, _damage(rep)
    assert rep.counts["exhibits"] == 6 and rep.counts["records_verified"] == 6
    assert rep.counts["index_entries"] == 6 and rep.counts["audit_entries"] == 7  # create + 6 ingests
    assert main(["check", str(db_path)]) == 0
    out = capsys.readouterr().out
    assert "no damage found" in out and "audit log head" in out


def test_corrupted_feature_record_is_named_precisely(db_path, capsys):
    with Database.open(db_path, readonly=True) as db:
        rec = db.get("ex3")
    seg = db_path / "store" / f"seg-{rec.ref.segment:06d}.ibf"
    data = bytearray(seg.read_bytes())
    data[rec.ref.offset + rec.ref.length // 2] ^= 0x01  # one bit of one exhibit's prepared surface
    seg.write_bytes(bytes(data))
    rep = _check(db_path)
    assert not rep.ok
    [f] = rep.damage
    assert f.exhibit == "ex3" and f.where == f"store/{seg.name}@{rec.ref.offset}" and "SHA-256" in f.what
    assert main(["check", str(db_path)]) == 1
    out = capsys.readouterr().out
    assert f"store/{seg.name}@{rec.ref.offset} [exhibit ex3]: feature record damaged" in out and "DAMAGE" in out
    # the damaged exhibit is refused when read with verification, the others are fine
    with Database.open(db_path, readonly=True) as db:
        with pytest.raises(DatabaseError, match="SHA-256"):
            db.load(db.get("ex3"), verify=True)
        db.load(db.get("ex2"), verify=True)


def test_truncated_and_missing_segment(db_path):
    seg = db_path / "store" / "seg-000001.ibf"
    size = seg.stat().st_size
    with Database.open(db_path, readonly=True) as db:
        last = db.get("ex5")
    with open(seg, "r+b") as f:
        f.truncate(size - 100)
    rep = _check(db_path)
    assert [f.exhibit for f in rep.damage] == ["ex5"] and "extends past the end" in rep.damage[0].what
    assert rep.damage[0].where.endswith(f"@{last.ref.offset}")
    seg.unlink()
    rep = _check(db_path)
    assert len(rep.damage) == 6 and all("missing" in f.what for f in rep.damage)


def test_corrupted_index_detected_rebuilt_and_reindexed(db_path, capsys):
    idx_file = db_path / "index" / "cartridge-height.faiss"
    good = idx_file.read_bytes()
    bad = bytearray(good)
    bad[-20] ^= 0xFF  # inside the stored vectors
    idx_file.write_bytes(bytes(bad))
    rep = _check(db_path)
    assert [f.where for f in rep.damage] == ["index/cartridge-height.faiss"]
    assert "SHA-256" in rep.damage[0].what and "reindex" in rep.damage[0].what
    # a search never trusts it: the index is rebuilt from the catalog and every exhibit is found
    with Database.open(db_path, readonly=True) as db:
        for i in range(6):
            q = db.vectors_of(db.get(f"ex{i}").rowid, SPACE)
            _, rowids, _ = db.search_vectors(SPACE, q, 1)
            assert db.get_rowids(rowids[0])[rowids[0][0]].id == f"ex{i}"
    assert main(["reindex", str(db_path), "--user", "maint"]) == 0
    assert "6 vectors indexed" in capsys.readouterr().out
    assert _check(db_path).ok
    with Database.open(db_path, readonly=True) as db:
        assert db.audit_log(event="reindex")[-1].user == "maint"


def test_index_with_wrong_vectors_or_of_another_database(db_path, tmp_path):
    with Database.open(db_path) as db:
        cat = db.catalog_id
        ids = np.array(sorted(int(r.rowid) << 8 for r in db.list()), np.int64)
        vecs = np.stack([db.vectors_of(i >> 8, SPACE)[0] for i in ids])
    vecs[2] = -vecs[2]  # a well-formed index file whose entry for one exhibit is wrong
    vi = VectorIndex(16)
    vi.add(ids, vecs)
    vi.save(db_path / "index" / "cartridge-height.faiss", catalog_id=cat)
    rep = _check(db_path)
    assert len(rep.damage) == 1 and "differ from the catalog" in rep.damage[0].what and rep.damage[0].exhibit == "ex2"
    vi.save(db_path / "index" / "cartridge-height.faiss", catalog_id="0" * 32)
    rep = _check(db_path)
    assert "another database" in _damage(rep)
    with Database.open(db_path) as db:  # searches ignore such a file
        _, rowids, _ = db.search_vectors(SPACE, db.vectors_of(db.get("ex2").rowid, SPACE), 1)
        assert db.get_rowids(rowids[0])[rowids[0][0]].id == "ex2"


def test_audit_log_is_append_only_and_tampering_is_detected(db_path):
    conn = sqlite3.connect(db_path / "catalog.sqlite")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("UPDATE audit SET user = 'mallory' WHERE seq = 3")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        conn.execute("DELETE FROM audit WHERE seq = 3")
    # someone with the file drops the guard and rewrites who ingested an exhibit
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET user = 'mallory' WHERE seq = 3")
    conn.commit()
    conn.close()
    rep = _check(db_path)
    assert any("audit entry 3" in f.what and "altered" in f.what for f in rep.damage), _damage(rep)
    conn = sqlite3.connect(db_path / "catalog.sqlite")
    conn.execute("DROP TRIGGER audit_no_delete")
    conn.execute("DELETE FROM audit WHERE seq = 5")
    conn.commit()
    conn.close()
    text = _damage(_check(db_path))
    assert "entries are missing" in text and "never recorded its ingest" in text  # ex3 (entry 5) lost its record


def test_changes_outside_ibin_are_detected_by_replaying_the_log(db_path):
    conn = sqlite3.connect(db_path / "catalog.sqlite")
    conn.execute("UPDATE metadata SET value = 'C-999' WHERE key = 'case' AND exhibit = "
                 "(SELECT rowid FROM exhibits WHERE id = 'ex1')")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("DELETE FROM exhibits WHERE id = 'ex4'")
    conn.execute("UPDATE exhibits SET source_sha256 = ? WHERE id = 'ex2'", ("f" * 64,))
    conn.commit()
    conn.close()
    rep = _check(db_path)
    by = {f.exhibit: f.what for f in rep.damage}
    assert "'case' is 'C-999' in the catalog but 'C-1' by the audit log" in by["ex1"]
    assert "not in the catalog" in by["ex4"]
    assert "source_sha256" in by["ex2"]


def test_delete_and_metadata_edits_are_logged_and_consistent(db_path, capsys, monkeypatch):
    monkeypatch.setenv("IBIN_USER", "examiner7")
    assert main(["meta", str(db_path), "ex1", "case=C-2", "agency=lab-9", "--reason", "typo in case number"]) == 0
    assert capsys.readouterr().out.splitlines() == ["agency=lab-9", "case=C-2"]
    assert main(["meta", str(db_path), "ex1", "--unset", "agency", "--user", "supervisor"]) == 0
    assert main(["meta", str(db_path), "ex1", "--unset", "nope"]) == 2
    assert "no metadata 'nope'" in capsys.readouterr().err
    assert main(["meta", str(db_path), "ex1", "case=bad\x00value"]) == 2
    assert "control character" in capsys.readouterr().err
    assert main(["delete", str(db_path), "ex4", "--reason", "entered twice"]) == 0
    assert main(["delete", str(db_path), "ex4"]) == 1
    assert "no exhibit 'ex4'" in capsys.readouterr().err
    rep = _check(db_path)
    assert rep.ok, _damage(rep)
    with Database.open(db_path) as db:
        assert db.get("ex1").metadata == {"case": "C-2"}
        with pytest.raises(ExhibitNotFoundError):
            db.get("ex4")
        [m1, m2] = db.audit_log(event="metadata")
        assert (m1.user, m1.details["before"], m1.details["set"], m1.details["reason"]) == (
            "examiner7", {"case": "C-1", "agency": None}, {"case": "C-2", "agency": "lab-9"}, "typo in case number")
        assert (m2.user, m2.details["unset"], m2.details["metadata"]) == ("supervisor", ["agency"], {"case": "C-2"})
        [d] = db.audit_log(event="delete")
        assert d.details["id"] == "ex4" and d.details["reason"] == "entered twice" and d.user == "examiner7"
        # the deleted exhibit's vector is never a search result, though the index file still holds it
        _, rowids, _ = db.search_vectors(SPACE, np.eye(16, dtype=np.float32), 6)
        assert set(db.get_rowids(rowids[rowids >= 0]).keys()) <= {r.rowid for r in db.list()}
    assert main(["audit", str(db_path), "--exhibit", "ex1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [ln.split()[3] for ln in lines] == ["ingest", "metadata", "metadata"]
    assert main(["audit", str(db_path), "--format", "json", "--last", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["event"] == "delete"


def test_row_ids_are_never_reused(tmp_path):
    """Deleting the newest exhibit must not let the next one inherit its vector id (and stale index entry)."""
    with Database.create(tmp_path / "db") as db:
        for i in range(3):
            db.add(_ex(i))
        db.index(SPACE)  # the index file now holds ex2's vector
        old = db.get("ex2").rowid
        db.delete("ex2")
    with Database.open(tmp_path / "db") as db:
        db.add(_ex(7))
        assert db.get("ex7").rowid > old
    with Database.open(tmp_path / "db") as db:
        _, rowids, _ = db.search_vectors(SPACE, db.vectors_of(db.get("ex7").rowid, SPACE), 1)
        assert db.get_rowids(rowids[0])[rowids[0][0]].id == "ex7"
    assert _check(tmp_path / "db").ok


def test_audit_api_for_other_features(db_path):
    with Database.open(db_path) as db:
        n0, head0 = db.audit_head()
        e = db.audit("disposition", user="examiner3", exhibit="ex1", lead="ex2", decision="elimination")
        assert (e.seq, e.prev) == (n0 + 1, head0) and db.audit_head() == (e.seq, e.hash)
        # inside a write transaction the entry commits with the change, or not at all
        with pytest.raises(RuntimeError):
            with db.write() as cur:
                cur.execute("INSERT INTO settings VALUES ('review/x', '1')")
                db.audit("disposition", exhibit="ex1", lead="ex3", decision="inconclusive")
                raise RuntimeError("the feature failed half-way")
        assert db.get_setting("review/x") is None and db.audit_head() == (e.seq, e.hash)
        for bad in [dict(event="Bad Event"), dict(event="x", score=float("nan")), dict(event="x", blob=b"\0"),
                    dict(event="x", user="a\nb")]:
            event = bad.pop("event")
            with pytest.raises(DatabaseError):
                db.audit(event, **bad)
        assert db.audit_head() == (e.seq, e.hash)
    with Database.open(db_path, readonly=True) as db:
        with pytest.raises(DatabaseError, match="read-only"):
            db.audit("disposition", exhibit="ex1")
    assert _check(db_path).ok


def test_older_database_gets_an_audit_log_with_a_baseline(db_path):
    # make it look like a database of ibin 0.1: no audit table, no catalog id
    conn = sqlite3.connect(db_path / "catalog.sqlite")
    conn.executescript("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete; DROP TABLE audit;"
                       "DELETE FROM settings WHERE key IN ('catalog_id', 'exhibits/last_rowid');")
    conn.close()
    import faiss  # and an index cache in the format of 0.1: a bare FAISS file with a JSON sidecar

    idx = db_path / "index" / "cartridge-height.faiss"
    faiss.write_index(faiss.IndexIDMap2(faiss.IndexFlatIP(16)), str(idx))
    idx.with_name(idx.name + ".json").write_text('{"dim": 16, "factory": "Flat", "watermark": 0, "ntotal": 0}')
    rep = _check(db_path)
    assert rep.ok and any("no audit log" in f.what for f in rep.notes) and any("ibin 0.1" in f.what for f in rep.notes)
    with Database.open(db_path) as db:  # opening it for writing starts the log
        log = db.audit_log()
        assert [e.event for e in log] == ["audit-start"] + ["ingest"] * 6
        assert all(e.details.get("baseline") for e in log[1:]) and log[1].user == "alice"
    rep = _check(db_path)
    assert rep.ok, _damage(rep)


def test_snapshot_hides_concurrent_commits(db_path):
    with Database.open(db_path, readonly=True) as reader, Database.open(db_path) as writer:
        with reader.snapshot():
            n = reader.count()
            writer.add(_ex(40))
            writer.delete("ex0")
            assert reader.count() == n and reader.get("ex0").id == "ex0"
            with pytest.raises(ExhibitNotFoundError):
                reader.get("ex40")
        assert reader.count() == n and reader.get("ex40").id == "ex40"
        with writer.snapshot(), pytest.raises(DatabaseError, match="snapshot"):
            writer.add(_ex(41))


def test_invalid_exhibits_refused_before_anything_is_written(db_path):
    seg = db_path / "store" / "seg-000001.ibf"
    size = seg.stat().st_size
    bad = [
        _ex(50, meta={"case": 9}),
        _ex(51, meta={"case": None}),
        _ex(52, meta={"case": "a\u202eb"}),
        _ex(53, meta={b"k": "v"}),
        _ex(54, user="bad\x00user"),
        NewExhibit(**{**_ex(55).__dict__, "vectors": {SPACE: np.full((1, 16), np.nan, np.float32)}}),
        NewExhibit(**{**_ex(56).__dict__, "vectors": {SPACE: np.ones((1, 8), np.float32)}}),  # wrong length
        NewExhibit(**{**_ex(57).__dict__, "vectors": {}}),
        NewExhibit(**{**_ex(58).__dict__, "source_sha256": "xyz"}),
        NewExhibit(**{**_ex(59).__dict__, "id": ""}),
    ]
    with Database.open(db_path) as db:
        head = db.audit_head()
        for ex in bad:
            with pytest.raises(DatabaseError):
                db.add(ex)
        assert db.count() == 6 and db.audit_head() == head
    assert seg.stat().st_size == size  # not even unreferenced bytes


def test_creation_is_atomic_and_race_free(tmp_path):
    from ibin.index import _faults

    target = tmp_path / "new"

    def crash(name):
        if name == "create.built":
            raise KeyboardInterrupt  # stands in for a crash after the database was built, before it appeared

    _faults.set_hook(crash)
    try:
        with pytest.raises(KeyboardInterrupt):
            Database.create(target)
    finally:
        _faults.set_hook(None)
    assert not target.exists() and list(tmp_path.iterdir()) == []
    target.mkdir()  # an empty folder made for the database is fine
    with Database.open(target, create=True) as db:
        assert db.count() == 0
    with Database.open(target, create=True) as db:  # a second creator finds it and shares it
        assert db.audit_log()[0].event == "create" and len(db.audit_log()) == 1
    shutil.rmtree(target)
    (tmp_path / "file").write_text("x")
    with pytest.raises(DatabaseError, match="not a directory"):
        Database.open(tmp_path / "file", create=True)


def test_counts_are_kept_by_the_catalog_in_the_transactions_that_change_it(db_path):
    """Exhibits per kind and vectors per space come from counts kept by triggers: exact in a snapshot, across handles, after any deletion."""
    def rows(db):
        c = db._conn
        return (c.execute("SELECT COUNT(*) FROM exhibits").fetchone()[0],
                c.execute("SELECT COUNT(*) FROM vectors WHERE space = ?", (SPACE,)).fetchone()[0])

    with Database.open(db_path, readonly=True) as reader, Database.open(db_path) as writer:
        assert reader._has_counts and reader.count(kind="cartridge") == reader.count() == 6
        assert reader.count(kind="bullet") == 0 and reader.spaces() == {SPACE: 6} and reader.space_size(SPACE) == 6
        with reader.snapshot():
            writer.add(_ex(40))
            writer.delete("ex0")
            writer.delete("ex1")
            assert reader.count() == 6 and reader._count_vectors(SPACE) == 6  # as of the snapshot
        assert (reader.count(), reader._count_vectors(SPACE)) == rows(reader) == (5, 5)
        writer._conn.execute("DELETE FROM exhibits WHERE id = 'ex2'")  # outside ibin: its vectors go by the foreign key
        assert (reader.count(), reader._count_vectors(SPACE)) == rows(reader) == (4, 4)
        for i in (3, 4, 5, 40):
            writer.delete(f"ex{i}")
        assert reader.count() == 0 and reader.spaces() == {} and reader._count_vectors(SPACE) == 0


def test_an_older_catalog_is_counted_from_its_rows_until_opened_for_writing(db_path):
    conn = sqlite3.connect(db_path / "catalog.sqlite")
    conn.executescript("DROP TRIGGER counts_exhibit_added; DROP TRIGGER counts_exhibit_deleted;"
                       "DROP TRIGGER counts_vector_added; DROP TRIGGER counts_vector_deleted; DROP TABLE counts;")
    conn.close()
    with Database.open(db_path, readonly=True) as db:
        assert not db._has_counts and db.count() == 6 and db.spaces() == {SPACE: 6} and db.counts_kept() is None
        rep = db.check()
        assert rep.ok and any("keeps no counts" in f.what for f in rep.notes)
    with Database.open(db_path) as db:  # added, and counted once
        assert db._has_counts and db.counts_kept()[0] == {"exhibits/cartridge": 6, f"vectors/{SPACE}": 6}
        db.add(_ex(7))
        assert db.count() == 7 and db.spaces() == {SPACE: 7}
    rep = _check(db_path)
    assert rep.ok and not any("counts" in f.what for f in rep.notes), _damage(rep)


def test_counts_that_are_off_are_damage_and_reindex_counts_again(db_path):
    conn = sqlite3.connect(db_path / "catalog.sqlite")
    conn.execute("UPDATE counts SET n = n + 5 WHERE key = 'exhibits/cartridge'")
    conn.execute("DELETE FROM counts WHERE key = ?", (f"vectors/{SPACE}",))
    conn.commit()
    conn.close()
    rep = _check(db_path)
    assert not rep.ok
    assert "the catalog's count of exhibits/cartridge is 11, its rows give 6" in _damage(rep)
    assert f"the catalog's count of vectors/{SPACE} is 0, its rows give 6" in _damage(rep)
    with Database.open(db_path) as db:
        assert db.reindex() == {SPACE: 6}  # counted again first: the space is rebuilt although its count said 0
        assert db.audit_log()[-1].details["counts_corrected"] == ["exhibits/cartridge", f"vectors/{SPACE}"]
        assert db.count() == 6
    rep = _check(db_path)
    assert rep.ok, _damage(rep)
