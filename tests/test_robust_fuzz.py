"""Property-based fuzzing (Hypothesis) of the X3P reader and of exhibit metadata.

The reader's contract on any bytes whatsoever: return a valid :class:`Scan`
or raise :class:`ScanError` naming the file, never another exception, a
warning or a hang. Three generators feed it: byte-level damage to a valid
file (flips, truncations, insertions), damage to the *content* of its
members re-packed with valid CRCs and checksums (so it reaches the XML
parser and the data decoder), and ``main.xml`` documents assembled from
arbitrary field values.

Metadata's contract: any mapping is either stored and read back exactly, with
an audit entry that records it, or refused with :class:`DatabaseError`
leaving the database as it was. Runs are derandomized so CI is repeatable;
``--hypothesis-seed`` and a larger ``max_examples`` explore further.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ibin.errors import DatabaseError, ScanError
from ibin.index import Database, NewExhibit
from ibin.scan import MAX_GRID_POINTS, Scan, load_scan

from ._malformed import main_xml, x3p

FUZZ = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# each metadata example commits (and fsyncs) a transaction: fewer of them
FUZZ_DB = settings(FUZZ, max_examples=75)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def _base() -> tuple[bytes, bytes, bytes]:
    rng = np.random.default_rng(5)
    z = (rng.normal(size=(12, 16)) * 1e-6).astype("<f8")
    z[0, :3] = np.nan
    data = z.tobytes()
    main = main_xml(cols=16, rows=12, data_md5=hashlib.md5(data).hexdigest())
    return x3p(main, data), main, data


BASE, BASE_MAIN, BASE_DATA = _base()


def _load(folder: Path, blob: bytes, name: str = "fuzz.x3p"):
    p = folder / name
    p.write_bytes(blob)
    try:
        s = load_scan(p)
    except ScanError as e:
        assert str(p) in str(e) and e.problem, str(e)
        return None
    assert isinstance(s, Scan) and s.values.ndim == 2 and 0 < s.values.size <= MAX_GRID_POINTS
    assert math.isfinite(s.pixel_x_um) and s.pixel_x_um > 0 and math.isfinite(s.pixel_y_um) and s.pixel_y_um > 0
    assert np.isfinite(s.values).any() and not np.isinf(s.values).any()
    assert s.sha256 == hashlib.sha256(blob).hexdigest()
    return s


def test_the_base_file_reads(fuzz_dir):
    s = _load(fuzz_dir, BASE)
    assert s is not None and s.shape == (12, 16)


_edit = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(1, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10**6), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=16)),
)


def _apply(blob: bytes, edits) -> bytes:
    b = bytearray(blob)
    for kind, pos, arg in edits:
        if not b:
            break
        pos %= len(b)
        if kind == "flip":
            b[pos] ^= arg
        elif kind == "cut":
            del b[pos:]
        else:
            b[pos:pos] = arg
    return bytes(b)


@FUZZ
@given(st.lists(_edit, min_size=1, max_size=4))
def test_damaged_archive_bytes(fuzz_dir, edits):
    _load(fuzz_dir, _apply(BASE, edits))


@FUZZ
@given(main_edits=st.lists(_edit, max_size=3), data_edits=st.lists(_edit, max_size=3), fix_md5=st.booleans())
def test_damaged_member_content_repacked(fuzz_dir, main_edits, data_edits, fix_md5):
    main = _apply(BASE_MAIN, main_edits)
    data = _apply(BASE_DATA, data_edits)
    if fix_md5:  # keep the checksums right so the damage reaches the parser and decoder
        main = main.replace(hashlib.md5(BASE_DATA).hexdigest().encode(), hashlib.md5(data).hexdigest().encode())
    _load(fuzz_dir, x3p(main, data) if fix_md5 else x3p(main, data, checksum=hashlib.md5(BASE_MAIN).hexdigest().encode()))


_increment = st.one_of(
    st.sampled_from([6.25e-6, 12.5e-6, 1.5625e-6, 6.25, 2.0]).map(repr),  # plausible, in metres or micrometres
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**12, 10**12).map(str),
    st.sampled_from(["", "abc", "1e400", "0x10", " 6.25e-6 ", "NaN", "1,5"]),
)


def _often(valid, *others):
    """Mostly the valid value, so examples get past the first check and reach deeper ones."""
    return st.sampled_from([valid] * (2 * len(others) + 2) + list(others))


@FUZZ
@given(
    cols=st.integers(-2, 40), rows=st.integers(-2, 40), layers=_often(1, 0, 2, 3),
    feature=_often("SUR", "PRF", "PCL", "sur", "XYZ", ""),
    cx=_often(("I", "D"), ("A", "D"), ("X", "D"), ("I", "Q"), ("I", "")),
    cz=_often(("A", "D"), ("A", "F"), ("A", "L"), ("A", "I"), ("I", "D"), ("A", "Q")),
    inc_x=_increment, inc_y=st.one_of(st.none(), _increment),
    extra_bytes=_often(0, -8, 8, -1, 1000), scale=st.sampled_from([1e-6, 1e-9, 1.0, 1e3, 1e300]),
    fill=st.sampled_from([None, 0.0, np.nan, np.inf]), datalist=_often(False, True),
)
def test_generated_main_xml(fuzz_dir, cols, rows, layers, feature, cx, cz, inc_x, inc_y, extra_bytes, scale, fill, datalist):
    n = max(cols, 0) * max(rows, 0) * max(layers, 1)
    rng = np.random.default_rng(n)
    values = rng.normal(size=n) * scale if fill is None else np.full(n, fill)
    kw = dict(cols=cols, rows=rows, layers=layers, feature=feature, inc_x=inc_x, inc_y=inc_y, cx=cx, cz=cz)
    if datalist:
        datums = [repr(float(v)) for v in values][: max(n + extra_bytes // 8, 0)]
        blob = x3p(main_xml(**kw, datums=datums), None)
    else:
        data = values.astype("<f8").tobytes()
        data = data[: len(data) + extra_bytes] if extra_bytes < 0 else data + b"\0" * extra_bytes
        blob = x3p(main_xml(**kw, data_md5=hashlib.md5(data).hexdigest()), data)
    _load(fuzz_dir, blob)


# ---------------------------------------------------------------------------- metadata

_text = st.text(max_size=40)  # anything, control characters and all
_clean = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)
_anything = st.one_of(_text, st.integers(), st.none(), st.binary(max_size=8), st.floats(), st.lists(_text, max_size=2),
                      st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x3000), max_size=12))


class _MetaDB:
    """One database for all examples (a fresh one per example would be slow)."""

    def __init__(self, folder: Path):
        self.path = folder / "db"
        self.db = Database.create(self.path)
        self.n = 0

    def new(self, metadata) -> NewExhibit:
        self.n += 1
        v = np.zeros(8, np.float32)
        v[self.n % 8] = 1.0
        return NewExhibit(id=f"m{self.n}", kind="cartridge", modality="height", source_name="m.x3p",
                          source_sha256=hashlib.sha256(str(self.n).encode()).hexdigest(), arrays={"v": v}, attrs={},
                          vectors={"cartridge/height": v[None]}, metadata=metadata, user="fuzz")

    def state(self):
        seg = self.path / "store" / "seg-000001.ibf"
        return self.db.count(), self.db.audit_head(), seg.stat().st_size if seg.exists() else 0


@pytest.fixture(scope="module")
def meta_db(tmp_path_factory):
    m = _MetaDB(tmp_path_factory.mktemp("meta"))
    yield m
    rep = m.db.check()
    m.db.close()
    assert rep.ok, "\n".join(map(str, rep.damage))


@st.composite
def _metadata(draw):
    """Clean text metadata, half the time with one arbitrary entry (often not text, or not clean)."""
    md = draw(st.dictionaries(_clean, st.one_of(_clean, st.just("")), max_size=3))
    if draw(st.booleans()):
        md[draw(st.one_of(_text, st.integers(), st.none()))] = draw(_anything)
    return md


@FUZZ_DB
@given(_metadata())
def test_metadata_stored_exactly_or_refused(meta_db, metadata):
    before = meta_db.state()
    ex = meta_db.new(metadata)
    try:
        meta_db.db.add(ex)
    except DatabaseError:
        assert meta_db.state() == before
        return
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    assert meta_db.db.get(ex.id).metadata == metadata
    entry = meta_db.db.audit_log(event="ingest")[-1]
    assert entry.details["id"] == ex.id and entry.details["metadata"] == metadata


@FUZZ_DB
@given(values=_metadata(),
       unset=st.lists(st.one_of(st.sampled_from(["case", "note", "other"]), _text), max_size=2))
def test_metadata_edits_applied_exactly_or_refused(meta_db, values, unset):
    ex = meta_db.new({"case": "C-1", "note": "n"})
    meta_db.db.add(ex)
    before = meta_db.state()
    try:
        after = meta_db.db.set_metadata(ex.id, values, unset, user="fuzz")
    except (DatabaseError, ValueError):
        assert meta_db.state() == before and meta_db.db.get(ex.id).metadata == {"case": "C-1", "note": "n"}
        return
    want = {"case": "C-1", "note": "n"} | values
    for k in unset:
        want.pop(k, None)  # every key unset was set (else refused); a key may be named twice
    assert after == want == meta_db.db.get(ex.id).metadata
    if want != {"case": "C-1", "note": "n"}:
        assert meta_db.db.audit_log(event="metadata")[-1].details["metadata"] == want
