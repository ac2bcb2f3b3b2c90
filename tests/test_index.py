"""Feature store, catalog and FAISS index: round trips, de-duplication, filters, exact search."""

from __future__ import annotations

import numpy as np
import pytest

from ibin.errors import DatabaseError, DuplicateExhibitError, ExhibitNotFoundError
from ibin.index import Database, NewExhibit, VectorIndex
from ibin.index._store import decode_record, decode_shapes, encode_record


def _ex(i: int, *, sha: str | None = None, meta=None, dim=8, rng=None) -> NewExhibit:
    rng = rng or np.random.default_rng(i)
    v = rng.normal(size=dim).astype(np.float32)
    v /= np.linalg.norm(v)
    return NewExhibit(
        id=f"ex{i}", kind="cartridge", modality="height", source_name=f"ex{i}.x3p",
        source_sha256=sha or f"{i:064x}", arrays={"a": np.arange(i + 3, dtype=np.int8), "v": v},
        attrs={"i": i}, vectors={"cartridge/height": v[None]}, metadata=meta or {},
    )


def test_record_roundtrip_and_alignment():
    arrays = {"x": np.arange(10, dtype=np.float32).reshape(2, 5), "q": np.array([-128, 5], np.int8), "e": np.zeros((0,))}
    rec = encode_record(arrays, {"k": [1, 2], "s": "µm"})
    out, attrs = decode_record(rec)
    for k, v in arrays.items():
        assert out[k].dtype == v.dtype and np.array_equal(out[k], v)
    assert attrs == {"k": [1, 2], "s": "µm"}
    with pytest.raises(DatabaseError, match="magic"):
        decode_record(b"XXXX" + rec[4:])
    with pytest.raises(DatabaseError, match="truncated"):
        decode_record(rec[:-64])
    # the shapes alone, from the header
    assert decode_shapes(rec) == {"x": (2, 5), "q": (2,), "e": (0,)}
    with pytest.raises(DatabaseError, match="magic"):
        decode_shapes(b"XXXX" + rec[4:], where="seg@0")
    with pytest.raises(DatabaseError, match="^seg@0: damaged feature record header"):
        decode_shapes(rec.replace(b'"shape"', b'"shapE"'), where="seg@0")


def test_database_add_get_dedup(tmp_path):
    db = Database.create(tmp_path / "db")
    assert db.add(_ex(1, meta={"caliber": "9mm"})) == ("ex1", True)
    assert db.array_shapes(db.get("ex1")) == {k: v.shape for k, v in db.load(db.get("ex1"))[0].items()} == {"a": (4,), "v": (8,)}
    assert db.add(_ex(2, meta={"caliber": ".45"})) == ("ex2", True)
    # the same source file again: not duplicated, the existing id comes back
    again = _ex(9, sha=f"{1:064x}")
    assert db.add(again) == ("ex1", False)
    assert db.count() == 2
    with pytest.raises(DuplicateExhibitError):
        db.add(_ex(1, sha="f" * 64))
    rec = db.get("ex1")
    arrays, attrs = db.load(rec, verify=True)
    assert np.array_equal(arrays["a"], np.arange(4, dtype=np.int8)) and attrs == {"i": 1}
    assert rec.metadata == {"caliber": "9mm"}
    assert [r.id for r in db.list(filters={"caliber": ".45"})] == ["ex2"]
    with pytest.raises(ExhibitNotFoundError):
        db.get("nope")
    db.close()
    # reopening sees everything
    with Database.open(tmp_path / "db", readonly=True) as db2:
        assert db2.count() == 2 and db2.get("ex2").metadata == {"caliber": ".45"}


def test_prefetch_pages_cover_each_record_once():
    """Ranges start on a page, cover every record, and merge where records share or touch pages."""
    from ibin.index._store import RecordRef, page_ranges

    refs = [RecordRef(1, 5000, 100, ""), RecordRef(1, 100, 50, ""), RecordRef(1, 4096 * 3 + 10, 4096, ""),
            RecordRef(2, 8192, 1, ""), RecordRef(1, 5100, 3000, "")]
    got = page_ranges(refs, 4096)
    assert got == {1: [(0, 150), (4096, 8100 - 4096), (12288, 4096 * 4 + 10 - 12288)], 2: [(8192, 1)]}
    for r in refs:  # every byte of every record is inside one range
        assert any(s <= r.offset and r.offset + r.length <= s + n for s, n in got[r.segment])
        assert all(s % 4096 == 0 for s, _ in got[r.segment])


