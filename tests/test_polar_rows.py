"""The candidate stage's per-anchor arrays: derived once per handle, extended (not derived again) as exhibits are added."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from ibin._polar_rows import PolarRows
from ibin.features._polar import PolarParams, from_vector, to_vector

PP = PolarParams()
DIM = PP.dim


def _signatures(n: int, rng) -> np.ndarray:
    C = (rng.normal(size=(n, PP.rings_kept, PP.harmonics)) + 1j * rng.normal(size=(n, PP.rings_kept, PP.harmonics)))
    C /= np.linalg.norm(C.reshape(n, -1), axis=1)[:, None, None]
    return to_vector(C.astype(np.complex64))


def _same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for part in a:
        (pa, ca, sa, oa), (pb, cb, sb, ob) = a[part], b[part]
        np.testing.assert_array_equal(pa, pb)
        np.testing.assert_array_equal(ca.codes, cb.codes)
        np.testing.assert_array_equal(ca.scale, cb.scale)
        np.testing.assert_array_equal(sa, sb)
        np.testing.assert_array_equal(oa, ob)


def test_extended_rows_equal_rows_derived_from_scratch():
    rng = np.random.default_rng(3)
    n = 3000
    x = _signatures(n, rng)
    rowids = np.sort(rng.integers(1, 900, n))  # one exhibit may hold several rows
    parts = rng.choice([16, 17], n)
    parts[-40:] = 18  # an anchor first seen in the added rows
    rows = PolarRows(rowids[:1000], parts[:1000], x[:1000])
    before = rows.by_anchor()
    kept = {p: tuple(np.array(a) for a in (v[0], v[1].codes, v[2])) for p, v in before.items()}
    # added in steps, the last larger than the headroom the first derivation left
    for stop in (1001, 1500, 1990, n):
        assert rows.update(rowids[:stop], parts[:stop], x[:stop])
        _same(rows.by_anchor(), PolarRows(rowids[:stop], parts[:stop], x[:stop]).by_anchor())
    assert 18 in rows.by_anchor() and 18 not in before
    # views handed out before are unchanged and read-only
    for p, (pos, codes, ids) in kept.items():
        np.testing.assert_array_equal(before[p][0], pos)
        np.testing.assert_array_equal(before[p][1].codes, codes)
        np.testing.assert_array_equal(before[p][2], ids)
        with pytest.raises(ValueError):
            before[p][1].codes[0, 0] = 1
    # nothing new: nothing changes
    same = rows.by_anchor()
    assert rows.update(rowids, parts, x)
    _same(rows.by_anchor(), same)


def test_added_rows_of_lower_rowids_are_sorted_in():
    """Rows for exhibits of lower rowids (a catalog caught up out of order) still give sorted lookups."""
    rng = np.random.default_rng(4)
    x = _signatures(300, rng)
    rowids = np.r_[np.arange(100, 300), np.arange(0, 100)]
    parts = np.full(300, 16)
    rows = PolarRows(rowids[:200], parts[:200], x[:200])
    assert rows.update(rowids, parts, x)
    _same(rows.by_anchor(), PolarRows(rowids, parts, x).by_anchor())
    pos, _, sorted_ids, order = rows.by_anchor()[16]
    np.testing.assert_array_equal(sorted_ids, np.arange(300))
    np.testing.assert_array_equal(rowids[pos[order]], sorted_ids)


def test_rows_removed_or_changed_need_a_new_derivation():
    rng = np.random.default_rng(5)
    x = _signatures(50, rng)
    rowids, parts = np.arange(50), np.full(50, 16)
    rows = PolarRows(rowids, parts, x)
    assert not rows.update(rowids[:49], parts[:49], x[:49])  # a deletion
    other = rowids.copy()
    other[10] = 99  # same length, another exhibit in place
    assert not rows.update(other, parts, x)
    moved = parts.copy()
    moved[3] = 17
    assert not rows.update(rowids, moved, x)


def _polar_exhibit(i: int, v: np.ndarray):
    from ibin.index import NewExhibit

    return NewExhibit(
        id=f"ex{i}", kind="cartridge", modality="height", source_name=f"ex{i}.x3p", source_sha256=f"{i:064x}",
        arrays={"a": np.zeros(3, np.int8)}, attrs={}, vectors={"cartridge-polar/height": v[None]},
        vector_parts={"cartridge-polar/height": [16]},
    )


def test_a_search_after_an_ingest_derives_only_the_new_exhibit(tmp_path):
    """On one handle, an ingest extends the kept arrays (equal to a fresh handle's); a deletion derives them again."""
    from ibin import engine
    from ibin.index import Database

    space = "cartridge-polar/height"
    rng = np.random.default_rng(6)
    x = _signatures(60, rng)
    db = Database.create(tmp_path / "db")
    for i in range(50):
        db.add(_polar_exhibit(i, x[i]), durable=False)
    engine._polar_by_anchor(db, space)
    kept = db.derived[("polar-rows", space)]
    for i in range(50, 60):
        db.add(_polar_exhibit(i, x[i]), durable=False)
    rowids, _, by_anchor = engine._polar_by_anchor(db, space)
    assert db.derived[("polar-rows", space)] is kept and len(kept) == 60  # extended, not derived again
    with Database.open(tmp_path / "db", readonly=True) as fresh:
        _same(by_anchor, engine._polar_by_anchor(fresh, space)[2])
    # the newest exhibit is its own best candidate on this handle
    prep = SimpleNamespace(polar=[from_vector(x[59], PP.rings_kept)], anchors=["firing_pin"], modality="height")
    best = engine._polar_candidates_many(db, [prep], "cartridge", 3, None)[0]
    assert db.get_rowids([best[0][0]])[best[0][0]].id == "ex59"
    db.delete("ex20")  # this handle's index drops its row (a fresh handle's file keeps it until a reindex)
    rowids, _, after = engine._polar_by_anchor(db, space)
    assert db.derived[("polar-rows", space)] is not kept and len(rowids) == 59
    _same(after, PolarRows(*db.space_matrix(space)).by_anchor())
    db.close()


def test_several_queries_side_by_side_give_each_query_its_own_candidates(tmp_path):
    """Query expansion searches its leads together (one thread each): the same candidates as one search per lead."""
    from ibin import SearchParams, engine
    from ibin.index import Database

    rng = np.random.default_rng(8)
    x = _signatures(80, rng)
    db = Database.create(tmp_path / "db")
    for i in range(80):
        db.add(_polar_exhibit(i, x[i]), durable=False)
    preps = [SimpleNamespace(polar=[from_vector(x[i], PP.rings_kept)], anchors=["firing_pin"], modality="height",
                             descriptor=np.zeros(8, np.float32)) for i in (7, 41, 63)]
    preps.append(SimpleNamespace(polar=None, anchors=[], modality="height", descriptor=np.zeros(8, np.float32)))
    alone = [engine._polar_candidates_many(db, [p], "cartridge", 6, None, workers=1)[0] for p in preps]
    for workers in (1, 2, 4):
        assert engine._polar_candidates_many(db, preps, "cartridge", 6, None, workers=workers) == alone
    assert [r[0][0] for r in alone[:3]] == [db.get(f"ex{i}").rowid for i in (7, 41, 63)]
    assert alone[3] == []
    allowed = np.array(sorted(db.get(f"ex{i}").rowid for i in range(0, 80, 3)), dtype=np.int64)  # a metadata filter
    kept = [engine._polar_candidates_many(db, [p], "cartridge", 6, allowed, workers=1)[0] for p in preps]
    assert engine._polar_candidates_many(db, preps, "cartridge", 6, allowed, workers=2) == kept
    assert all(len(r) == 6 and {i for i, _ in r} <= set(allowed.tolist()) for r in kept[:3])
    params = SearchParams(candidates=5, verify=1, top=1)
    excl = [db.get("ex7").rowid, None, db.get("ex63").rowid, None]
    one_by_one = [[r.id for r in engine._candidates(db, p, "cartridge", params, exclude_rowid=e)] for p, e in zip(preps, excl)]
    together = [[r.id for r in c] for c in engine._candidates_many(db, preps, "cartridge", params, excl)]
    assert together == one_by_one
    assert "ex7" not in together[0] and together[1][0] == "ex41" and "ex63" not in together[2]
    db.close()
