"""``ibin check``: verify that catalog, feature store, index files and audit log agree.

Every finding says where (a file, ``file@offset``, the catalog or the audit
log), which exhibit when one is concerned, and what is wrong. Findings are
*damage* (something on file is wrong or unreadable: the check fails) or
*notes* (harmless states the design allows: bytes left by an interrupted
ingest, an index cache behind the catalog, entries of deleted exhibits in an
index file, temporary files of an interrupted save).

What is verified:

1. the catalog: SQLite ``integrity_check`` and ``foreign_key_check``;
2. every exhibit's feature record: the segment exists and is long enough,
   the record is 64-byte aligned, overlaps no other record, its bytes have
   the SHA-256 the catalog recorded, and it decodes;
3. every exhibit has descriptor vectors, with ids ``rowid << 8 | part``,
   one length per space, finite values; the exhibits per kind and vectors
   per space the catalog keeps (``counts``) are those its rows give;
4. every index file: its size and SHA-256 match its header, it belongs to
   this catalog, it holds every catalog vector up to its watermark with the
   same values (exact storage) and nothing the catalog never issued;
5. the audit log: the hash chain is unbroken, and replaying its ``ingest``,
   ``delete`` and ``metadata`` entries gives exactly the exhibits, records,
   vectors and metadata in the catalog.

The check reads one snapshot of the catalog, so it can run while other
processes ingest and search.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DatabaseError
from . import _audit
from ._store import decode_record
from ._vectors import inspect, temporaries

__all__ = ["CheckReport", "Finding", "check_database"]

_PART_BITS = 8
_READ_CHUNK = 1 << 22


@dataclass(frozen=True)
class Finding:
    """One thing ``ibin check`` found."""

    severity: str  # "damage" | "note"
    where: str
    what: str
    exhibit: str | None = None

    def __str__(self) -> str:
        ex = f" [exhibit {self.exhibit}]" if self.exhibit else ""
        return f"{self.severity}: {self.where}{ex}: {self.what}"

    def to_dict(self) -> dict:
        return {"severity": self.severity, "where": self.where, "exhibit": self.exhibit, "what": self.what}


@dataclass
class CheckReport:
    """Outcome of :func:`check_database`."""

    path: str
    findings: list[Finding] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    audit_head: str | None = None

    @property
    def damage(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "damage"]

    @property
    def notes(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "note"]

    @property
    def ok(self) -> bool:
        """True when no damage was found."""
        return not self.damage

    def summary(self) -> str:
        c = self.counts
        what = (f"{c.get('exhibits', 0)} exhibits, {c.get('records_verified', 0)} feature records, "
                f"{c.get('vectors', 0)} vectors, {c.get('index_entries', 0)} index entries, "
                f"{c.get('audit_entries', 0)} audit entries checked")
        verdict = "no damage found" if self.ok else f"DAMAGE: {len(self.damage)} problem(s)"
        return f"{self.path}: {what}; {verdict}" + (f" ({len(self.notes)} note(s))" if self.notes else "")

    def to_dict(self) -> dict:
        return {"path": self.path, "ok": self.ok, "counts": dict(self.counts), "audit_head": self.audit_head,
                "damage": [f.to_dict() for f in self.damage], "notes": [f.to_dict() for f in self.notes]}

    def _damage(self, where, what, exhibit=None):
        self.findings.append(Finding("damage", str(where), what, exhibit))

    def _note(self, where, what, exhibit=None):
        self.findings.append(Finding("note", str(where), what, exhibit))


def check_database(db, *, records: bool = True) -> CheckReport:
    """Verify a database (see the module docstring); never writes.

    Parameters
    ----------
    db : Database
        An open database (read-only is enough).
    records : bool
        Read every feature record and verify its SHA-256 (the slow part);
        False checks only the catalog's references to them.

    Returns
    -------
    CheckReport
    """
    rep = CheckReport(str(db.path))
    catalog = db.path / "catalog.sqlite"
    try:
        with db.snapshot():
            if not _check_sqlite(db, rep, catalog):
                return rep
            exhibits = _exhibits(db)
            rep.counts["exhibits"] = len(exhibits)
            by_rowid = {e["rowid"]: e for e in exhibits}
            _check_records(db, rep, exhibits, verify=records)
            spaces, digests = _check_vectors(db, rep, by_rowid)
            _check_counts(db, rep)
            _check_audit(db, rep, by_rowid, digests)
    except (sqlite3.DatabaseError, DatabaseError) as e:
        rep._damage(catalog, f"the catalog cannot be read ({e})")
        return rep
    _check_indexes(db, rep, spaces, by_rowid)
    _check_store_files(db, rep)
    return rep


# ---------------------------------------------------------------------------- catalog


def _check_sqlite(db, rep: CheckReport, catalog: Path) -> bool:
    conn = db._conn
    rows = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
    if rows != ["ok"]:
        for r in rows[:20]:
            rep._damage(catalog, f"SQLite integrity check: {r}")
        return False
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    missing = {"settings", "exhibits", "metadata", "vectors"} - tables
    if missing:
        rep._damage(catalog, f"tables missing: {', '.join(sorted(missing))}")
        return False
    for table, rowid, parent, _ in conn.execute("PRAGMA foreign_key_check").fetchall()[:50]:
        rep._damage(catalog, f"{table} row {rowid} refers to an exhibit ({parent}) that is not on file")
    return True


def _exhibits(db) -> list[dict]:
    out = []
    for row in db._conn.execute(
            "SELECT rowid, id, kind, modality, source_name, source_sha256, seg, off, len, record_sha256"
            " FROM exhibits ORDER BY rowid"):
        rowid, id_, kind, modality, src, sha, seg, off, ln, rsha = row
        out.append({"rowid": rowid, "id": id_, "kind": kind, "modality": modality, "source_name": src,
                    "source_sha256": sha, "record": {"segment": seg, "offset": off, "length": ln, "sha256": rsha},
                    "metadata": {}})
    by = {e["rowid"]: e for e in out}
    for ex, k, v in db._conn.execute("SELECT exhibit, key, value FROM metadata"):
        if ex in by:
            by[ex]["metadata"][k] = v
    return out


# ---------------------------------------------------------------------------- feature store


def _check_records(db, rep: CheckReport, exhibits: list[dict], *, verify: bool) -> None:
    store = db.store
    by_seg: dict[int, list[dict]] = {}
    for e in exhibits:
        sha = e["source_sha256"]
        if not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
            rep._damage("catalog.sqlite", f"source SHA-256 {sha!r} is not 64 hex digits", e["id"])
        by_seg.setdefault(int(e["record"]["segment"]), []).append(e)
    n_verified = n_bytes = 0
    for seg, recs in sorted(by_seg.items()):
        path = store.segment_path(seg)
        rel = f"store/{path.name}"
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            for e in recs:
                rep._damage(rel, "feature segment is missing: the exhibit's prepared data are gone", e["id"])
            continue
        with f:
            size = Path(path).stat().st_size
            recs.sort(key=lambda e: e["record"]["offset"])
            covered = 0
            gaps = []
            prev_end, prev_id = 0, None
            for e in recs:
                r = e["record"]
                off, ln = int(r["offset"]), int(r["length"])
                where = f"{rel}@{off}"
                if off < 0 or ln <= 0:
                    rep._damage(where, f"the catalog gives an impossible place (offset {off}, length {ln})", e["id"])
                    continue
                if off % 64:
                    rep._damage(where, "record offset is not 64-byte aligned (the catalog row was altered)", e["id"])
                if off < prev_end:
                    rep._damage(where, f"record overlaps the record of exhibit {prev_id} "
                                       f"(which ends at byte {prev_end})", e["id"])
                elif off > prev_end:
                    gaps.append(off - prev_end)
                if off + ln > size:
                    rep._damage(where, f"record of {ln} bytes extends past the end of the segment "
                                       f"({size} bytes): the file was truncated", e["id"])
                    continue
                if off >= prev_end:
                    covered += ln
                prev_end, prev_id = max(prev_end, off + ln), e["id"]
                if not verify:
                    continue
                f.seek(off)
                data = f.read(ln)
                got = hashlib.sha256(data).hexdigest()
                n_verified += 1
                n_bytes += ln
                if got != r["sha256"]:
                    bad = _first_difference_hint(data)
                    rep._damage(where, f"feature record damaged: its {ln} bytes have SHA-256 {got[:16]}..., "
                                       f"the catalog recorded {r['sha256'][:16]}...{bad}", e["id"])
                    continue
                try:
                    decode_record(data, where=where)
                except DatabaseError as err:
                    rep._damage(where, f"feature record unreadable: {err}", e["id"])
            tail = size - prev_end
            if gaps:
                rep._note(rel, f"{sum(gaps)} bytes in {len(gaps)} stretch(es) between records belong to no exhibit "
                               "on file (deleted exhibits or interrupted ingests; harmless)")
            if tail > 0:
                rep._note(rel, f"the last {tail} bytes (from offset {prev_end}) belong to no exhibit on file "
                               "(an interrupted or concurrent ingest, or deleted exhibits; harmless)")
    rep.counts["records_verified"] = n_verified
    rep.counts["bytes_verified"] = n_bytes


def _first_difference_hint(data: bytes) -> str:
    if data[:4] != b"IBF1":
        return " (the record does not even start with its magic bytes)"
    return ""


def _check_store_files(db, rep: CheckReport) -> None:
    root = db.store.root
    referenced = {int(r[0]) for r in db._conn.execute("SELECT DISTINCT seg FROM exhibits")}
    if not root.is_dir():
        if referenced:
            rep._damage("store/", "the feature store folder is missing")
        return
    for p in sorted(root.iterdir()):
        if p.name.startswith("seg-") and p.suffix == ".ibf":
            try:
                seg = int(p.stem[4:])
            except ValueError:
                seg = None
            if seg is not None and seg not in referenced and p.stat().st_size:
                rep._note(f"store/{p.name}", "segment holds no exhibit on file (all deleted, or interrupted ingests)")
        else:
            rep._note(f"store/{p.name}", "file that is not part of the feature store")


# ---------------------------------------------------------------------------- vectors


def _check_vectors(db, rep: CheckReport, by_rowid: dict[int, dict]):
    spaces: dict[str, dict] = {}
    rows_by_ex: dict[int, list[tuple[str, int, bytes]]] = {}
    n = 0
    for vid, ex, space, part, vec in db._conn.execute(
            "SELECT id, exhibit, space, part, vec FROM vectors ORDER BY space, id"):
        n += 1
        e = by_rowid.get(ex)
        eid = e["id"] if e else None
        vec = bytes(vec)
        if vid != ((ex << _PART_BITS) | part) or not 0 <= part < (1 << _PART_BITS):
            rep._damage("catalog.sqlite", f"vector id {vid} does not encode exhibit row {ex}, part {part}", eid)
        s = spaces.setdefault(space, {"dim": len(vec) // 4, "ids": [], "vecs": []})
        if len(vec) != 4 * s["dim"] or len(vec) % 4:
            rep._damage("catalog.sqlite", f"vector {vid} of space {space!r} has {len(vec)} bytes; "
                                          f"the space holds {4 * s['dim']}-byte vectors", eid)
            continue
        v = np.frombuffer(vec, dtype=np.float32)
        if not np.isfinite(v).all():
            rep._damage("catalog.sqlite", f"vector {vid} of space {space!r} holds NaN or infinite values", eid)
        s["ids"].append(vid)
        s["vecs"].append(vec)
        rows_by_ex.setdefault(ex, []).append((space, part, vec))
    rep.counts["vectors"] = n
    from ._database import vector_digests

    digests = {ex: vector_digests(rows) for ex, rows in rows_by_ex.items()}
    for rowid, e in by_rowid.items():
        if rowid not in digests:
            rep._damage("catalog.sqlite", "exhibit has no descriptor vectors: no search can find it", e["id"])
    for s in spaces.values():
        s["ids"] = np.array(s["ids"], dtype=np.int64)
        s["vecs"] = (np.frombuffer(b"".join(s["vecs"]), dtype=np.float32).reshape(len(s["ids"]), s["dim"])
                     if len(s["ids"]) else np.empty((0, s["dim"]), np.float32))
    return spaces, digests


def _check_counts(db, rep: CheckReport) -> None:
    """The exhibits per kind and vectors per space the catalog keeps (``counts``) against its rows."""
    got = db.counts_kept()
    if got is None:
        rep._note("catalog.sqlite", "the catalog keeps no counts (made by an older ibin; added when opened for writing)")
        return
    kept, actual = got
    for key in sorted(kept.keys() | actual.keys()):
        if kept.get(key, 0) != actual.get(key, 0):
            rep._damage("catalog.sqlite", f"the catalog's count of {key} is {kept.get(key, 0)}, its rows give "
                                          f"{actual.get(key, 0)} (ibin reindex counts again)")


def _check_indexes(db, rep: CheckReport, spaces: dict[str, dict], by_rowid: dict) -> None:
    folder = db.path / "index"
    expected = {db.index_path(s).name: s for s in spaces}
    # read the files first, then the catalog's high-water mark: a file saved by another
    # process while the check ran then holds no id beyond it
    files = {name: inspect(folder / name) for name in expected}
    max_id = db.max_vector_id(latest=True)
    n_entries = 0
    for name, space in sorted(expected.items()):
        rel = f"index/{name}"
        got, problem = files[name]
        if problem is not None:
            rep._damage(rel, f"{problem}; searches rebuild it from the catalog, `ibin reindex DB` rewrites it")
            continue
        if got is None:
            rep._note(rel, f"no index cache for space {space!r} yet (built at the next search, or by `ibin reindex`)")
            continue
        index, meta = got
        from ._vectors import VectorIndex

        vi = VectorIndex.__new__(VectorIndex)
        vi.index, vi.dim, vi.factory = index, index.d, meta.get("factory")
        s = spaces[space]
        if db.catalog_id is not None and meta.get("catalog") != db.catalog_id:
            rep._damage(rel, f"index file belongs to another database (catalog {meta.get('catalog')}, "
                             f"this one is {db.catalog_id}); run `ibin reindex DB`")
            continue
        if index.d != s["dim"]:
            rep._damage(rel, f"index holds {index.d}-value vectors, the catalog {s['dim']}-value ones")
            continue
        ids = vi.ids()
        n_entries += len(ids)
        watermark = int(meta.get("watermark", 0))
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            rep._damage(rel, f"{int((counts > 1).sum())} vector id(s) appear more than once (e.g. {int(uniq[counts > 1][0])})")
        if len(ids) and (ids.max() > max_id or watermark > max_id):
            rep._damage(rel, f"index holds vector ids up to {max(int(ids.max()), watermark)}, beyond any the catalog "
                             f"issued ({max_id}); it was not made from this catalog")
        cat_ids = s["ids"]
        upto = cat_ids <= watermark
        missing = np.setdiff1d(cat_ids[upto], ids)
        if len(missing):
            ex = by_rowid.get(int(missing[0]) >> _PART_BITS, {}).get("id")
            rep._damage(rel, f"{len(missing)} vector(s) on file (up to the index watermark {watermark}) are missing "
                             "from the index; those exhibits would not be found", ex)
        stale = np.setdiff1d(ids, cat_ids)
        if len(stale):
            rep._note(rel, f"{len(stale)} entr(y/ies) of exhibits no longer on file (filtered out at search time; "
                           "`ibin reindex` drops them)")
        newer = int((~upto).sum())
        if newer:
            from ._database import UNSAVED_SHARE

            rep._note(rel, f"{newer} vector(s) added since the index file was saved (read from the catalog when "
                           f"the index is loaded; the file is rewritten once they are {UNSAVED_SHARE:.0%} of it)")
        stored = vi.stored_vectors()
        if stored is not None and len(ids):
            pos = {int(i): k for k, i in enumerate(ids)}
            both = [(k_cat, pos[int(i)]) for k_cat, i in enumerate(cat_ids) if int(i) in pos]
            if both:
                kc, ki = np.array(both).T
                diff = np.any(s["vecs"][kc] != stored[ki], axis=1)
                if diff.any():
                    first = int(cat_ids[kc[np.flatnonzero(diff)[0]]])
                    rep._damage(rel, f"{int(diff.sum())} index entr(y/ies) differ from the catalog's vectors "
                                     f"(first: vector {first}); searches would rank wrongly",
                                by_rowid.get(first >> _PART_BITS, {}).get("id"))
    rep.counts["index_entries"] = n_entries
    if folder.is_dir():
        for p in sorted(folder.glob("*.faiss")):
            if p.name not in expected:
                rep._note(f"index/{p.name}", "index file of a descriptor space with no vectors on file")
        for p in sorted(folder.glob("*.faiss.json")):
            rep._note(f"index/{p.name}", "sidecar of an index file in the format of ibin 0.1 (replaced at the next save)")
        for p, alive in temporaries(folder):
            rep._note(f"index/{p.name}", f"temporary file of an index save "
                                         f"{'in progress' if alive else 'that was interrupted; `ibin reindex` removes it'}")


# ---------------------------------------------------------------------------- audit log


def _check_audit(db, rep: CheckReport, by_rowid: dict[int, dict], digests: dict) -> None:
    if not db._has_audit():
        rep._note("audit log", "this database has no audit log yet (made by an older ibin; "
                               "opening it for writing starts one)")
        return
    rows = db._conn.execute("SELECT seq, at, user, event, details, prev, hash FROM audit ORDER BY seq").fetchall()
    problems, n, head = _audit.verify_chain(rows)
    rep.counts["audit_entries"] = n
    rep.audit_head = head
    for seq, msg in problems[:50]:
        rep._damage("audit log", msg)
    if len(problems) > 50:
        rep._damage("audit log", f"... and {len(problems) - 50} more broken entries")
    # replay the changes the log records and compare with the catalog
    state: dict[int, dict] = {}
    for seq, at, user, event, details, _, _ in rows:
        try:
            d = json.loads(details)
        except (TypeError, ValueError):
            continue
        if not isinstance(d, dict):
            continue
        rowid = d.get("rowid")
        if event == "ingest":
            state[rowid] = {"seq": seq, **{k: d.get(k) for k in
                            ("id", "kind", "modality", "source_name", "source_sha256", "record", "vectors", "metadata")}}
        elif event == "delete":
            if state.pop(rowid, None) is None:
                rep._damage("audit log", f"entry {seq} deletes exhibit {d.get('id')!r}, which no entry ingested")
        elif event == "metadata":
            if rowid not in state:
                rep._damage("audit log", f"entry {seq} edits exhibit {d.get('id')!r}, which is not on file by the log")
            else:
                state[rowid]["metadata"] = d.get("metadata")
    for rowid, e in by_rowid.items():
        want = state.get(rowid)
        if want is None:
            rep._damage("catalog.sqlite", "exhibit is on file but the audit log never recorded its ingest "
                                          "(added outside ibin, or audit entries were removed)", e["id"])
            continue
        have = {"id": e["id"], "kind": e["kind"], "modality": e["modality"], "source_name": e["source_name"],
                "source_sha256": e["source_sha256"], "record": e["record"], "metadata": e["metadata"],
                "vectors": digests.get(rowid, {})}
        for key, value in have.items():
            if value != want.get(key):
                rep._damage("catalog.sqlite", f"{_describe(key, value, want.get(key))} "
                                              f"(changed outside ibin; audit entry {want['seq']})", e["id"])
    for rowid, want in state.items():
        if rowid not in by_rowid:
            rep._damage("catalog.sqlite", f"exhibit was ingested (audit entry {want['seq']}) and never deleted, "
                                          "but it is not in the catalog (removed outside ibin)", want.get("id"))


def _describe(key: str, have, want) -> str:
    if key == "metadata" and isinstance(have, dict) and isinstance(want, dict):
        diffs = []
        for k in sorted(set(have) | set(want)):
            if have.get(k) != want.get(k):
                diffs.append(f"{k!r} is {have.get(k)!r} in the catalog but {want.get(k)!r} by the audit log")
        return "metadata " + "; ".join(diffs)
    if key == "vectors":
        return "descriptor vectors differ from those recorded at ingest"
    if key == "record":
        return f"feature record reference is {have} in the catalog but {want} by the audit log"
    return f"{key} is {have!r} in the catalog but {want!r} by the audit log"