def test_prefetch_advises_the_records_and_changes_nothing(tmp_path, monkeypatch):
    """Prefetching asks for the records' pages (nothing when switched off) and reads return the same arrays."""
    import mmap

    import ibin.index._store as store

    db = Database.create(tmp_path / "db")
    for i in range(1, 6):
        db.add(_ex(i))
    recs = db.list()
    before = [db.load(r)[0]["a"].copy() for r in recs]
    if hasattr(mmap, "MADV_WILLNEED"):
        assert db.prefetch(recs) >= sum(r.ref.length for r in recs)
    monkeypatch.setattr(store, "PREFETCH", False)
    assert db.prefetch(recs) == 0
    assert all(np.array_equal(db.load(r)[0]["a"], b) for r, b in zip(recs, before))
    db.close()


def test_metadata_must_be_text(tmp_path):
    db = Database.create(tmp_path / "db")
    bad = _ex(1, meta={"caliber": 9})
    with pytest.raises(DatabaseError, match="text"):
        db.add(bad)
    with pytest.raises(DatabaseError, match="control"):
        db.add(_ex(2, meta={"case": "a\x00b"}))
    assert db.count() == 0


def test_not_a_database(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f.txt").write_text("hello")
    with pytest.raises(DatabaseError, match="not an ibin database"):
        Database.open(tmp_path / "x")
    with pytest.raises(DatabaseError, match="no such database"):
        Database.open(tmp_path / "missing")
    with pytest.raises(DatabaseError, match="not empty"):
        Database.create(tmp_path / "x")


def test_vector_search_matches_brute_force(tmp_path):
    rng = np.random.default_rng(7)
    db = Database.create(tmp_path / "db")
    for i in range(60):
        db.add(_ex(i, meta={"agency": "A" if i % 3 else "B"}, dim=16, rng=rng))
    vecs = np.stack([db.vectors_of(r.rowid, "cartridge/height")[0] for r in db.list()])
    rowids = np.array([r.rowid for r in db.list()])
    q = rng.normal(size=(1, 16)).astype(np.float32)
    D, R, P = db.search_vectors("cartridge/height", q, 10)
    exact = rowids[np.argsort(-(vecs @ q[0]))[:10]]
    assert list(R[0]) == list(exact)
    assert np.all(np.diff(D[0]) <= 1e-6) and np.all(P[0] == 0)
    # a metadata filter is applied inside the search: still k results, all allowed
    allowed = db.rowids(filters={"agency": "B"})
    D, R, _ = db.search_vectors("cartridge/height", q, 10, allowed_rowids=allowed)
    assert len(set(R[0]) - {-1}) == 10 and set(R[0]) <= set(allowed)
    # the index file is a cache: a fresh handle rebuilds the same answers from the catalog
    (tmp_path / "db" / "index" / "cartridge-height.faiss").unlink()
    with Database.open(tmp_path / "db") as db2:
        D2, R2, _ = db2.search_vectors("cartridge/height", q, 10)
    assert list(R2[0]) == list(exact)


def test_deleted_exhibit_never_returned(tmp_path):
    db = Database.create(tmp_path / "db")
    for i in range(5):
        db.add(_ex(i))
    q = db.vectors_of(db.get("ex3").rowid, "cartridge/height")
    db.delete("ex3")
    with Database.open(tmp_path / "db") as db2:  # its index file may still hold ex3
        _, R, _ = db2.search_vectors("cartridge/height", q, 5)
        ids = {db2.get_rowids([r])[r].id for r in R[0] if r >= 0}
    assert "ex3" not in ids and len(ids) == 4


def test_vector_index_empty_and_selector():
    idx = VectorIndex(4)
    D, I = idx.search(np.ones((1, 4), np.float32), 3)
    assert (I == -1).all()
    idx.add(np.array([10, 20, 30]), np.eye(4, dtype=np.float32)[:3])
    D, I = idx.search(np.eye(4, dtype=np.float32)[:1], 3, allowed=np.array([20, 30]))
    assert set(I[0]) == {20, 30, -1}


def test_ivf_index_when_asked_and_filters_inside(tmp_path):
    """An IVF index is trained from the catalog when asked for; filters still return k allowed results."""
    from ibin.engine import spectral_index_factory

    assert spectral_index_factory(1000) == "Flat"
    assert spectral_index_factory(1_000_000).startswith("IVF4096")
    rng = np.random.default_rng(3)
    db = Database.create(tmp_path / "db")
    for i in range(300):
        db.add(_ex(i, meta={"agency": "A" if i % 2 else "B"}, dim=16, rng=rng), durable=False)
    q = rng.normal(size=(1, 16)).astype(np.float32)
    D0, R0, _ = db.search_vectors("cartridge/height", q, 10)
    D1, R1, _ = db.search_vectors("cartridge/height", q, 10, factory="IVF16,Flat")
    assert db.index("cartridge/height", factory="IVF16,Flat").nprobe == 8
    assert len(set(R0[0]) & set(R1[0])) >= 8  # half the lists probed: nearly exact
    allowed = db.rowids(filters={"agency": "B"})
    _, R2, _ = db.search_vectors("cartridge/height", q, 10, factory="IVF16,Flat", allowed_rowids=allowed)
    assert set(R2[0]) <= set(allowed) and len(set(R2[0]) - {-1}) == 10


def test_matrix_outlives_its_index_and_is_read_only():
    """The vectors handed out without a copy stay valid when the index is dropped (they pin its memory)."""
    import gc

    rng = np.random.default_rng(3)
    X = rng.standard_normal((500, 16)).astype(np.float32)
    idx = VectorIndex(16)
    idx.add(np.arange(500, dtype=np.int64) * 7, X)
    ids, x = idx.matrix()
    del idx
    gc.collect()
    junk = [np.full((500, 16), 9.0, np.float32) for _ in range(50)]  # reuse freed memory, were it freed
    assert np.array_equal(ids, np.arange(500) * 7) and np.array_equal(x, X)
    with pytest.raises(ValueError):
        x[0, 0] = 1.0
    del junk


def test_index_file_layouts_and_damage(tmp_path, monkeypatch):
    """A saved index file: header, zeros up to where the exact index's vectors fall on 64 bytes, then exactly what FAISS serialises, hashed per block; version 1 layouts still load; damage is refused."""
    import hashlib
    import json
    import struct

    import faiss

    from ibin.index import _vectors
    from ibin.index._vectors import _HEADER_BYTES, inspect

    monkeypatch.setattr(_vectors, "_BLOCK_BYTES", 1 << 20)  # three blocks, hashed in threads on loading
    rng = np.random.default_rng(5)
    X = rng.standard_normal((20000, 32)).astype(np.float32)  # several of FAISS's 1 MiB blocks
    idx = VectorIndex(32)
    idx.add(np.arange(20000, dtype=np.int64) * 3, X)
    idx.watermark = 59997
    path = tmp_path / "a.faiss"
    idx.save(path, catalog_id="c" * 32)
    raw = path.read_bytes()
    payload = faiss.serialize_index(idx.index).tobytes()
    (hlen,) = struct.unpack("<I", raw[4:8])
    head = json.loads(raw[8 : 8 + hlen])
    at = head["payload_at"]
    assert 8 + hlen == _HEADER_BYTES <= at < _HEADER_BYTES + 64 and not any(raw[_HEADER_BYTES:at])
    assert len(payload) > 2 * 2**20 and raw[at:] == payload and head["bytes"] == len(payload)
    assert raw.find(X.tobytes()) % 64 == 0 and head["version"] == 2 and head["catalog"] == "c" * 32
    blocks = [hashlib.sha256(payload[s : s + 2**20]).digest() for s in range(0, len(payload), 2**20)]
    assert len(blocks) == 3 and head["sha256_block_bytes"] == 2**20
    assert head["sha256"] == hashlib.sha256(b"".join(blocks)).hexdigest()

    def loaded(p, in_place):
        got = VectorIndex.load(p, 32, "Flat", catalog_id="c" * 32)
        assert got is not None and got.watermark == 59997 and got.mapped is in_place
        ids, x = got.matrix()
        assert np.array_equal(ids, np.arange(20000) * 3) and np.array_equal(x, X) and x.flags.aligned
        assert not in_place or x.ctypes.data % 64 == 0

    loaded(path, True)
    assert faiss.downcast_index(inspect(path)[0][0].index).codes.is_owned  # inspect: memory of its own
    # version 1 (until 2026-12-04): no payload_at, the SHA-256 of the whole payload; read into memory
    v1 = {k: v for k, v in head.items() if k not in ("payload_at", "sha256_block_bytes")}
    v1.update(version=1, sha256=hashlib.sha256(payload).hexdigest())
    spaced = json.dumps(v1, sort_keys=True).encode()
    (tmp_path / "v1.faiss").write_bytes(raw[:4] + struct.pack("<I", hlen) + spaced + b" " * (hlen - len(spaced)) + payload)
    loaded(tmp_path / "v1.faiss", False)
    # the layout before that: compact header JSON, zero padding to a multiple of 64
    start = 8 + len(spaced) + (-(8 + len(spaced))) % 64
    old = tmp_path / "old.faiss"
    old.write_bytes(raw[:4] + struct.pack("<I", len(spaced)) + spaced + b"\0" * (start - 8 - len(spaced)) + payload)
    loaded(old, False)
    # cut short, lengthened, one byte changed (last block, first block), empty, payload_at out of range:
    # refused with the reason, never raised
    bad_at = json.dumps(dict(head, payload_at=8), sort_keys=True).encode()
    for name, data, why in [("short", raw[:-1000], "header says"), ("long", raw + b"\0", "header says"),
                            ("flip", raw[:-5] + bytes([raw[-5] ^ 1]) + raw[-4:], "SHA-256"),
                            ("flip0", raw[: at + 9] + bytes([raw[at + 9] ^ 1]) + raw[at + 10 :], "SHA-256"),
                            ("empty", b"", "magic bytes"), ("json", raw[:100], "header damaged"),
                            ("padding", raw[:_HEADER_BYTES // 2], "holds 0 bytes"),
                            ("at", raw[:8] + bad_at + b" " * (hlen - len(bad_at)) + raw[_HEADER_BYTES:], "header damaged")]:
        (tmp_path / name).write_bytes(data)
        got, problem = inspect(tmp_path / name)
        assert got is None and why in problem, (name, problem)
        assert VectorIndex.load(tmp_path / name, 32, "Flat") is None


def test_an_index_read_in_place_is_copied_once_before_it_changes(tmp_path):
    """Adding to or removing from an exact index read in place works on a copy with room to grow; earlier views stay valid."""
    import gc

    import faiss

    rng = np.random.default_rng(8)
    X = rng.standard_normal((3000, 16)).astype(np.float32)
    idx = VectorIndex(16)
    idx.add(np.arange(3000, dtype=np.int64) + 10, X)
    idx.save(tmp_path / "a.faiss")
    q = rng.standard_normal((4, 16)).astype(np.float32)
    want = idx.search(q, 7)
    got = VectorIndex.load(tmp_path / "a.faiss", 16, None)
    assert got.mapped
    D, I = got.search(q, 7)
    assert np.array_equal(I, want[1]) and np.array_equal(D, want[0])
    ids0, x0 = got.matrix()
    more = rng.standard_normal((5, 16)).astype(np.float32)
    got.add(np.arange(5, dtype=np.int64) + 5000, more)
    base = faiss.downcast_index(got.index.index)
    assert not got.mapped and base.codes.is_owned and got.ntotal == 3005
    ptr = base.get_xb()
    got.add(np.array([6000]), more[:1])  # within the room left by the copy: not moved
    assert int(faiss.downcast_index(got.index.index).get_xb()) == int(ptr)
    ids, x = got.matrix()
    assert np.array_equal(x, np.vstack([X, more, more[:1]])) and np.array_equal(ids[-6:], [5000, 5001, 5002, 5003, 5004, 6000])
    ref = VectorIndex(16)  # the same vectors, never on file
    ref.add(ids, x)
    assert np.array_equal(got.search(q, 9)[1], ref.search(q, 9)[1])
    del got, base, x, ids
    gc.collect()
    junk = [np.full((3000, 16), 9.0, np.float32) for _ in range(50)]
    assert np.array_equal(x0, X) and np.array_equal(ids0, np.arange(3000) + 10)  # the pages, kept by the view
    del junk
    # removing: also on a copy; the same search as an index that never was on file
    got = VectorIndex.load(tmp_path / "a.faiss", 16, None)
    got.remove(np.arange(10, 1010, dtype=np.int64))
    idx.remove(np.arange(10, 1010, dtype=np.int64))
    assert not got.mapped and got.ntotal == 2000
    assert np.array_equal(got.search(q, 7)[1], idx.search(q, 7)[1])
    # an empty index on file
    VectorIndex(16).save(tmp_path / "e.faiss")
    e = VectorIndex.load(tmp_path / "e.faiss", 16, None)
    e.add(np.array([1]), X[:1])
    assert e.ntotal == 1 and np.array_equal(e.matrix()[1], X[:1])


def test_disk_full_while_saving_an_index_loses_nothing(tmp_path, monkeypatch, caplog):
    """A save that fails part way (the disk full) leaves the previous index file and no temporary; searches go on."""
    import errno

    import ibin.index._vectors as V

    db = Database.create(tmp_path / "db")
    for i in range(5):
        db.add(_ex(i, dim=16))
    space = "cartridge/height"
    q = db.vectors_of(db.get("ex3").rowid, space)
    db.search_vectors(space, q, 1)  # writes the index file
    path = db.index_path(space)
    before = path.read_bytes()
    db.close()

    real = V.write_all
    written = []

    def full(fd, data):
        if sum(written) > 200:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(len(memoryview(data)))
        real(fd, data)

    monkeypatch.setattr(V, "write_all", full)
    with Database.open(tmp_path / "db") as db, caplog.at_level("WARNING"):
        db.add(_ex(7, dim=16))
        _, rowids, _ = db.search_vectors(space, db.vectors_of(db.get("ex7").rowid, space), 1)
        assert db.get_rowids(rowids[0])[rowids[0][0]].id == "ex7"  # found, from the index caught up in memory
    assert written and "could not save the index cache" in caplog.text
    assert path.read_bytes() == before and not list(path.parent.glob("*.tmp-*"))
    monkeypatch.setattr(V, "write_all", real)
    with Database.open(tmp_path / "db", readonly=True) as db:  # the old file, caught up from the catalog
        _, rowids, _ = db.search_vectors(space, db.vectors_of(db.get("ex7").rowid, space), 1)
        assert db.get_rowids(rowids[0])[rowids[0][0]].id == "ex7"


def test_index_file_rewritten_only_once_enough_is_new(tmp_path):
    """A save rewrites the whole index file: the vectors of a small ingest are read from the catalog until they reach 1 %."""
    from ibin.index._database import UNSAVED_SHARE
    from ibin.index._vectors import inspect

    assert UNSAVED_SHARE == 0.01
    space = "cartridge/height"
    db = Database.create(tmp_path / "db")
    for i in range(200):
        db.add(_ex(i, dim=16), durable=False)
    db.index(space)  # no file yet: written
    path = db.index_path(space)
    first = path.read_bytes()
    db.add(_ex(200, dim=16))  # 1 new of 201: not rewritten
    idx = db.index(space)
    assert idx.ntotal == 201 and idx.unsaved == 1 and path.read_bytes() == first
    db.close()
    with Database.open(tmp_path / "db") as db2:  # a new process catches up from the catalog
        q = db2.vectors_of(db2.get("ex200").rowid, space)
        _, rowids, _ = db2.search_vectors(space, q, 1)
        assert db2.get_rowids(rowids[0])[rowids[0][0]].id == "ex200" and path.read_bytes() == first
        db2.add(_ex(201, dim=16))  # 2 new of 202: under 1 %
        assert db2.index(space).unsaved == 2 and path.read_bytes() == first
        db2.add(_ex(202, dim=16))  # 3 new of 203: over, rewritten
        assert db2.index(space).unsaved == 0
    got, _ = inspect(path)
    assert got[0].ntotal == 203


def test_space_matrix_is_read_once_per_change_of_the_index(tmp_path):
    """The same read-only arrays while the index is unchanged; an add or a delete gives the new rows."""
    space = "cartridge/height"
    db = Database.create(tmp_path / "db")
    for i in range(5):
        db.add(_ex(i, dim=16), durable=False)
    a = db.space_matrix(space)
    b = db.space_matrix(space)
    assert all(x is y for x, y in zip(a, b)) and len(a[0]) == 5
    assert not a[0].flags.writeable and not a[1].flags.writeable and not a[2].flags.writeable
    db.add(_ex(5, dim=16), durable=False)
    c = db.space_matrix(space)
    assert c[0] is not a[0] and len(c[0]) == 6 and c[0][-1] == db.get("ex5").rowid
    np.testing.assert_array_equal(c[2][-1], db.vectors_of(db.get("ex5").rowid, space)[0])
    gone = db.delete("ex2").rowid
    d = db.space_matrix(space)
    assert len(d[0]) == 5 and gone in set(c[0].tolist()) and gone not in set(d[0].tolist())
    db.close()


def test_a_replaced_index_is_not_kept_alive_by_its_matrix(tmp_path):
    """After a reindex the handle lets the old index go (its matrix may hold gigabytes)."""
    import gc
    import weakref

    space = "cartridge/height"
    db = Database.create(tmp_path / "db")
    for i in range(5):
        db.add(_ex(i, dim=16), durable=False)
    db.space_matrix(space)
    old = weakref.ref(db.index(space))
    db.reindex()
    gc.collect()
    assert old() is None  # before any new search asks for the matrix
    assert len(db.space_matrix(space)[0]) == 5
    db.close()


def test_an_index_read_in_place_survives_its_file_being_replaced_and_removed(tmp_path):
    """Another handle saving the index (a rename) or a reindex leaves a handle reading the old file's pages correct."""
    import gc

    space = "cartridge/height"
    db = Database.create(tmp_path / "db")
    for i in range(300):
        db.add(_ex(i, dim=16), durable=False)
    db.index(space)  # written
    db.close()
    a = Database.open(tmp_path / "db")
    idx = a.index(space)
    assert idx.mapped
    x_before = a.space_matrix(space)[2]
    want = x_before.copy()
    q = a.vectors_of(a.get("ex7").rowid, space)
    with Database.open(tmp_path / "db") as b:
        for i in range(300, 310):  # over 1 %: b saves the index file again, a rename over a's file
            b.add(_ex(i, dim=16))
        assert b.index(space).unsaved == 0
        b.reindex()  # and again, removing and rewriting the index folder's files
    gc.collect()
    assert np.array_equal(x_before, want) and a.index(space) is idx  # a still reads the pages it verified
    _, rowids, _ = a.search_vectors(space, q, 1)
    assert a.get_rowids(rowids[0])[rowids[0][0]].id == "ex7"
    a.add(_ex(400, dim=16))  # a catches up with its own copy
    assert not a.index(space).mapped and a.index(space).ntotal == 311
    a.close()
    with Database.open(tmp_path / "db") as c:
        assert c.index(space).ntotal == 311  # the file (310, by the reindex) and the newest from the catalog


def test_a_faiss_without_a_zero_copy_reader_reads_version_2_files_into_memory(tmp_path, monkeypatch):
    """FAISS before 1.10 (pyproject allows 1.8) has no zero-copy reader: the file loads as before, not rebuilt."""
    import faiss

    X = np.random.default_rng(2).standard_normal((50, 8)).astype(np.float32)
    idx = VectorIndex(8)
    idx.add(np.arange(50, dtype=np.int64), X)
    idx.save(tmp_path / "a.faiss")
    monkeypatch.delattr(faiss, "ZeroCopyIOReader")
    got = VectorIndex.load(tmp_path / "a.faiss", 8, None)
    assert got is not None and not got.mapped and got.file_version == 2
    assert np.array_equal(got.matrix()[1], X)
    got.add(np.array([99]), X[:1])
    assert got.ntotal == 51


def test_vectors_of_exhibits_deleted_elsewhere_are_dropped_once_and_newer_ones_kept(tmp_path, monkeypatch):
    """A handle whose index predates another handle's deletion drops those vectors once (not a catalog scan per search);
    a vector newer than its snapshot, in an index file saved meanwhile, is kept and found afterwards."""
    space = "cartridge/height"
    db = Database.create(tmp_path / "db")
    for i in range(200):
        db.add(_ex(i, dim=16), durable=False)
    db.index(space)  # the file
    db.close()
    a, b = Database.open(tmp_path / "db"), Database.open(tmp_path / "db")
    q = a.vectors_of(a.get("ex5").rowid, space)
    gone = {a.get("ex5").rowid, a.get("ex6").rowid}
    _, R, _ = a.search_vectors(space, q, 3)  # a's index loaded
    assert R[0][0] == a.get("ex5").rowid
    b.delete("ex5")
    b.delete("ex6")
    scans = []
    real = Database._all_vector_ids
    monkeypatch.setattr(Database, "_all_vector_ids", lambda self, s: scans.append(s) or real(self, s))
    _, R, _ = a.search_vectors(space, q, 5)
    assert not gone & set(R[0]) and len(a.get_rowids(R[0])) == 5  # five exhibits on file, the deleted ones not
    assert len(scans) == 1 and a.index(space).ntotal == 198 and a.count() == 198
    a.search_vectors(space, q, 5)
    assert len(scans) == 1  # the next search reads no list of ids
    # an index newer than the snapshot: b adds (its file saved again), a's snapshot began before
    with a.snapshot():
        a.count()
        for i in range(200, 205):
            b.add(_ex(i, dim=16))
        assert b.index(space).unsaved == 0  # the file now holds ex200..ex204
        a._indexes.clear()
        new = b.vectors_of(b.get("ex204").rowid, space)
        _, R, _ = a.search_vectors(space, new, 3)  # loads the newer file; ex204 is not in a's snapshot
        assert b.get("ex204").rowid not in R[0] and a.index(space).ntotal == 203
    _, R, _ = a.search_vectors(space, new, 1)  # kept, so found once the snapshot is over
    assert R[0][0] == b.get("ex204").rowid
    a.close()
    b.close()


def test_a_search_allowed_by_group_is_the_search_allowed_by_every_id_of_the_groups():
    """allowed_groups (a bitmap, one bit per id of each group) selects exactly the ids of those groups, in FAISS."""
    rng = np.random.default_rng(11)
    ids = np.concatenate([(np.arange(1, 400) << 8) | 0, (np.arange(1, 400, 3) << 8) | 17])  # two parts of some
    X = rng.standard_normal((len(ids), 16)).astype(np.float32)
    for factory in ("Flat", "IVF8,Flat"):
        idx = VectorIndex(16, factory)
        idx.add(ids, X)
        q = rng.standard_normal((3, 16)).astype(np.float32)
        groups = np.array([5, 7, 9, 10, 33, 34, 250, 399, 1000, -1])  # beyond the largest held, and -1, ignored
        want_ids = ids[np.isin(ids >> 8, groups)]
        D0, I0 = idx.search(q, 12, allowed=want_ids)
        D1, I1 = idx.search(q, 12, allowed_groups=groups, group_bits=8)
        assert np.array_equal(I0, I1) and np.allclose(D0, D1) and set(I1.ravel()) <= set(want_ids) | {-1}
        assert (I1 >= 0).sum() == 3 * min(12, len(want_ids))
        assert (idx.search(q, 5, allowed_groups=np.array([], np.int64))[1] == -1).all()
        # a group far past every id held makes no bitmap to reach it (2**40 exhibits would be 32 TB)
        assert (idx.search(q, 5, allowed_groups=np.array([1 << 40]))[1] == -1).all()
    with pytest.raises(ValueError, match="group_bits"):
        idx.search(q, 5, allowed_groups=groups, group_bits=2)
